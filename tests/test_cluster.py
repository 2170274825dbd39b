"""Pub/sub across nodes: `wsup serve` processes whose actor systems bind different loopback
addresses (127.0.0.1, 127.0.0.2, 127.0.0.3) and form a Thespian convention."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from websockets.sync.client import connect

from logutil import wait_until
from test_observability import scrape
from serveproc import WSUP
from supervisors import _platform
from wscore.cluster import Peers
from wscore.config import ServerConfig


# -- the plain parts ---------------------------------------------------------------------------

def test_peers_keep_a_window_per_peer_and_queue_then_merge_what_waits():
    sent = []
    p = Peers("a", lambda hub, items: sent.append((hub, list(items))), window=2, max_queued=3)
    assert p.up("b", "hub-b") and not p.up("b", "hub-b") and not p.up("a", "hub-a")
    p.publish([1])
    p.publish([2])
    p.publish([3])            # the window is full: waits
    p.publish([4, 5, 6])      # the queue holds 3: the oldest is dropped
    assert sent == [("hub-b", [1]), ("hub-b", [2])]
    assert p.peers["b"].dropped == 1 and p.peers["b"].queue == [4, 5, 6]
    p.acked("b")              # room again: what waited goes as one batch
    assert sent[-1] == ("hub-b", [4, 5, 6]) and p.peers["b"].inflight == 2
    p.undeliverable("hub-b", [4, 5, 6])
    assert p.peers["b"].dropped == 4 and p.peers["b"].inflight == 1


def test_a_restarted_peer_is_news_and_a_departed_one_takes_its_queue():
    p = Peers("a", lambda hub, items: None, window=1)
    p.up("b", "hub-b1")
    p.publish([1])
    p.publish([2])
    assert len(p.peers["b"].queue) == 1
    assert p.up("b", "hub-b2")          # same node, new hub: a fresh peer
    assert p.peers["b"].queue == [] and p.peers["b"].inflight == 0
    assert p.down("b") is not None and p.down("b") is None and p.table() == {}


@pytest.mark.parametrize("kw, error", [
    ({"cluster_leader": "127.0.0.1:1900"}, "needs --cluster-address"),
    ({"cluster_address": "10.1.2.3:1900"}, "not a loopback address"),
    ({"cluster_address": "127.0.0.1:1900", "cluster_leader": "192.168.1.1:1900"}, "not a loopback address"),
    ({"cluster_address": "0.0.0.0:1900"}, "explicit address"),
    ({"cluster_address": "localhost:1900"}, "IPv4:PORT"),
    ({"cluster_address": "127.0.0.1"}, "IPv4:PORT"),
    ({"cluster_address": "127.0.0.1:0"}, "port 1..65535"),
])
def test_cluster_settings_are_refused_unless_explicit_and_on_loopback(kw, error):
    with pytest.raises(ValueError, match=error):
        ServerConfig(**kw).check()


def test_a_network_address_is_accepted_only_when_opted_in():
    ServerConfig(cluster_address="10.1.2.3:1900", cluster_allow_network=True).check()


def test_wsup_serve_refuses_a_network_cluster_address_without_the_opt_in():
    got = subprocess.run(WSUP + ["serve", "--port", "0", "--cluster-address", "10.1.2.3:1900"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 2
    assert "not a loopback address" in got.stderr and "--cluster-allow-network" in got.stderr


# -- real nodes ----------------------------------------------------------------------------------

def node(serve, ip, leader=None, name="", workers=2, extra=()):
    port = _platform.free_port(ip)
    args = ["--app", "apps:PubSubApp", "--workers", str(workers), "--cluster-address", f"{ip}:{port}", *extra]
    if leader is not None:
        args += ["--cluster-leader", leader.cluster_address]
    sp = serve(*args, log_name=f"{name or ip}.jsonl")
    sp.cluster_address = f"{ip}:{port}"
    return sp


def peer_ups(sp, peer):
    return len(sp.log.events("cluster.peer_up", peer=peer.cluster_address))


def subscriber(sp, topic):
    ws = connect(sp.url, open_timeout=10)
    assert ws.recv(timeout=5).startswith("hello ")
    ws.send(f"sub:{topic}")
    assert ws.recv(timeout=5) == f"subscribed {topic} True"
    return ws


def publish(sp, topic, text):
    with connect(sp.url, open_timeout=10) as ws:
        ws.recv(timeout=5)
        ws.send(f"pub:{topic}:{text}")
        assert ws.recv(timeout=5).startswith("published ")


def receives(ws, text, timeout=5):
    return ws.recv(timeout=timeout) == text


def eventually_reaches(sp, topic, text, ws, timeout):
    """Publish ``text`` on node ``sp`` again and again until ``ws`` receives it (a route that is
    being re-established)."""
    def once():
        publish(sp, topic, text)
        try:
            return receives(ws, text, timeout=0.5)
        except TimeoutError:
            return False
    return wait_until(once, timeout=timeout)


def test_publish_on_one_node_reaches_subscribers_on_the_other(serve):
    metrics = _platform.free_port()
    a = node(serve, "127.0.0.1", name="a", extra=("--metrics-port", str(metrics)))
    b = node(serve, "127.0.0.2", leader=a, name="b")
    assert wait_until(lambda: peer_ups(a, b) and peer_ups(b, a), timeout=20, message="the nodes meet")
    with subscriber(a, "news") as on_a, subscriber(b, "news") as on_b:
        publish(a, "news", "from-a")
        assert receives(on_a, "from-a") and receives(on_b, "from-a")
        publish(b, "news", "from-b")
        assert receives(on_a, "from-b") and receives(on_b, "from-b")
        # one connection to another by its address (conn.address), across nodes
        on_a.send("address")
        address = on_a.recv(timeout=5).split()[1]
        on_b.send(f"tella:{address}:hi from b")
        assert receives(on_a, "told hi from b")
    # the hub's counts, in a's /metrics (reported to the workers every second)
    def cluster_metrics():
        got = scrape(metrics)
        return (got.get(("wsup_cluster_peers", ())) == 1 and got.get(("wsup_cluster_batches_total",
                (("direction", "out"),)), 0) >= 1 and got.get(("wsup_cluster_batches_total",
                (("direction", "in"),)), 0) >= 1 and got.get(("wsup_cluster_dropped_total",
                (("peer", b.cluster_address),))) == 0) and got
    assert wait_until(cluster_metrics, timeout=10, message="wsup_cluster_* in /metrics")
    # every Thespian socket of node b binds 127.0.0.2 (and a's 127.0.0.1), none 0.0.0.0; the
    # WebSocket port is --host's (127.0.0.1)
    for sp, ip in ((a, "127.0.0.1"), (b, "127.0.0.2")):
        listening = listening_addresses(sp.processes())
        thespian = {addr for addr, port in listening if port != sp.port}
        assert thespian == {ip}, (ip, listening)
        assert {addr for addr, port in listening if port == sp.port} == {"127.0.0.1"}


def listening_addresses(pids):
    """{(IPv4 address, port)} of the TCP sockets these processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and inode in inodes:     # LISTEN
                hexip, hexport = local.split(":")
                out.add((".".join(str(int(hexip[i:i + 2], 16)) for i in (6, 4, 2, 0)), int(hexport, 16)))
    return out


def test_a_dead_node_is_dropped_and_its_return_is_picked_up(serve):
    a = node(serve, "127.0.0.1", name="a")
    b = node(serve, "127.0.0.2", leader=a, name="b")
    assert wait_until(lambda: peer_ups(a, b), timeout=20, message="b joins")
    b.proc.send_signal(signal.SIGKILL)          # the whole node: its actors die with the main process
    b.proc.wait()
    assert wait_until(lambda: not b.processes(), timeout=10)
    a.log.wait_for("cluster.peer_down", peer=b.cluster_address, timeout=20)   # ~3 heartbeats
    with subscriber(a, "news") as on_a:
        publish(a, "news", "alone")              # delivered here; nothing kept for the dead node
        assert receives(on_a, "alone")
        b2 = serve("--app", "apps:PubSubApp", "--workers", "2", "--cluster-address", b.cluster_address,
                   "--cluster-leader", a.cluster_address, log_name="b2.jsonl")
        b2.cluster_address = b.cluster_address
        assert wait_until(lambda: peer_ups(a, b2) >= 2 and peer_ups(b2, a), timeout=20, message="b is back")
        with subscriber(b2, "news") as on_b:
            publish(b2, "news", "back")
            assert receives(on_a, "back") and receives(on_b, "back")
    assert not a.log.events("actor.crashed")


def test_three_nodes_members_reach_each_other_through_the_leaders_table(serve):
    a = node(serve, "127.0.0.1", name="a", workers=1)
    b = node(serve, "127.0.0.2", leader=a, name="b", workers=1)
    c = node(serve, "127.0.0.3", leader=a, name="c", workers=1)
    assert wait_until(lambda: peer_ups(b, c) and peer_ups(c, b), timeout=20,
                      message="the members learn of each other from the leader")
    with subscriber(a, "t") as on_a, subscriber(c, "t") as on_c:
        publish(b, "t", "from-b")
        assert receives(on_a, "from-b") and receives(on_c, "from-b")
    b.proc.send_signal(signal.SIGTERM)          # a graceful stop leaves the convention at once
    assert b.proc.wait(timeout=60) == 0
    c.log.wait_for("cluster.peer_down", peer=b.cluster_address, timeout=10)
    a.log.wait_for("cluster.peer_down", peer=b.cluster_address, timeout=10)


def test_a_killed_hub_is_restarted_and_found_again_by_the_other_node(serve):
    a = node(serve, "127.0.0.1", name="a")
    b = node(serve, "127.0.0.2", leader=a, name="b")
    assert wait_until(lambda: peer_ups(a, b) and peer_ups(b, a), timeout=20, message="the nodes meet")
    [started] = b.log.events("cluster.started")
    os.kill(started["pid"], signal.SIGKILL)            # b's hub only: its supervisor restarts it
    b.log.wait_for("cluster.started", count=2, timeout=20)
    assert wait_until(lambda: peer_ups(a, b) >= 2, timeout=20, message="a hears of b's new hub")
    with subscriber(a, "t") as on_a:     # b's workers learn the new hub's address within a second
        assert eventually_reaches(b, "t", "again", on_a, timeout=15)
    assert b.log.events("supervisor.child.restarted", child_id="cluster")
    assert not a.log.events("actor.crashed")


def test_the_members_go_on_without_the_leader_and_take_it_back(serve):
    a = node(serve, "127.0.0.1", name="a", workers=1)
    b = node(serve, "127.0.0.2", leader=a, name="b", workers=1)
    c = node(serve, "127.0.0.3", leader=a, name="c", workers=1)
    assert wait_until(lambda: peer_ups(b, c) and peer_ups(c, b), timeout=20, message="all meet")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    b.log.wait_for("cluster.peer_down", peer=a.cluster_address, timeout=20)
    with subscriber(c, "t") as on_c:
        publish(b, "t", "no leader")             # the members still know each other
        assert receives(on_c, "no leader")
        a2 = serve("--app", "apps:PubSubApp", "--workers", "1", "--cluster-address", a.cluster_address,
                   log_name="a2.jsonl")
        a2.cluster_address = a.cluster_address
        assert wait_until(lambda: peer_ups(a2, b) and peer_ups(a2, c), timeout=30, message="the leader is back")
        with subscriber(a2, "t") as on_a:
            publish(b, "t", "leader back")
            assert receives(on_a, "leader back") and receives(on_c, "leader back")


def test_a_stalled_node_does_not_hold_up_delivery_between_the_others(serve):
    """Thespian blocks all of an actor's sends once 20 of its transmits wait for an
    acknowledgement: without a window per peer, b's hub, stuck on a stopped c, would stop
    sending to a too."""
    a = node(serve, "127.0.0.1", name="a", workers=1)
    b = node(serve, "127.0.0.2", leader=a, name="b", workers=1)
    c = node(serve, "127.0.0.3", leader=a, name="c", workers=1)
    assert wait_until(lambda: peer_ups(b, c) and peer_ups(c, b), timeout=20, message="all meet")
    with subscriber(a, "t") as on_a, connect(b.url, open_timeout=10) as pub:
        pub.recv(timeout=5)
        for pid in c.processes():
            os.kill(pid, signal.SIGSTOP)          # c still accepts TCP (the kernel does) but answers nothing
        try:
            n = 60
            for i in range(n):
                pub.send(f"pub:t:m{i}")
                assert pub.recv(timeout=5).startswith("published")
            assert [on_a.recv(timeout=5) for _ in range(n)] == [f"m{i}" for i in range(n)]
        finally:
            for pid in c.processes():
                os.kill(pid, signal.SIGCONT)
    # c comes back (dropped meanwhile or not): it gets what is published from now on
    with subscriber(c, "t") as on_c:
        assert eventually_reaches(b, "t", "after", on_c, timeout=30)
