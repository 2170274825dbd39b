"""`wsup serve` as a real process: readiness line, signals, exit status, no leftovers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
from logutil import Log, wait_until
from serveproc import WSUP
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from supervisors import _platform

HERE = os.path.dirname(os.path.abspath(__file__))


def test_sigterm_sends_1001_waits_for_handshakes_and_exits_0(serve):
    sp = serve()
    stack = contextlib.ExitStack()
    clients = [stack.enter_context(connect(sp.url, compression=None)) for _ in range(3)]
    for c in clients:
        c.send("x")
        assert c.recv() == "x"
    procs = sp.processes()
    assert len(procs) >= 6  # admin, logger, application, root, workers, a worker per CPU
    sp.proc.send_signal(signal.SIGTERM)
    for c in clients:
        with pytest.raises(ConnectionClosed) as info:
            c.recv(timeout=10)
        assert info.value.rcvd.code == 1001
    assert sp.proc.wait(timeout=30) == 0
    stack.close()
    assert not [p for p in procs if _platform.process_start_time(p) is not None]
    assert sp.processes() == []
    events = [r["event"] for r in sp.log.records(strict=True)]
    assert events.index("server.stopping") < events.index("server.stopped")
    closed = sp.log.events("connection.closed")
    assert len(closed) == 3 and all(r["code"] == 1001 and r["clean"] for r in closed)
    [stopped] = sp.log.events("runtime.stopped")
    assert stopped["status"] == 0


def test_shutdown_waits_for_a_slow_closing_handshake_then_gives_up(serve):
    from rawws import RawClient
    sp = serve("--shutdown-timeout", "1")
    c = RawClient("127.0.0.1", sp.port)
    c.send_frame(0x1, b"hi")
    assert c.recv_frame()[3] == b"hi"
    t = time.monotonic()
    sp.proc.send_signal(signal.SIGTERM)
    assert c.recv_close() == (1001, "server shutting down")
    # we never answer: the server waits --shutdown-timeout, then exits 0
    assert sp.proc.wait(timeout=30) == 0
    assert 0.8 < time.monotonic() - t < 10
    [closed] = sp.log.events("connection.closed")
    assert closed["code"] == 1001 and closed["clean"] is False


def test_sigterm_to_the_whole_group_still_stops_in_order(serve):
    sp = serve()
    with connect(sp.url, compression=None) as c:
        c.send("x")
        c.recv()
        for pid in sp.processes() + [sp.proc.pid]:
            os.kill(pid, signal.SIGTERM)   # what systemd or `pkill -f` do
        with pytest.raises(ConnectionClosed) as info:
            c.recv(timeout=10)
        assert info.value.rcvd.code == 1001
    assert sp.proc.wait(timeout=30) == 0
    assert sp.processes() == []


def test_sigint_stops_gracefully(serve):
    sp = serve()
    sp.proc.send_signal(signal.SIGINT)
    assert sp.proc.wait(timeout=30) == 0
    assert sp.processes() == []


def test_sigkill_of_the_main_process_leaves_nothing(serve):
    sp = serve()
    with connect(sp.url, compression=None) as c:
        c.send("x")
        c.recv()
        procs = sp.processes()
        sp.proc.kill()
        sp.proc.wait()
        wait_until(lambda: not [p for p in procs if _platform.process_start_time(p) is not None],
                   timeout=5, message="every process of the server gone")


def test_app_option_loads_another_application(serve):
    sp = serve("--app", "apps:ControlApp")
    with connect(sp.url + "/p", compression=None) as c:
        assert c.recv().startswith("hello ")


def test_bad_app_is_a_usage_error(tmp_path):
    r = subprocess.run(WSUP + ["serve", "--port", "0", "--app", "no_such_module:App"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no_such_module" in r.stderr


def test_port_in_use_fails_with_status_1(serve, tmp_path):
    sp = serve()
    r = subprocess.run(WSUP + ["serve", "--port", str(sp.port), "--log-file", str(tmp_path / "b.jsonl")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    rec = Log(tmp_path / "b.jsonl").events("server.start_failed")
    assert rec and "Address already in use" in str(rec[0]["reason"])


def test_help_documents_every_option():
    r = subprocess.run(WSUP + ["serve", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for opt in ("--host", "--port", "--app", "--log-file", "--log-format", "--max-connections",
                "--max-message-size", "--max-frame-size", "--idle-timeout", "--ping-interval",
                "--ping-timeout", "--close-timeout", "--shutdown-timeout", "--origin", "--subprotocol"):
        assert opt in r.stdout
