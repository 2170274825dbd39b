"""Smoke tests of the benchmark (bench/loadgen.py, wsup/tools/bench.py): it runs,
produces numbers and verifies echoes.  No timing assertions: ratios are
reported, never asserted (docs/performance.md)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    """bench/<name>.py (a script, not a package module) as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", os.path.join(ROOT, "bench", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


loadgen = _load("loadgen")


def test_prepared_frames_are_what_a_websocket_library_decodes():
    """The pre-compressed, pre-masked frames inflate to the payload."""
    import zlib
    for m in loadgen.make_messages(1024, 3) + loadgen.make_messages(200, 2, wbits=9):
        frame = m.deflated
        assert frame[0] == 0xC1                     # FIN, RSV1, text
        n = frame[1] & 0x7F
        off = 2 + (2 if n == 126 else 0)
        n = int.from_bytes(frame[2:4], "big") if n == 126 else n
        key, body = frame[off:off + 4], frame[off + 4:]
        assert len(body) == n
        data = bytes(b ^ key[i % 4] for i, b in enumerate(body))
        assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == m.payload
        assert len(m.payload) in (1024, 200) and m.compressed_size < len(m.payload)


@pytest.fixture
def websockets_server():
    """A websockets server in a thread; the handler is set by the test."""
    from websockets.asyncio.server import serve

    state = {"handler": None}
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handler(ws):
        await state["handler"](ws)

    async def main():
        state["stop"] = asyncio.Event()
        async with serve(handler, "127.0.0.1", 0) as server:
            state["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await state["stop"].wait()

    t = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    t.start()
    assert ready.wait(10)
    yield state
    loop.call_soon_threadsafe(state["stop"].set)
    t.join(10)


def _run_loadgen(capsys, *argv):
    rc = loadgen.main(list(argv))
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


ENGINES = [pytest.param("c", marks=pytest.mark.skipif(loadgen.echoloop() is None,
                                                      reason="no C compiler or zlib header")), "python"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("compression", ["--compression", "--no-compression", "takeover"])
def test_loadgen_verifies_echoes(websockets_server, capsys, compression, engine):
    async def echo(ws):
        async for m in ws:
            await ws.send(m)
    websockets_server["handler"] = echo
    opts = ["--compression", "--offer", "takeover"] if compression == "takeover" else [compression]
    rc, out = _run_loadgen(capsys, "echo", "--port", str(websockets_server["port"]), "--conns", "3",
                           "--duration", "0.3", "--warmup", "0.1", "--engine", engine, *opts)
    assert rc == 0 and out["ok"], out
    assert out["engine"] == engine
    assert out["messages"] > 0 and out["verified"] >= out["messages"] and out["mismatches"] == 0
    assert out["deflate_negotiated"] == (0 if compression == "--no-compression" else 3)
    assert out["p50_ms"] is not None and out["gen_cpu"] is not None


@pytest.mark.parametrize("engine", ENGINES)
def test_loadgen_verifies_fragmented_echoes_and_answers_pings(websockets_server, capsys, engine):
    """A reply in three fragments (each compressed in the one stream), a ping before it."""
    async def fragments(ws):
        async for m in ws:
            await ws.ping(b"hi")
            await ws.send([m[:100], m[100:700], m[700:]])
    websockets_server["handler"] = fragments
    rc, out = _run_loadgen(capsys, "echo", "--port", str(websockets_server["port"]), "--conns", "2",
                           "--duration", "0.3", "--warmup", "0.1", "--engine", engine,
                           "--offer", "takeover")
    assert rc == 0 and out["ok"], out
    assert out["messages"] > 0 and out["mismatches"] == 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("compression", ["--compression", "--no-compression"])
def test_loadgen_detects_a_wrong_echo(websockets_server, capsys, engine, compression):
    state = {"n": 0}

    async def corrupt(ws):
        async for m in ws:
            state["n"] += 1
            # the first echo (made while opening, in Python) is right: the measured loop must catch it
            await ws.send(m if state["n"] <= 2 else m[:-1] + "!")
    websockets_server["handler"] = corrupt
    rc, out = _run_loadgen(capsys, "echo", "--port", str(websockets_server["port"]), "--conns", "2",
                           "--duration", "0.3", "--warmup", "0.1", "--engine", engine, compression)
    assert rc == 1 and not out["ok"]
    assert out["engine"] == engine
    assert out["mismatches"] > 0 and any("mismatch" in e for e in out["errors"]), out


def test_loadgen_reports_a_server_that_goes_away(websockets_server, capsys):
    """A connection the server closes in the measured loop is a failure, not a hang."""
    state = {"n": 0}

    async def leave(ws):
        async for m in ws:
            state["n"] += 1
            if state["n"] > 4:
                await ws.close(1001)
                return
            await ws.send(m)
    websockets_server["handler"] = leave
    rc, out = _run_loadgen(capsys, "echo", "--port", str(websockets_server["port"]), "--conns", "2",
                           "--duration", "0.3", "--warmup", "0.1", "--engine", "c")
    assert rc == 1 and not out["ok"] and out["failures"] > 0, out
    assert out["engine"] == ("c" if loadgen.echoloop() is not None else "python")


def test_quick_benchmark_against_wsup(tmp_path):
    """`wsup bench --quick` against wsup alone, for a few seconds per part:
    every part produced numbers, every echo was verified, the server exited 0
    and left no process."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "wsup.cli", "bench", "--quick", "--servers", "wsup", "--duration", "1",
         "--warmup", "0.2", "--conns", "1,4", "--mem-conns", "4", "--hold-cap", "8", "--hold-step", "4",
         "--hold-budget", "20", "--json", str(out), "--keep-logs", str(tmp_path / "logs")],
        capture_output=True, text=True, cwd=ROOT, timeout=110)
    assert out.exists(), proc.stderr[-3000:]
    data = json.loads(out.read_text())
    by_kind: dict[str, list] = {}
    for run in data["runs"]:
        by_kind.setdefault(run["kind"], []).append(run["result"])
    assert set(by_kind) == {"echo", "setup", "memory", "hold"}, proc.stderr[-3000:]
    assert len(by_kind["echo"]) == 4     # N = 1, 4; with and without compression
    for r in by_kind["echo"]:
        assert r["ok"], r
        assert r["msgs_per_s"] > 0 and r["p50_ms"] is not None and r["p99_ms"] is not None
        assert r["verified"] >= r["messages"] > 0 and r["mismatches"] == 0
        assert r["gen_cpu"] is not None and r["server_cpu"] is not None
    assert [r["deflate_negotiated"] for r in by_kind["echo"]] == [1, 4, 0, 0]
    for r in by_kind["setup"]:
        assert r["ok"] and r["handshakes"] > 0, r
    for r in by_kind["memory"]:
        assert r["held"] == 4 and r["per_conn_kib"] > 0, r
    [hold] = by_kind["hold"]
    assert hold["held"] > 0 and hold["mismatches"] == 0
    assert data["verified"] > 0 and data["mismatches"] == 0
    for name, s in data["servers"].items():
        assert s["exit"] == 0, (name, s)
    assert not [p for p in data["problems"] if "left" in p], data["problems"]
    assert "| echo N=1 deflate: msgs/s ↑ |" in proc.stdout


def test_sigterm_stops_the_servers_it_started(tmp_path):
    """SIGTERM to `wsup bench` (as Ctrl-C) stops every server it started before it exits."""
    import re
    import signal
    import time
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsup.cli", "bench", "--servers", "wsup,websockets", "--parts", "echo",
         "--conns", "1", "--rounds", "5", "--duration", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    pids, lines = {}, []
    deadline = time.monotonic() + 60
    try:
        while len(pids) < 2:
            assert time.monotonic() < deadline, lines
            line = proc.stderr.readline()
            lines.append(line)
            m = re.search(r"\] (\S+): pid (\d+), port", line)
            if m:
                pids[m.group(1)] = int(m.group(2))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for name, pid in pids.items():
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", name


# -- the broadcast part (bench/broadcast.py) --------------------------------------------------


broadcast = _load("broadcast")


def _broadcast_handler(corrupt_after: int | None = None):
    """The protocol of bench/broadcast_app.py on websockets' broadcast(); with ``corrupt_after``,
    one subscriber misses a message (the one after that many)."""
    from websockets.asyncio.server import broadcast as push
    subs: list = []
    state = {"n": 0}

    async def handler(ws):
        if ws.request.path == "/pub":
            async for m in ws:
                state["n"] += 1
                if corrupt_after is not None and state["n"] == corrupt_after + 1 and subs:
                    push(subs[1:], m)
                else:
                    push(subs, m)
            return
        subs.append(ws)
        try:
            async for m in ws:
                await ws.send(m)
        finally:
            subs.remove(ws)
    return handler


def _run_broadcast(capsys, port, *argv):
    rc = broadcast.main(["--port", str(port), "--duration", "0.3", "--warmup", "0.1", "--settle", "0", *argv])
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_broadcast_generator_verifies_every_delivery(websockets_server, capsys):
    websockets_server["handler"] = _broadcast_handler()
    rc, out = _run_broadcast(capsys, websockets_server["port"], "--subs", "5", "--size", "200")
    assert rc == 0 and out["ok"], out
    assert out["deflate_negotiated"] == 5 and out["deliveries"] > 0 and out["deliveries_per_s"] > 0
    assert out["verified"] == out["expected_deliveries"] == out["published_total"] * 5
    assert out["mismatches"] == 0 and out["lost"] == 0
    assert out["p50_ms"] is not None and out["p99_ms"] >= out["p50_ms"] and out["gen_cpu"] is not None


def test_broadcast_generator_detects_a_missed_delivery(websockets_server, capsys):
    websockets_server["handler"] = _broadcast_handler(corrupt_after=6)
    rc, out = _run_broadcast(capsys, websockets_server["port"], "--subs", "3")
    assert rc == 1 and not out["ok"]
    assert out["mismatches"] == 1 and any("out of order: message 7 where 6 was due" in e for e in out["errors"]), out


def test_quick_broadcast_benchmark_against_wsup(tmp_path):
    """`wsup bench --quick --parts broadcast --servers wsup`: a fresh wsup with
    bench/broadcast_app.py, 200 subscribers; numbers, every delivery verified,
    the server exited 0 and left no process."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "wsup.cli", "bench", "--quick", "--parts", "broadcast", "--servers", "wsup",
         "--duration", "1", "--warmup", "0.3", "--json", str(out), "--keep-logs", str(tmp_path / "logs")],
        capture_output=True, text=True, cwd=ROOT, timeout=90)
    assert out.exists(), proc.stderr[-3000:]
    data = json.loads(out.read_text())
    [run] = data["runs"]
    r = run["result"]
    assert run["kind"] == "broadcast" and r["ok"], r
    assert r["subs"] == r["opened"] == r["deflate_negotiated"] == 200
    assert r["deliveries_per_s"] > 0 and r["p50_ms"] is not None and r["p99_ms"] is not None
    assert r["verified"] == r["expected_deliveries"] == r["published_total"] * 200 > 0
    assert r["mismatches"] == 0 and r["lost"] == 0 and r["gen_cpu"] is not None and r["server_cpu"] is not None
    for name, s in data["servers"].items():
        assert s["exit"] == 0, (name, s)
    assert not data["problems"], data["problems"]
    assert "| broadcast to N=200 (deflate, context takeover): deliveries/s ↑ |" in proc.stdout
