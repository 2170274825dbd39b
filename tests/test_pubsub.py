"""Pub/sub: conn.subscribe / unsubscribe / publish, within a worker, across
workers, from outside the server; subscriptions end with their connection
however it ends.  Real servers, real clients, real signals; the plain class
(wscore.pubsub) first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from websockets.sync.client import connect

from actors.worker import control_name
from logutil import wait_until
from treeutil import workers
from wscore.pubsub import PubSub, Published
from wsup.tools.control import control

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # connect() outside a with


# -- the plain class ----------------------------------------------------------------------

def test_pubsub_delivers_to_subscribers_but_the_excluded_and_forgets_dropped_keys():
    sent = []
    p = PubSub(lambda addresses, msg: sent.append((sorted(addresses), msg)))
    assert p.subscribe("t", "a", "A") and p.subscribe("t", "b", "B") and p.subscribe("u", "a", "A")
    assert not p.subscribe("t", "a", "A")        # already
    assert p.publish("t", "hi", exclude="a", publisher="a") == 1
    assert sent == [(["B"], Published("t", "hi", "a"))]
    assert p.outbox == [("t", "hi", "a")]         # for the other workers, whoever is excluded here
    assert p.publish("nobody", b"x") == 0 and p.outbox[-1] == ("nobody", b"x", None)
    assert p.drop("a") == 2 and p.topics_of("a") == set() and p.subscriptions == 1
    assert p.unsubscribe("t", "b") and not p.unsubscribe("t", "b") and p.topic_count == 0
    p.forwarding = False
    p.publish("t", "y")
    assert len(p.take_outbox()) == 2 and p.outbox == []


def test_the_outbox_is_handed_over_before_a_local_fan_out_and_batched_otherwise():
    order = []
    p = PubSub(lambda addresses, msg: order.append(("local", msg.message)))
    p.hand_over = lambda items: order.append(("out", [m for _t, m, _p in items]))
    p.publish("quiet", "1")                      # no subscriber here: waits for the turn's end
    p.publish("quiet", "2")
    assert order == [] and len(p.outbox) == 2
    p.subscribe("busy", "a", "A")
    p.publish("busy", "3")                       # the others get it (and what waited) first
    assert order == [("out", ["1", "2", "3"]), ("local", "3")] and p.outbox == []


def test_pubsub_refuses_bad_topics_and_messages_clearly():
    p = PubSub(lambda a, m: None)
    with pytest.raises(TypeError, match="a topic is a str"):
        p.publish(7, "x")
    with pytest.raises(ValueError, match="1..256 characters"):
        p.publish("", "x")
    with pytest.raises(ValueError):
        p.subscribe("t" * 257, "a", "A")
    with pytest.raises(TypeError, match="str \\(text\\) or bytes \\(binary\\), not dict"):
        p.publish("t", {"a": 1})
    assert p.published == 0 and p.outbox == []


def test_a_failing_listener_is_reported_and_the_others_still_get_it():
    failures, got = [], []
    p = PubSub(lambda a, m: None)
    p.on_listener_failure = lambda topic, exc: failures.append((topic, str(exc)))
    p.subscribe("t", "fn:1", lambda t, m: 1 / 0)
    p.subscribe("t", "fn:2", lambda t, m: got.append(m))
    assert p.arrived_batch([("t", "one", None), ("t", "two", None)]) == 4
    assert got == ["one", "two"] and len(failures) == 2 and p.listener_failures == 2


# -- a real server ----------------------------------------------------------------------------

def open_on(server, n_workers, per_worker=1, tries=60):
    """Connections, ``per_worker`` on each of the first ``n_workers`` workers: {worker: [(ws, id)]}."""
    got: dict[str, list] = {}
    spare = []
    for _ in range(tries):
        c = connect(server.url, open_timeout=10)
        cid = c.recv(timeout=5).split()[1]
        w = cid.split("-")[0]
        if len(got.get(w, ())) < per_worker and (w in got or len(got) < n_workers):
            got.setdefault(w, []).append((c, cid))
        else:
            spare.append(c)
        if len(got) == n_workers and all(len(v) == per_worker for v in got.values()):
            break
    for c in spare:
        c.close()
    assert len(got) == n_workers, "SO_REUSEPORT did not spread the connections"
    return got


def ask(ws, command):
    ws.send(command)
    return ws.recv(timeout=5)


def pubsub_stats(server):
    """{worker index: its pubsub counts} from the control sockets."""
    out = {}
    for i in range(1, server.config.workers + 1):
        got = control(control_name(server.config, i), {"op": "stats"})
        if got.get("ok"):
            out[i] = got["pubsub"]
    return out


def subscriptions(server):
    return {i: s["subscriptions"] for i, s in pubsub_stats(server).items()}


def nothing_more(ws, timeout=0.3):
    """No message arrives within ``timeout`` (the connection answers an echo after it)."""
    ws.send("ping-echo")
    return ws.recv(timeout=5) == "ping-echo"


def test_publish_within_one_worker(make_server):
    server = make_server(workers=1, app="apps:PubSubApp")
    [conns] = open_on(server, 1, per_worker=3).values()
    (a, _), (b, _), (c, _) = conns
    with a, b, c:
        assert ask(a, "sub:news") == "subscribed news True"
        assert ask(b, "sub:news") == "subscribed news True"
        assert ask(b, "sub:news") == "subscribed news False"
        assert ask(c, "pub:news:hello") == "published 2"      # c is not subscribed
        assert a.recv(timeout=5) == "hello" and b.recv(timeout=5) == "hello"
        assert ask(a, "pubx:news:not to myself") == "published 1"
        assert b.recv(timeout=5) == "not to myself"
        assert nothing_more(a)
        assert ask(a, "pub:news:to myself too") == "published 2"
        assert a.recv(timeout=5) == "to myself too" and b.recv(timeout=5) == "to myself too"
        assert ask(c, "pubb:news:raw") == "published 2"
        assert a.recv(timeout=5) == b"raw"                     # bytes: a binary message
        b.recv(timeout=5)
        assert ask(c, "pub:nobody-listens:x") == "published 0"   # no subscriber: nothing breaks
        assert ask(a, "unsub:news") == "unsubscribed news True"
        assert ask(c, "pub:news:only b") == "published 1"
        assert b.recv(timeout=5) == "only b" and nothing_more(a)
        assert ask(b, "topics") == "topics news"
    wait_until(lambda: subscriptions(server) == {1: 0}, timeout=5, message="closed: no subscription left")


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_publish_across_two_workers(make_server, compression):
    server = make_server(workers=2, app="apps:PubSubApp")
    by_worker = open_on(server, 2, per_worker=2)
    conns = [c for pair in by_worker.values() for c, _ in pair]
    try:
        for c in conns:
            assert ask(c, "sub:room").startswith("subscribed room")
        w1, w2 = by_worker.values()
        assert ask(w1[0][0], "pubx:room:" + "across workers " * 20) == "published 1"   # 1 here, 2 there
        for c, _ in (w1[1], *w2):
            assert c.recv(timeout=5) == "across workers " * 20
        assert nothing_more(w1[0][0])
        assert ask(w2[0][0], "pub:room:back") == "published 2"
        for c in conns:
            assert c.recv(timeout=5) == "back"
        stats = pubsub_stats(server)
        assert sum(s["published"] for s in stats.values()) == 2
        assert sum(s["delivered"] for s in stats.values()) == 3 + 4
        assert all(s["batches_out"] >= 1 and s["batches_in"] >= 1 for s in stats.values())
    finally:
        for c in conns:
            c.close()


def test_a_bad_topic_or_message_is_an_error_in_the_app_not_a_crash(make_server):
    server = make_server(workers=1, app="apps:PubSubApp")
    [[(a, _)]] = open_on(server, 1).values()
    with a:
        assert ask(a, "bad:topic") == "error TypeError: a topic is a str, not int"
        assert ask(a, "bad:message").startswith("error TypeError: a published message is str (text) or bytes")
        assert ask(a, "still here") == "still here"
    assert not server.log.events("supervisor.child.terminated", reason="error")


def test_subscriptions_end_with_the_connection_every_way_it_ends(make_server):
    """Close, an application crash, an in-process kill of the ConnectionActor
    and of its ConnectionSupervisor: the worker's table forgets each, and a
    publish reaches the living only."""
    server = make_server(workers=1, app="apps:PubSubApp")
    [conns] = open_on(server, 1, per_worker=5).values()
    (live, _), (closing, _), (crashing, _), (killed, killed_id), (killed_sup, sup_id) = conns
    for c, _ in conns:
        assert ask(c, "sub:t").startswith("subscribed")
        assert ask(c, "sub:other").startswith("subscribed")
    name = control_name(server.config, 1)
    assert subscriptions(server) == {1: 10}
    closing.close()
    wait_until(lambda: subscriptions(server) == {1: 8}, timeout=5, message="closed")
    crashing.send("crash")
    wait_until(lambda: subscriptions(server) == {1: 6}, timeout=5, message="crashed")
    assert control(name, {"op": "kill", "kind": "ConnectionActor", "connection_id": killed_id})["killed"]
    wait_until(lambda: subscriptions(server) == {1: 4}, timeout=5, message="killed in-process")
    assert control(name, {"op": "kill", "kind": "ConnectionSupervisor", "connection_id": sup_id})["killed"]
    wait_until(lambda: subscriptions(server) == {1: 2}, timeout=5, message="supervisor killed in-process")
    before = pubsub_stats(server)[1]["delivered"]
    assert ask(live, "pub:t:to the living") == "published 1"
    assert live.recv(timeout=5) == "to the living"
    assert pubsub_stats(server)[1]["delivered"] == before + 1
    for c, _ in conns:
        c.close()
    wait_until(lambda: subscriptions(server) == {1: 0}, timeout=5, message="all closed")


def test_a_sigkilled_worker_takes_its_subscriptions_with_it(make_server):
    server = make_server(workers=2, app="apps:PubSubApp")
    by_worker = open_on(server, 2, per_worker=2)
    (w_live, w_live_conns), (w_dead, w_dead_conns) = sorted(by_worker.items())
    for c, _ in w_live_conns + w_dead_conns:
        assert ask(c, "sub:t").startswith("subscribed")
    assert subscriptions(server) == {1: 2, 2: 2}
    victim = workers(server)[f"worker-{w_dead}"]
    os.kill(victim.pid, signal.SIGKILL)
    def restarted():   # one look at the tree: the child may be gone between two
        ref = workers(server).get(f"worker-{w_dead}")
        return ref is not None and ref.pid != victim.pid
    wait_until(restarted, timeout=10, message="restarted")
    expected = {int(w_live): 2, int(w_dead): 0}
    wait_until(lambda: subscriptions(server) == expected, timeout=10,
               message="the new worker starts with no subscription")
    (a, _), (b, _) = w_live_conns
    assert ask(a, "pub:t:after the kill") == "published 2"
    assert a.recv(timeout=5) == "after the kill" and b.recv(timeout=5) == "after the kill"
    # the restarted worker takes new subscribers, and publishes reach it again
    fresh = open_on(server, 2, per_worker=1)[w_dead][0][0]
    with fresh:
        assert ask(fresh, "sub:t").startswith("subscribed")

        def reaches_fresh():
            a.send("pubx:t:hello new worker")
            assert a.recv(timeout=5) == "published 1"
            b.recv(timeout=5)
            try:
                return fresh.recv(timeout=1) == "hello new worker"
            except TimeoutError:
                return False     # the publisher's worker still had the old address (cached for 1 s)
        wait_until(reaches_fresh, timeout=10, message="a publish reaches the restarted worker")
    for c, _ in w_live_conns + w_dead_conns:
        c.close()


def test_publish_from_outside_a_connection(make_server, serve):
    """From a process-tier actor (Publish sent to any worker) and from a shell (wsup publish)."""
    from wsup.app import Publish
    server = make_server(workers=2, app="apps:PubSubApp")
    by_worker = open_on(server, 2)
    conns = [c for pair in by_worker.values() for c, _ in pair]
    for c in conns:
        assert ask(c, "sub:alerts").startswith("subscribed")
    server.runtime.tell(workers(server)["worker-1"].address, Publish("alerts", "from an actor"))
    for c in conns:
        assert c.recv(timeout=5) == "from an actor"
    server.runtime.tell(workers(server)["worker-2"].address, Publish(123, "refused"))   # logged, dropped
    wait_until(lambda: server.log.events("pubsub.refused"), timeout=5, message="pubsub.refused logged")
    for c in conns:
        assert nothing_more(c)
        c.close()

    sp = serve("--app", "apps:PubSubApp", "--workers", "2")
    with connect(sp.url, open_timeout=10) as c:
        c.recv(timeout=5)
        assert ask(c, "sub:ops").startswith("subscribed")

        def publish(*args):
            return subprocess.run([sys.executable, "-m", "wsup.cli", "publish", "--server-log", str(sp.log_path),
                                   *args], capture_output=True, text=True, timeout=30)
        r = publish("ops", "deploy done")
        assert r.returncode == 0, r.stdout + r.stderr
        assert c.recv(timeout=5) == "deploy done"
        r = publish("--binary", "ops", "bytes")
        assert r.returncode == 0 and c.recv(timeout=5) == b"bytes"
        r = publish("", "x")
        assert r.returncode == 2 and "topic is 1..256 characters" in r.stderr
