"""--metrics-port: exact Prometheus counts after a scripted workload, the health
endpoints across start, a killed worker and shutdown, and the live feed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import websockets
from devtools import CHROMIUM, DevTools, chromium
from logutil import contexts_released_once, wait_until
from prometheus_client.parser import text_string_to_metric_families

from actors.worker import control_name
from supervisors import _platform
from wsup.tools.control import control


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port: int) -> dict[tuple, float]:
    """{(sample name, (sorted labels)): value} of every sample wsup exposes."""
    status, text = http_get(port, "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """Summed over every series of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == v2 for k, v2 in labels.items()))


def test_exact_counts_after_a_scripted_workload(make_server):
    server = make_server(app="apps:CrashApp", workers=2, metrics_port=0, max_message_size=4096)
    mport = server.config.metrics_port
    name = {i: control_name(server.config, i) for i in (1, 2)}
    payload = "lorem ipsum " * 20      # 240 bytes: over the deflate threshold

    async def workload():
        # A: 5 echoes then a normal close; B: closes 4001; C: its CompressionActor killed,
        # one echo after (recovered in place), then a crash of the app (1011); D: a message
        # over --max-message-size (1009); and one bad upgrade request (400).
        a = await websockets.connect(server.url)
        for _ in range(5):
            await a.send(payload)
            assert await a.recv() == payload
        await a.close()
        b = await websockets.connect(server.url)
        await b.send(payload)
        await b.recv()
        await b.close(code=4001)
        c = await websockets.connect(server.url)
        await c.send(payload)
        await c.recv()
        cid = None
        for i in (1, 2):
            for conn in control(name[i], {"op": "tree"}).get("connections", []):
                cid, worker = conn["connection_id"], i
        assert cid is not None
        assert control(name[worker], {"op": "kill", "kind": "CompressionActor", "connection_id": cid})["killed"]
        await c.send(payload)
        assert await c.recv() == payload
        await c.send("crash")
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await c.recv()
        assert closed.value.rcvd.code == 1011
        d = await websockets.connect(server.url, compression=None)
        await d.send("x" * 5000)
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await d.recv()
        assert closed.value.rcvd.code == 1009
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")

    asyncio.run(workload())
    server.log.wait_for("connection.closed", count=4, timeout=10)

    def settled():
        m = scrape(mport)
        return m if total(m, "wsup_connections_closed_total") == 4 and \
            total(m, "wsup_compression_contexts_open") == 0 else None
    m = wait_until(settled, timeout=10, message="4 closes and no context open")
    assert total(m, "wsup_connections_accepted_total") == 5
    assert total(m, "wsup_connections_upgraded_total") == 4
    assert total(m, "wsup_connections_rejected_total") == 1
    assert total(m, "wsup_connections_rejected_total", status="400") == 1
    assert total(m, "wsup_connections_closed_total", code="1000", initiator="client") == 1
    assert total(m, "wsup_connections_closed_total", code="4xxx", initiator="client") == 1
    assert total(m, "wsup_connections_closed_total", code="1011", initiator="server") == 1
    assert total(m, "wsup_connections_closed_total", code="1009", initiator="server") == 1
    assert total(m, "wsup_limit_closes_total") == 1
    assert total(m, "wsup_limit_closes_total", limit="message_size") == 1
    assert total(m, "wsup_connections_open") == 0
    # messages: A 5, B 1, C 2 echoed + "crash" received; D's message is refused before it is one
    assert total(m, "wsup_messages_received_total") == 9
    assert total(m, "wsup_messages_sent_total") == 8
    assert total(m, "wsup_payload_received_bytes_total") == 8 * 240 + 5
    assert total(m, "wsup_payload_sent_bytes_total") == 8 * 240
    wire_in, wire_out = total(m, "wsup_wire_received_bytes_total"), total(m, "wsup_wire_sent_bytes_total")
    assert 0 < wire_out < 8 * 240 and 0 < wire_in     # compressed on the wire
    assert total(m, "wsup_handshake_duration_seconds_count") == 4
    # compression: A, B and C each ran a CompressionActor (C's twice): 4 starts, 8 contexts
    assert total(m, "wsup_compression_recoveries_total") == 1
    assert total(m, "wsup_compression_contexts_opened_total") == 8
    assert total(m, "wsup_compression_contexts_released_total") == 8
    assert total(m, "wsup_compression_contexts_released_total", cause="owner_died") == 2
    assert total(m, "wsup_actor_starts_total", supervisor="connection", child_id="compression") == 4
    assert total(m, "wsup_actor_starts_total", supervisor="connection", child_id="connection") == 4
    assert total(m, "wsup_actor_starts_total", supervisor="connections", child_id="connection") == 4
    assert total(m, "wsup_actor_crashes_total", supervisor="connection", child_id="compression",
                 reason="killed") == 1
    assert total(m, "wsup_actor_crashes_total", supervisor="connection", child_id="connection",
                 reason="error") == 1
    assert total(m, "wsup_actor_crashes_total") == 2
    assert total(m, "wsup_actor_restarts_total", supervisor="connection", child_id="compression") == 1
    assert total(m, "wsup_actor_restarts_total") == 1
    assert total(m, "wsup_supervisor_intensity_shutdowns_total") == 0
    assert value(m, "wsup_worker_up", worker="1") == value(m, "wsup_worker_up", worker="2") == 1
    assert total(m, "wsup_worker_restarts_total") == 0
    assert value(m, "wsup_ready") == 1
    # the process metrics prometheus_client gives, per process
    for proc in ("observer", "worker-1", "worker-2"):
        assert value(m, "process_resident_memory_bytes", process=proc) > 0
        assert value(m, "process_open_fds", process=proc) > 0
    contexts_released_once(server.log)


def test_intensity_shutdown_of_a_connection_supervisor_is_counted(make_server):
    """A CompressionActor that crashes on every start: its ConnectionSupervisor gives up."""
    from supervisors import faults
    faults.configure(["compression.open:raise"])
    try:
        server = make_server(workers=1, metrics_port=0)
    finally:
        faults.configure([])

    async def run():
        async with websockets.connect(server.url) as ws:
            await ws.send("lorem ipsum " * 20)
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
    asyncio.run(run())
    m = wait_until(lambda: (lambda m: m if total(m, "wsup_supervisor_intensity_shutdowns_total") else None)(
        scrape(server.config.metrics_port)), timeout=15)
    assert total(m, "wsup_supervisor_intensity_shutdowns_total", supervisor="connection") == 1
    assert total(m, "wsup_actor_crashes_total", child_id="compression", reason="error") == 4
    assert total(m, "wsup_actor_restarts_total", child_id="compression") == 3


def test_health_and_readiness_across_start_a_killed_worker_and_shutdown(serve, tmp_path):
    mport = _platform.free_port()
    seen: list[int] = []
    stop = threading.Event()

    def poll():     # from before the server exists until it is ready
        while not stop.is_set():
            try:
                status, _ = http_get(mport, "/readyz", timeout=2)
                seen.append(status)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        sp = serve("--workers", "2", "--metrics-port", str(mport), "--shutdown-timeout", "3",
                   "--fault", "worker.init:delay=2")
        poller.join(timeout=20)
    finally:
        stop.set()
    assert 503 in seen and seen[-1] == 200 and seen.index(503) < len(seen) - 1, seen
    assert wait_until(lambda: http_get(mport, "/healthz")[0] == 200, timeout=10)
    m = scrape(mport)
    assert value(m, "wsup_worker_up", worker="1") == 1

    # a SIGKILLed worker: /healthz 503 (and not ready) until its supervisor restarts it
    workers = {r["control"]: r["pid"] for r in sp.log.events("worker.listening")}
    worker_pid = next(pid for name, pid in workers.items() if name.endswith("-worker-1"))
    os.kill(worker_pid, signal.SIGKILL)
    assert wait_until(lambda: http_get(mport, "/healthz")[0] == 503, timeout=5)
    status, body = http_get(mport, "/healthz")
    assert json.loads(body)["workers"] == {"worker-1": False, "worker-2": True}
    assert http_get(mport, "/readyz")[0] == 503
    # the restarted worker starts slowly (worker.init:delay=2): 503 meanwhile, then 200
    assert wait_until(lambda: http_get(mport, "/healthz")[0] == 200, timeout=20)
    assert http_get(mport, "/readyz")[0] == 200
    m = scrape(mport)
    assert value(m, "wsup_worker_restarts_total", worker="1") == 1
    assert value(m, "wsup_worker_restarts_total", worker="2") == 0

    # shutdown: a client that never answers our close frame keeps its worker closing for
    # --shutdown-timeout (3 s): not ready meanwhile, still healthy, then the port is gone
    raw = socket.create_connection(("127.0.0.1", sp.port))
    raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    sp.log.wait_for("connection.upgraded", timeout=5)
    sp.proc.send_signal(signal.SIGTERM)
    assert wait_until(lambda: http_get(mport, "/readyz")[0] == 503, timeout=5)
    assert json.loads(http_get(mport, "/readyz")[1])["status"] == "shutting down"
    assert sp.proc.wait(timeout=30) == 0
    raw.close()
    with pytest.raises(OSError):
        http_get(mport, "/readyz", timeout=2)


def test_live_feed_pushes_the_tree_and_events(make_server):
    server = make_server(workers=1, metrics_port=0)
    mport = server.config.metrics_port

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{mport}/live") as live:
            hello = json.loads(await live.recv())
            assert hello["type"] == "hello" and hello["workers"] == 1
            async with websockets.connect(server.url) as ws:
                await ws.send("lorem ipsum " * 20)
                await ws.recv()
                cid = server.log.events("connection.upgraded")[0]["connection_id"]

                async def next_of(pred, timeout=10):
                    async with asyncio.timeout(timeout):
                        while True:
                            msg = json.loads(await live.recv())
                            if pred(msg):
                                return msg
                summary = await next_of(lambda m: m["type"] == "summary" and m["connections_open"] == 1)
                [w] = summary["workers"]
                assert [c["connection_id"] for c in w["connections"]] == [cid]
                await live.send(json.dumps({"op": "inspect", "worker": 1, "connection_id": cid}))
                got = await next_of(lambda m: m["type"] == "inspect")
                assert [c["actor"] for c in got["children"]] == ["ConnectionActor", "CompressionActor"]
                control(control_name(server.config, 1), {"op": "kill", "kind": "CompressionActor",
                                                         "connection_id": cid})
                ev = await next_of(lambda m: m["type"] == "event" and m["event"] == "child.restarted")
                assert ev["connection_id"] == cid and ev["child_id"] == "compression"
            status, page = http_get(mport, "/")
            assert status == 200 and "new WebSocket" in page
            assert http_get(mport, "/nope")[0] == 404

    asyncio.run(run())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_live_page_in_chromium_shows_a_connection_and_an_actor_restart(make_server, tmp_path):
    server = make_server(workers=2, metrics_port=0)
    mport = server.config.metrics_port
    with chromium(f"http://127.0.0.1:{mport}/", str(tmp_path / "profile")) as browser:
        target = browser.page(str(mport))

        async def run():
            async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as dt_ws:
                dt = DevTools(dt_ws)
                await dt.wait_for("document.getElementById('status').textContent === 'ready'")
                async with websockets.connect(server.url) as ws:
                    await ws.send("lorem ipsum " * 20)        # starts its CompressionActor
                    await ws.recv()
                    cid = server.log.events("connection.upgraded")[0]["connection_id"]
                    worker = int(cid.split("-")[0])
                    row = f"li.conn[data-connection-id='{cid}']"
                    # the connection the test opened, in its worker's subtree
                    assert await dt.wait_for(
                        f"!!document.querySelector(\"li.worker[data-worker='{worker}'] {row}\")")
                    # opened down to its actors
                    await dt.evaluate(f"(() => {{ const d = document.querySelector(\"{row} details\");"
                                      f" d.open = true; return true; }})()")
                    assert await dt.wait_for(
                        f"!!document.querySelector(\"{row} tr[data-actor='CompressionActor']\")")
                    before = await dt.evaluate(
                        f"document.querySelector(\"{row} tr[data-actor='CompressionActor']\")"
                        f".getAttribute('data-incarnation')")
                    # kill its CompressionActor: the restart shows as an event and in the subtree
                    killed = control(control_name(server.config, worker),
                                     {"op": "kill", "kind": "CompressionActor", "connection_id": cid})["killed"]
                    assert killed
                    assert await dt.wait_for(
                        f"!!document.querySelector(\"#events li[data-event='child.restarted']"
                        f"[data-connection-id='{cid}'][data-child-id='compression']\")")
                    assert await dt.wait_for(
                        f"!!document.querySelector(\"#events li[data-event='child.terminated']"
                        f"[data-connection-id='{cid}']\")")
                    assert await dt.wait_for(f"document.querySelector(\"{row}\")"
                                             f".getAttribute('data-recoveries') === '1'")
                    after = await dt.wait_for(
                        f"(() => {{ const r = document.querySelector(\"{row} tr[data-actor='CompressionActor']\");"
                        f" const n = r && r.getAttribute('data-incarnation');"
                        f" return n !== {json.dumps(before)} ? n : null; }})()")
                    assert int(after) > int(before)
                    await ws.send("after the restart")
                    assert await ws.recv() == "after the restart"
                # the connection is gone from the page once closed
                assert await dt.wait_for(f"!document.querySelector(\"{row}\")")

        asyncio.run(run())
    contexts_released_once(server.log)


def test_wsup_top_prints_the_workers_from_the_feed(make_server):
    server = make_server(workers=2, metrics_port=0)
    out = subprocess.run([sys.executable, "-m", "wsup.cli", "top", f"127.0.0.1:{server.config.metrics_port}",
                          "--once"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "connections open" in out.stdout
    assert "worker-1" in out.stdout and "worker-2" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "wsup.cli", "top", f"127.0.0.1:{_platform.free_port()}", "--once"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "refused" in bad.stderr
