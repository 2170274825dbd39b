"""permessage-deflate end to end: interop, limits, and every path that
releases a connection's zlib contexts — with the log as the evidence that each
context opened is released exactly once."""

from __future__ import annotations

import os
import zlib

import pytest
from logutil import contexts_released_once, wait_until
from rawws import RawClient, deflate_payload
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect



def deflate_client(server, path="/", **factory_kw):
    """websockets with its default offer, or (keywords) an offer of exactly these parameters."""
    if factory_kw:
        factory_kw.setdefault("client_max_window_bits", None)
    ext = ClientPerMessageDeflateFactory(**factory_kw) if factory_kw else None
    kw = {"extensions": [ext], "compression": None} if ext else {}
    return connect(server.url + path, open_timeout=10, max_size=None, **kw)


def text(n, seed=0):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", str(seed)]
    return " ".join(words[(i * 7 + seed) % len(words)] for i in range(n))


def echo_then_close(server, n):
    """*n* compressed echoes on one connection, then it closes: the release cause of every
    context on record (each released exactly once, or the check fails)."""
    with deflate_client(server) as c:
        for i in range(n):
            c.send(text(300, i))
            assert c.recv() == text(300, i)
    wait_closed(server)
    return contexts_released_once(server.log)


def wait_closed(server, n=1):
    server.log.wait_for("connection.closed", count=n)
    # the contexts are released when the connection's subtree has ended
    wait_until(lambda: len(server.log.events("actor.stopped", actor="ConnectionSupervisor")) >= n)


# -- interoperability ---------------------------------------------------------------------


def test_websockets_default_offer(server):
    with deflate_client(server) as c:
        assert c.response.headers["Sec-WebSocket-Extensions"] == \
            "permessage-deflate; client_max_window_bits=12"
        for i in range(30):
            msg = text(200, i)
            c.send(msg)
            assert c.recv() == msg
        c.send(b"\x00" * 100_000)
        assert c.recv() == b"\x00" * 100_000
        c.send("tiny")   # below the threshold: sent back uncompressed, still fine
        assert c.recv() == "tiny"
    wait_closed(server)
    [neg] = server.log.events("connection.upgraded")
    assert neg["client_max_window_bits"] == 12 and neg["connection_id"]
    assert (neg["deflate_window_bits"], neg["inflate_window_bits"]) == (12, 12)
    causes = contexts_released_once(server.log)
    assert sorted(causes.values()) == ["close", "close"]
    opened = server.log.events("compression.context.opened")
    assert {r["direction"] for r in opened} == {"deflate", "inflate"}
    assert all(r["window_bits"] == 12 and r["owner_pid"] for r in opened)


@pytest.mark.parametrize("params,expect", [
    (dict(server_no_context_takeover=True), "server_no_context_takeover"),
    (dict(client_no_context_takeover=True), "client_no_context_takeover"),
    (dict(server_max_window_bits=10), "server_max_window_bits=10"),
    (dict(server_max_window_bits=8), "server_max_window_bits=8"),
    (dict(client_max_window_bits=9), "client_max_window_bits=9"),
    (dict(client_max_window_bits=True), "client_max_window_bits=12"),
    (dict(server_no_context_takeover=True, client_no_context_takeover=True,
          server_max_window_bits=9, client_max_window_bits=10),
     "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; "
     "client_max_window_bits=10"),
])
def test_websockets_offers_each_parameter(server, params, expect):
    with deflate_client(server, **params) as c:
        assert c.response.headers["Sec-WebSocket-Extensions"] == "permessage-deflate; " + expect
        block = os.urandom(300).hex()   # matches 600 bytes back: beyond small windows
        for i in range(10):
            msg = (block * 20) + text(100, i)
            c.send(msg)
            assert c.recv() == msg
    wait_closed(server)
    contexts_released_once(server.log)


def test_client_window_8(server):
    """websockets refuses client_max_window_bits=8; a zlib-based client asked
    for 8 compresses with 9 (matches at most 250 bytes back): we inflate with 8."""
    c = RawClient("127.0.0.1", server.port,
                  headers={"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits=8"})
    assert c.response_headers["sec-websocket-extensions"] == "permessage-deflate; client_max_window_bits=8"
    comp = zlib.compressobj(6, zlib.DEFLATED, -9)
    ours = zlib.decompressobj(-15)   # our replies use context takeover: one stream
    block = os.urandom(200)
    for i in range(5):
        msg = block * 30 + bytes([i])
        c.send_frame(0x2, deflate_payload(msg, comp), rsv=4)
        f = c.recv_frame()
        out = f[3] if not f[1] else ours.decompress(f[3] + b"\x00\x00\xff\xff")
        assert out == msg
    [opened] = [r for r in server.log.wait_for("compression.context.opened", count=2)
                if r["direction"] == "inflate"]
    assert opened["window_bits"] == 8


def test_no_compression_option(make_server):
    from wscore.deflate import DeflateSettings
    server = make_server(compression=DeflateSettings(enabled=False))
    with deflate_client(server) as c:
        assert "Sec-WebSocket-Extensions" not in c.response.headers
        c.send("x" * 1000)
        assert c.recv() == "x" * 1000
    [upgraded] = server.log.events("connection.upgraded")
    assert upgraded["extensions"] == [] and "deflate_window_bits" not in upgraded


# -- protocol errors and limits --------------------------------------------------------------

PMD = {"Sec-WebSocket-Extensions": "permessage-deflate"}


def compressed(data, wbits=15):
    return deflate_payload(data, level=9, wbits=wbits)


def test_inflate_bomb_closes_1009_with_bounded_memory(server):
    bomb = compressed(bytes(64 << 20))          # 64 MiB of zeros in ~64 KiB
    c = RawClient("127.0.0.1", server.port, headers=PMD)
    c.send_frame(0x2, bomb, rsv=4)
    code = c.recv_close(timeout=10)
    assert code is not None and code[0] == 1009
    rec = server.log.wait_for("connection.closed")[0]
    assert rec["code"] == 1009
    peaks = []
    for pid in server.runtime.processes():
        try:
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        peaks += [int(line.split()[1]) << 10 for line in status.splitlines() if line.startswith("VmHWM")]
    assert max(peaks) < 100 << 20, f"a process peaked at {max(peaks) >> 20} MiB"
    wait_closed(server)
    contexts_released_once(server.log)


@pytest.mark.parametrize("name,frames", [
    ("compressed ping", [dict(opcode=0x9, payload=b"", rsv=4)]),
    ("compressed close", [dict(opcode=0x8, payload=b"\x03\xe8", rsv=4)]),
    ("RSV1 on a continuation", [dict(opcode=0x1, payload=compressed(b"ab"), rsv=4, fin=False),
                                dict(opcode=0x0, payload=b"", rsv=4)]),
    ("RSV2 with compression", [dict(opcode=0x1, payload=b"a", rsv=2)]),
])
def test_compression_protocol_errors_are_1002(server, name, frames):
    c = RawClient("127.0.0.1", server.port, headers=PMD)
    assert c.response_headers["sec-websocket-extensions"] == "permessage-deflate"
    for f in frames:
        c.send_frame(**f)
    got = c.recv_close()
    assert got is not None and got[0] == 1002, got


def test_invalid_deflate_data_is_1007(server):
    c = RawClient("127.0.0.1", server.port, headers=PMD)
    c.send_frame(0x1, b"\xff\xff\xff\xff\xff", rsv=4)
    got = c.recv_close()
    assert got is not None and got[0] == 1007


def test_a_ping_between_compressed_fragments(server):
    """wsproto's own extension breaks here (its PR #205); ours does not."""
    c = RawClient("127.0.0.1", server.port, headers=PMD)
    payload = compressed(b"fragmented and compressed " * 20)
    c.send_frame(0x1, payload[:10], rsv=4, fin=False)
    c.send_frame(0x9, b"mid")
    c.send_frame(0x0, payload[10:])
    pong = c.recv_frame()
    assert pong[2] == 0xA and pong[3] == b"mid"
    echo = c.recv_frame()
    assert echo[1] == 4  # compressed back
    assert zlib.decompressobj(-15).decompress(echo[3] + b"\x00\x00\xff\xff") == \
        b"fragmented and compressed " * 20


# -- every release path, exactly once ---------------------------------------------------------


def test_release_on_client_close_then_terminate_is_ignored_478(server):
    """Bandit #478: contexts released when the close frame arrives, then again
    when the connection terminates.  The second is a logged no-op."""
    with deflate_client(server) as c:
        c.send(text(100))
        c.recv()
    wait_closed(server)
    causes = contexts_released_once(server.log)
    assert set(causes.values()) == {"close"}
    ignored = server.log.events("compression.release.ignored")
    assert {r["context_id"] for r in ignored} == set(causes)
    assert all(r["why"] == "already released (close)" for r in ignored)


def test_release_on_server_initiated_close(make_server):
    server = make_server(app="apps:ControlApp")
    with deflate_client(server) as c:
        c.recv()
        c.send("close:4000")
        with pytest.raises(ConnectionClosed):
            c.recv()
    wait_closed(server)
    assert set(contexts_released_once(server.log).values()) == {"close"}


def test_release_on_tcp_drop(server):
    c = RawClient("127.0.0.1", server.port, headers=PMD)
    c.send_frame(0x1, compressed(b"hello " * 100), rsv=4)
    assert c.recv_frame() is not None
    c.close()
    wait_closed(server)
    assert server.log.events("connection.closed")[0]["code"] == 1006
    assert set(contexts_released_once(server.log).values()) == {"close"}


def test_release_on_app_crash(make_server):
    server = make_server(app="apps:CrashApp")
    with deflate_client(server) as c:
        c.send(text(100))
        c.recv()
        c.send("crash")
        with pytest.raises(ConnectionClosed) as info:
            c.recv()
        assert info.value.rcvd.code == 1011
    wait_closed(server)
    assert set(contexts_released_once(server.log).values()) == {"shutdown"}


def test_release_on_connection_actor_crash(make_server, inject):
    inject("connection.handle_in:raise:nth=4")   # the ConnectionActor itself fails
    server = make_server()
    with deflate_client(server) as c:
        c.send(text(100))
        c.recv()
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(5):
                c.send(text(100))
                c.recv()
        assert info.value.rcvd.code == 1011
    wait_closed(server)
    assert server.log.events("actor.crashed", actor="ConnectionActor")
    assert set(contexts_released_once(server.log).values()) == {"shutdown"}


def test_compression_actor_crash_is_invisible_to_the_client(make_server, inject):
    inject("compression.inflate:raise:nth=5,once")   # mid-stream: there is a window to rebuild
    server = make_server()
    with deflate_client(server) as c:   # context takeover both ways (default)
        sent = [text(300, i) for i in range(20)]
        for msg in sent:
            c.send(msg)
            assert c.recv() == msg
    wait_closed(server)
    crash = server.log.events("actor.crashed", actor="CompressionActor")
    assert len(crash) == 1 and crash[0]["error_type"] == "supervisors.faults.FaultInjected"
    causes = contexts_released_once(server.log)
    assert sorted(causes.values()) == ["close", "close", "error", "error"]
    opened = server.log.events("compression.context.opened")
    assert len(opened) == 4                                  # new contexts, new ids
    primed = [r for r in opened if r["direction"] == "inflate" and r["primed_bytes"]]
    assert primed, "the new inflate context was rebuilt from the last window"
    assert server.log.events("compression.recovered")
    assert server.log.events("supervisor.child.restarted", child_id="compression")
    assert not server.log.events("connection.closed", code=1011)


# A CompressionActor or ConnectionActor killed in-process (no terminate): tests/test_workers.py
# (test_a_killed_compression_actor_is_invisible_to_the_client, with and without context
# takeover; test_killing_an_in_process_actor_releases_every_context_once).


def test_killed_during_inflate(make_server, inject):
    inject("compression.inflate:exit:once")   # the process dies in the middle of a call
    server = make_server()
    causes = echo_then_close(server, 8)
    assert sorted(causes.values()) == ["close", "close", "owner_died", "owner_died"]
    assert server.log.events("fault.injected", point="compression.inflate", action="exit")


def test_killed_while_opening_its_contexts(make_server, inject):
    """Opening is write-ahead: the contexts are on record before they exist,
    so an actor dying while it opens them leaves them released (owner_died)."""
    inject("compression.open:exit:once")
    server = make_server()
    causes = echo_then_close(server, 4)
    assert sorted(causes.values()) == ["close", "close", "owner_died", "owner_died"]
    assert server.log.events("fault.injected", point="compression.open")
    opened = server.log.events("compression.context.opened")
    # the first actor's contexts: on record before it died opening them
    assert {r["context_id"] for r in opened[:2]} == {k for k, v in causes.items() if v == "owner_died"}


def test_killed_during_release(make_server, inject):
    inject("compression.release:exit:once")
    server = make_server()
    with deflate_client(server) as c:
        c.send(text(100))
        c.recv()
    wait_closed(server)
    causes = contexts_released_once(server.log)
    assert set(causes.values()) == {"owner_died"}


def test_intensity_exceeded_on_the_connection_supervisor(make_server, inject):
    inject("compression.inflate:raise:always")  # every CompressionActor crashes at once
    server = make_server()
    with deflate_client(server) as c:
        with pytest.raises(ConnectionClosed) as info:
            c.send(text(100))
            c.recv(timeout=20)
        assert info.value.rcvd.code in (1001, 1011)
    wait_closed(server)
    [sd] = server.log.events("supervisor.shutdown")
    assert sd["reason"] == "reached_max_restart_intensity" and sd["supervisor"].startswith("connection-")
    causes = contexts_released_once(server.log)
    assert len(causes) == 8 and set(causes.values()) == {"error"}   # 1 start + 3 restarts, 2 each
    # the server keeps serving
    inject()
    with connect(server.url, compression=None) as c2:
        c2.send("still serving")
        assert c2.recv() == "still serving"


def test_shutdown_while_the_app_pushes_462(make_server):
    server = make_server(app="apps:PushApp")
    with deflate_client(server) as c:
        c.send("start")
        for _ in range(20):
            assert c.recv().startswith("pushed ")
        pgid = server.runtime.pgid
        server.stop()
        got = 0
        with pytest.raises(ConnectionClosed) as info:
            while True:
                c.recv(timeout=10)
                got += 1
        assert info.value.rcvd.code == 1001
    assert not server.log.events("actor.crashed")
    causes = contexts_released_once(server.log)
    assert set(causes.values()) <= {"close", "shutdown"} and len(causes) == 2
    from supervisors import _platform
    assert _platform.live_group_members(pgid) == []
