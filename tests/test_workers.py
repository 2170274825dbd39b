"""The worker layout (--workers K): connections as in-process actors inside K
worker processes.  Real sockets, real clients, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from websockets.asyncio.client import connect

from actors.worker import KillInProcess, WorkerInfo
from logutil import wait_until
from treeutil import workers
from wsup.tools import logs


def echo_many(url, n, size=1000, compression="deflate"):
    async def one(i):
        async with connect(url, compression=compression) as ws:
            msg = ("m%d-" % i) + "x" * size
            await ws.send(msg)
            assert await ws.recv() == msg
    async def main():
        await asyncio.gather(*(one(i) for i in range(n)))
    asyncio.run(main())


def check_log(server):
    result = logs.check(server.log.records(strict=True))
    assert result.ok, "\n".join(str(v) for v in result.violations)
    return result


def test_echo_plain_and_deflate_spread_over_workers(make_server):
    server = make_server(workers=2)
    echo_many(server.url, 30)
    echo_many(server.url, 10, compression=None)
    pids = {r["pid"] for r in server.log.events("connection.upgraded")}
    assert len(pids) == 2                                   # both workers served (SO_REUSEPORT)
    assert pids == {ref.pid for ref in workers(server).values()}
    server.stop()
    result = check_log(server)
    assert result.counts["contexts"] == 60                  # 30 compressed connections x 2


def test_one_process_per_worker_and_the_sockets_in_them(make_server):
    server = make_server(workers=2)
    before = set(server.runtime.processes())

    async def hold():
        conns = [await connect(server.url) for _ in range(20)]
        for c in conns:
            await c.send("hi")
            await c.recv()
        assert set(server.runtime.processes()) == before    # no process per connection
        for c in conns:
            await c.close()
    asyncio.run(hold())


def test_sigkilled_worker_is_restarted_and_the_other_keeps_serving(make_server):
    server = make_server(workers=2)
    echo_many(server.url, 10)
    w = workers(server)
    victim = w["worker-1"]
    t0 = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    def restarted():
        ref = workers(server).get("worker-1")
        return ref is not None and ref.pid != victim.pid
    wait_until(restarted, timeout=5, message="worker-1 restarted")
    assert time.monotonic() - t0 < 1.5
    assert workers(server)["worker-2"] == w["worker-2"]     # untouched
    echo_many(server.url, 10)
    [term] = server.log.events("supervisor.child.terminated", child_id="worker-1")
    assert term["reason"] == "killed"


@pytest.mark.parametrize("kind", ["ConnectionActor", "ConnectionSupervisor"])
def test_killing_an_in_process_actor_releases_every_context_once(make_server, kind):
    server = make_server(workers=1)

    async def run():
        ws = await connect(server.url)
        await ws.send("x" * 500)
        assert len(await ws.recv()) == 500
        [opened] = server.log.events("connection.upgraded")[-1:]
        w = workers(server)["worker-1"]
        killed = server.runtime.call(w, KillInProcess(kind=kind, connection_id=opened["connection_id"]))
        assert len(killed) == 1
        await asyncio.wait_for(ws.wait_closed(), 5)         # the client sees the TCP close
        info = server.runtime.call(w, WorkerInfo())
        assert info["connections"] == 0 and info["open_contexts"] == 0
    asyncio.run(run())
    released = server.log.events("compression.context.released")
    assert len(released) == 2
    server.stop()
    check_log(server)


def test_sigterm_sends_1001_and_exits_0(serve):
    sp = serve("--workers", "2")

    async def run():
        ws = await connect(sp.url)
        await ws.send("hi")
        await ws.recv()
        sp.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(ws.wait_closed(), 15)
        return ws.close_code
    assert asyncio.run(run()) == 1001
    assert sp.proc.wait(30) == 0


def text(n, seed=0):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", str(seed)]
    return " ".join(words[(i * 7 + seed) % len(words)] for i in range(n))


def contexts_by_cause(server):
    """{context_id: cause} of every context opened, each released exactly once (else the check fails)."""
    records = server.log.records(strict=True)
    result = logs.check(records)
    assert result.ok, "\n".join(str(v) for v in result.violations)
    opened = {r["context_id"] for r in records if r["event"] == "compression.context.opened"}
    released = {}
    for r in records:
        if r["event"] == "compression.context.released":
            assert r["context_id"] not in released, f"{r['context_id']} released twice"
            released[r["context_id"]] = r["cause"]
    assert set(released) == opened
    return released


@pytest.mark.parametrize("offer", ["takeover", "client_no_context_takeover"])
def test_a_killed_compression_actor_is_invisible_to_the_client(make_server, offer):
    """Killed in-process (no terminate): its supervisor restarts it, the
    ConnectionActor primes the new inflate context with the last window and
    goes on; the client's next messages refer back into that window."""
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    server = make_server(workers=1)
    ext = ClientPerMessageDeflateFactory(client_max_window_bits=None,
                                         client_no_context_takeover=offer != "takeover")

    async def run():
        async with connect(server.url, extensions=[ext], compression=None) as ws:
            for i in range(5):
                await ws.send(text(300, i))
                assert await ws.recv() == text(300, i)
            cid = server.log.events("connection.upgraded")[-1]["connection_id"]
            w = workers(server)["worker-1"]
            assert len(server.runtime.call(w, KillInProcess(kind="CompressionActor", connection_id=cid))) == 1
            for i in range(5, 15):
                await ws.send(text(300, i))
                assert await ws.recv() == text(300, i)
    asyncio.run(run())
    server.stop()
    causes = contexts_by_cause(server)
    assert sorted(causes.values()) == ["close", "close", "owner_died", "owner_died"]
    [rec] = server.log.events("compression.recovered")
    assert (rec["window_bytes"] > 0) == (offer == "takeover")
    [term] = server.log.events("supervisor.child.terminated", child_id="compression")
    assert term["reason"] == "killed"
    assert not server.log.events("connection.closed", code=1011)


def test_a_crashed_compression_actor_mid_message_is_invisible_to_the_client(make_server, inject):
    inject("compression.inflate:raise:nth=5,once")
    server = make_server(workers=1)

    async def run():
        async with connect(server.url, max_size=None) as ws:
            for i in range(12):
                if i % 3 == 2:   # fragmented: a crash may fall between the fragments
                    msg = text(400, i)
                    await ws.send([msg[:700], msg[700:1400], msg[1400:]])
                else:
                    msg = text(300, i)
                    await ws.send(msg)
                assert await ws.recv() == msg
    asyncio.run(run())
    server.stop()
    [crash] = server.log.events("actor.crashed", actor="CompressionActor")
    assert crash["error_type"] == "supervisors.faults.FaultInjected"
    causes = contexts_by_cause(server)
    assert sorted(causes.values()) == ["close", "close", "error", "error"]
    primed = [r for r in server.log.events("compression.context.opened")
              if r["direction"] == "inflate" and r["primed_bytes"]]
    assert primed, "the new inflate context was rebuilt from the last window"
    assert server.log.events("compression.recovered")
    assert server.log.events("supervisor.child.restarted", child_id="compression")
    assert not server.log.events("connection.closed", code=1011)


def test_a_compression_actor_that_always_crashes_exceeds_the_intensity(make_server, inject):
    inject("compression.inflate:raise:always")
    server = make_server(workers=1)

    async def run():
        ws = await connect(server.url)
        await ws.send(text(100))
        await asyncio.wait_for(ws.wait_closed(), 20)
        assert ws.close_code in (1001, 1011, 1006)
    asyncio.run(run())
    [sd] = server.log.events("supervisor.shutdown")
    assert sd["reason"] == "reached_max_restart_intensity" and sd["supervisor"].startswith("connection-")
    echo_many(server.url, 3, compression=None)      # the worker keeps serving
    server.stop()
    causes = contexts_by_cause(server)
    assert len(causes) == 8 and set(causes.values()) == {"error"}   # 1 start + 3 restarts, 2 each


def test_contexts_of_a_sigkilled_worker_are_accounted_once_by_the_check(make_server):
    server = make_server(workers=1)

    async def run():
        ws = await connect(server.url)            # a compressed connection stays open
        await ws.send("x" * 500)
        await ws.recv()
        victim = workers(server)["worker-1"]
        os.kill(victim.pid, signal.SIGKILL)
        await asyncio.wait_for(ws.wait_closed(), 5)   # clients see the TCP close
        def restarted():
            ref = workers(server).get("worker-1")
            return ref is not None and ref.pid != victim.pid
        wait_until(restarted, timeout=5, message="worker-1 restarted")
    asyncio.run(run())
    server.stop()
    records = server.log.records(strict=True)
    opened = [r for r in records if r["event"] == "compression.context.opened"]
    assert len(opened) == 2 and not any(r["event"] == "compression.context.released" for r in records)
    result = logs.check(records)
    assert result.ok, "\n".join(str(v) for v in result.violations)
    assert result.counts["contexts_died_with_process"] == 2


def _pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise AssertionError("no Pss")


def test_silent_connections_are_cheap_bounded_and_timed_out(make_server):
    """Slowloris: 5,000 TCP connections that never send a byte.  Before the
    upgrade a connection is a socket and a parser in the worker's loop, no
    actors; at most --max-pending-handshakes of them; gone after
    --handshake-timeout."""
    import socket
    server = make_server(workers=1, max_pending_handshakes=4000, handshake_timeout=8.0)
    w = workers(server)["worker-1"]
    before = _pss_kib(w.pid)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5000)]   # ~3.5 s here
    wait_until(lambda: server.runtime.call(w, WorkerInfo())["pending_handshakes"] == 4000, timeout=10,
               message="4,000 pending")
    grown = _pss_kib(w.pid) - before
    assert server.runtime.call(w, WorkerInfo())["connections"] == 0      # no actors for them
    print(f"PSS growth: {grown} KiB for 4,000 pending handshakes")
    assert grown / 4000 < 8, f"{grown} KiB for 4,000 pending handshakes"
    wait_until(lambda: len([r for r in server.log.events("connection.rejected")
                            if r["reason"] == "too many pending handshakes"]) == 1000, timeout=10,
               message="1,000 over the bound refused")
    wait_until(lambda: server.runtime.call(w, WorkerInfo())["pending_handshakes"] == 0, timeout=20,
               message="timed out")
    assert len([r for r in server.log.events("connection.rejected") if r["status"] == 408]) == 4000
    echo_many(server.url, 3)                                  # real clients are served again
    for s in socks:
        s.close()


def test_the_control_socket_informs_and_kills(make_server):
    """What `wsup chaos` uses: a worker's control socket, from outside the server."""
    from wsup.tools.control import control
    server = make_server(workers=1)
    [rec] = server.log.events("worker.listening")
    info = control(rec["control"], {"op": "info"})
    assert info["ok"] and info["pid"] == rec["pid"] and info["connections"] == 0

    async def run():
        ws = await connect(server.url)
        await ws.send("x" * 500)
        await ws.recv()
        assert control(rec["control"], {"op": "info"})["connections"] == 1
        got = control(rec["control"], {"op": "kill", "kind": "ConnectionActor", "limit": 1})
        assert got["ok"] and len(got["killed"]) == 1
        await asyncio.wait_for(ws.wait_closed(), 5)
    asyncio.run(run())
    assert control(rec["control"], {"op": "kill", "kind": "Application"}) == \
        {"ok": False, "error": "unknown kind 'Application'"}
    assert not control(rec["control"], {"op": "nope"})["ok"]
    server.stop()
    check_log(server)


def test_ended_connections_leave_no_cyclic_garbage(make_server):
    """However a connection ends (closing handshake, TCP drop, an in-process kill of any of
    its actors), its actors, Session, app and socket are freed by reference counting: the
    cycle collector finds none of them (it found ~58 objects per connection before
    InProcessTier.died let go of them), and the actor registry keeps no entry for them."""
    from wsup.tools.control import control
    server = make_server(workers=1)
    [rec] = server.log.events("worker.listening")
    name = rec["control"]
    echo_many(server.url, 5)                                # first use: imports, caches
    wait_until(lambda: control(name, {"op": "info"})["connections"] == 0)
    before = control(name, {"op": "gc", "collect": True})
    entries = control(name, {"op": "info"})["registry_entries"]

    async def ended_by_kill(kind):
        ws = await connect(server.url, compression="deflate")
        await ws.send("x" * 500)
        await ws.recv()
        assert control(name, {"op": "kill", "kind": kind, "limit": 1})["killed"]
        if kind == "CompressionActor":                      # restarted: the connection goes on
            await ws.send("y" * 500)
            assert await ws.recv() == "y" * 500
            await ws.close()
        await asyncio.wait_for(ws.wait_closed(), 5)

    async def dropped():
        ws = await connect(server.url, compression="deflate")
        await ws.send("z" * 500)
        await ws.recv()
        ws.transport.abort()

    async def run():
        for kind in ("ConnectionActor", "CompressionActor", "ConnectionSupervisor") * 5:
            await ended_by_kill(kind)
        for _ in range(10):
            await dropped()
    echo_many(server.url, 100)                              # compressed, closing handshake
    echo_many(server.url, 50, compression=None)
    asyncio.run(run())
    n = 5 + 100 + 50 + 15 + 10
    wait_until(lambda: control(name, {"op": "info"})["connections"] == 0, timeout=10)
    after = control(name, {"op": "gc", "collect": True})
    assert after["collected"] - before["collected"] < n - 5, (before, after)   # < 1 object per connection
    assert control(name, {"op": "info"})["registry_entries"] <= entries
    server.stop()
    check_log(server)


def _on_two_workers(server, n=40):
    """Open ControlApp connections until two are on different workers: [(ws, id)] x 2 (others closed)."""
    from websockets.sync.client import connect as sync_connect
    by_worker, spare = {}, []
    for _ in range(n):
        c = sync_connect(server.url, open_timeout=10)
        cid = c.recv().split()[1]
        w = cid.split("-")[0]
        if w in by_worker:
            spare.append(c)
        else:
            by_worker[w] = (c, cid)
        if len(by_worker) == 2:
            break
    for c in spare:
        c.close()
    assert len(by_worker) == 2, "SO_REUSEPORT sent every connection to one worker"
    return list(by_worker.values())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # websockets: connect() outside a with
def test_a_connection_tells_a_connection_in_another_worker(make_server):
    server = make_server(workers=2, app="apps:ControlApp")
    (a, a_id), (b, b_id) = _on_two_workers(server)
    with a, b:
        a.send(f"tell:{b_id}:from a")             # by id, across workers
        assert b.recv(timeout=5) == "pushed: from a"
        b.send(f"tell:{a_id}:and back")
        assert a.recv(timeout=5) == "pushed: and back"
        a.send(f"tell:{a_id}:to myself")          # in-process, same worker
        assert a.recv(timeout=5) == "pushed: to myself"
        a.send("tell:9-000000000000:nobody")     # no such worker: dropped, nothing breaks
        a.send("still there")
        assert a.recv(timeout=5) == "still there"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # websockets: connect() outside a with
def test_conn_address_is_picklable_and_reachable_from_the_process_tier(make_server):
    """Deliver sent to conn.address.worker, from outside the worker (here the
    server's main process, an actor system client like any process-tier actor)."""
    import pickle
    from wsup.app import ConnectionAddress, Deliver
    server = make_server(workers=2, app="apps:ControlApp")
    (a, a_id), (b, b_id) = _on_two_workers(server)
    with a, b:
        a.send("address")
        addr = pickle.loads(a.recv(timeout=5))
        assert isinstance(addr, ConnectionAddress) and addr.connection_id == a_id
        assert addr.worker == workers(server)[f"worker-{a_id.split('-')[0]}"].address
        server.runtime.tell(addr.worker, Deliver(addr.connection_id, "news"))
        assert a.recv(timeout=5) == "pushed: news"
        # to the other worker, which forwards it by the id
        other = workers(server)[f"worker-{b_id.split('-')[0]}"].address
        server.runtime.tell(other, Deliver(a_id, "forwarded"))
        assert a.recv(timeout=5) == "pushed: forwarded"


def test_wsup_send_from_outside_the_server(serve):
    import subprocess
    import sys
    from websockets.sync.client import connect as sync_connect
    sp = serve("--app", "apps:ControlApp", "--workers", "2")
    with sync_connect(sp.url, open_timeout=10) as c:
        cid = c.recv().split()[1]
        r = subprocess.run([sys.executable, "-m", "wsup.cli", "send", "--server-log", str(sp.log_path), cid,
                            '"hello from outside"'], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert c.recv(timeout=5) == "pushed: hello from outside"
        r = subprocess.run([sys.executable, "-m", "wsup.cli", "send", "--server-log", str(sp.log_path), cid,
                            "not json"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "JSON" in r.stderr


def test_a_crashed_worker_records_the_contexts_it_held_and_is_restarted(make_server, inject):
    """The worker's loop crashes (fault on its 2nd accept) with a compressed
    connection open: the worker is restarted, and the contexts it held are
    recorded released once (owner_died) as it ends."""
    inject("worker.accept:raise:nth=2,once")
    server = make_server(workers=1)

    async def run():
        ws = await connect(server.url)
        await ws.send("x" * 500)
        await ws.recv()
        victim = workers(server)["worker-1"]
        try:
            async with connect(server.url, open_timeout=3):
                pass
        except Exception:
            pass                                   # the accept that crashes the worker
        await asyncio.wait_for(ws.wait_closed(), 5)
        def restarted():
            ref = workers(server).get("worker-1")
            return ref is not None and ref.pid != victim.pid
        wait_until(restarted, timeout=5, message="worker-1 restarted")
    asyncio.run(run())
    echo_many(server.url, 2)
    server.stop()
    causes = contexts_by_cause(server)
    assert sorted(causes.values()).count("owner_died") == 2
    [crash] = server.log.events("actor.crashed", actor="WorkerActor")
    assert crash["error_type"] == "supervisors.faults.FaultInjected"
