"""The WebSocket server over real sockets: websockets as the client, and a raw
client for frames no library sends."""

from __future__ import annotations

import os
import socket
import time

import pytest
from logutil import wait_until
from rawws import RawClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from supervisors import _platform


def ws(server, path="/", **kw):
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", 10)
    return connect(server.url + path, **kw)


def raw(server, **kw):
    return RawClient("127.0.0.1", server.port, **kw)


# -- echo ----------------------------------------------------------------------------------


def test_echo_text_binary_and_large(server):
    with ws(server, max_size=None) as c:
        c.send("hello")
        assert c.recv() == "hello"
        c.send(b"\x00\x01\xff")
        assert c.recv() == b"\x00\x01\xff"
        big = os.urandom(900_000)
        c.send(big)
        assert c.recv() == big
        text = "é" * 300_000
        c.send(text)
        assert c.recv() == text
        c.send(["frag", "mented", " ✓"])   # a fragmented message
        assert c.recv() == "fragmented ✓"
    closed = server.log.wait_for("connection.closed")[0]
    assert (closed["code"], closed["initiator"], closed["clean"]) == (1000, "client", True)
    [up] = server.log.events("connection.upgraded")
    assert up["path"] == "/" and up["connection_id"] == closed["connection_id"]


def test_many_messages_in_order(server):
    with ws(server) as c:
        for i in range(300):
            c.send(f"m{i}")
        assert [c.recv() for _ in range(300)] == [f"m{i}" for i in range(300)]


def test_ping_from_client_gets_pong(server):
    with ws(server) as c:
        c.ping(b"abc").wait(5)


# -- close codes from crafted frames ------------------------------------------------------

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def _expect_close(server, client, code):
    got = client.recv_close()
    assert got is not None and got[0] == code, got
    assert client.wait_eof(5), "the server should close TCP after failing the connection"
    rec = server.log.wait_for("connection.closed", code=code)[0]
    assert rec["initiator"] == "server" and rec["clean"] is False
    return got


@pytest.mark.parametrize("name,frames,code", [
    ("unmasked frame", [dict(opcode=TEXT, payload=b"hi", mask=False)], 1002),
    ("RSV1 without extension", [dict(opcode=TEXT, payload=b"hi", rsv=4)], 1002),
    ("RSV2", [dict(opcode=TEXT, payload=b"hi", rsv=2)], 1002),
    ("RSV3", [dict(opcode=BINARY, payload=b"hi", rsv=1)], 1002),
    ("reserved opcode 3", [dict(opcode=0x3, payload=b"")], 1002),
    ("reserved control opcode 0xB", [dict(opcode=0xB, payload=b"")], 1002),
    ("fragmented ping", [dict(opcode=PING, payload=b"x", fin=False)], 1002),
    ("ping over 125 bytes", [dict(opcode=PING, payload=b"x" * 126)], 1002),
    ("continuation without a message", [dict(opcode=CONT, payload=b"x")], 1002),
    ("new message inside a fragmented one", [dict(opcode=TEXT, payload=b"a", fin=False),
                                             dict(opcode=TEXT, payload=b"b")], 1002),
    ("invalid UTF-8", [dict(opcode=TEXT, payload=b"\xce\xba\xff")], 1007),
    ("invalid UTF-8 across fragments", [dict(opcode=TEXT, payload=b"ok\xce", fin=False),
                                        dict(opcode=CONT, payload=b"\x20")], 1007),
    ("close with 1-byte payload", [dict(opcode=CLOSE, payload=b"\x03")], 1002),
    ("close with code 999", [dict(opcode=CLOSE, payload=b"\x03\xe7")], 1002),
    ("close with reserved code 1005", [dict(opcode=CLOSE, payload=b"\x03\xed")], 1002),
    ("close with unassigned code 2000", [dict(opcode=CLOSE, payload=b"\x07\xd0")], 1002),
    ("close reason not UTF-8", [dict(opcode=CLOSE, payload=b"\x03\xe8\xff\xfe")], 1007),
])
def test_protocol_errors_get_the_right_close_code(server, name, frames, code):
    c = raw(server)
    for f in frames:
        c.send_frame(**f)
    _expect_close(server, c, code)


def test_message_over_max_message_size_is_1009(make_server):
    server = make_server(max_message_size=10_000)
    c = raw(server)
    c.send_frame(TEXT, b"a" * 6000, fin=False)
    c.send_frame(CONT, b"a" * 6000)
    _expect_close(server, c, 1009)


def test_frame_over_max_frame_size_is_1009_before_the_payload(make_server):
    server = make_server(max_frame_size=4096, max_message_size=1 << 30)
    c = raw(server)
    # Announce a 64 MiB frame and send only its first bytes: the server must
    # refuse on the header, not buffer 64 MiB.
    c.send_frame(BINARY, b"x" * 100, length=64 << 20)
    _expect_close(server, c, 1009)


def test_huge_message_is_refused_with_bounded_memory(make_server):
    server = make_server(max_message_size=1 << 20)
    c = raw(server)
    chunk = b"z" * 65536
    c.send_frame(BINARY, b"", fin=False)
    sent = 0
    try:
        for _ in range(200):  # up to 12.5 MiB; the server must stop us at 1 MiB
            c.send_frame(CONT, chunk, fin=False)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = c.recv_close()
    assert got is not None and got[0] == 1009
    rss = _rss_of_connection_actors(server)
    # Every process of the tree inherits the test process's memory (fork), so
    # the peak that matters is the growth over the smallest of them: the
    # connection that received 12.5 MiB must not have kept it.
    assert rss and max(rss) - min(rss) < 10 << 20, rss


def _rss_of_connection_actors(server):
    out = []
    for pid in server.runtime.processes():
        try:
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                out.append(int(line.split()[1]) * 1024)
    return out


def test_client_close_is_echoed(server):
    c = raw(server)
    c.send_frame(CLOSE, b"\x0b\xb8bye")   # 3000 "bye"
    assert c.recv_close() == (3000, "")
    assert c.wait_eof()
    rec = server.log.wait_for("connection.closed")[0]
    assert (rec["code"], rec["reason"], rec["initiator"], rec["clean"]) == (3000, "bye", "client", True)


def test_a_message_arriving_with_the_close_frame_is_delivered(make_server):
    """Both frames in one TCP segment: the message was received while open."""
    server = make_server(app="apps:RecordApp")
    c = raw(server)
    import struct as _s
    text_frame = bytes([0x81, 0x80 | 10]) + b"\0\0\0\0" + b"last words"
    close_frame = bytes([0x88, 0x80 | 2]) + b"\0\0\0\0" + _s.pack("!H", 1000)
    c.send_raw(text_frame + close_frame)
    assert c.recv_close() == (1000, "")
    [rec] = server.log.wait_for("app.received")
    assert rec["data"] == "last words"


def test_empty_close_is_answered_with_1000(server):
    c = raw(server)
    c.send_frame(CLOSE, b"")
    assert c.recv_close() == (1000, "")
    rec = server.log.wait_for("connection.closed")[0]
    assert rec["code"] == 1005 and rec["clean"] is True


def test_tcp_drop_is_recorded_as_1006(server):
    c = raw(server)
    c.send_frame(TEXT, b"hi")
    assert c.recv_frame()[3] == b"hi"
    c.close()
    rec = server.log.wait_for("connection.closed")[0]
    assert (rec["code"], rec["initiator"], rec["clean"]) == (1006, "client", False)


def test_server_initiated_close(make_server):
    server = make_server(app="apps:ControlApp")
    with ws(server) as c:
        c.recv()  # hello
        c.send("close:4001")
        with pytest.raises(ConnectionClosed) as info:
            c.recv()
        assert info.value.rcvd.code == 4001
    rec = server.log.wait_for("connection.closed")[0]
    assert (rec["code"], rec["initiator"], rec["clean"]) == (4001, "server", True)


# -- handshake ---------------------------------------------------------------------------------


@pytest.mark.parametrize("headers,status,header_check", [
    ({"Upgrade": None}, 400, None),
    ({"Upgrade": "h2c"}, 400, None),
    ({"Connection": "keep-alive"}, 400, None),
    ({"Sec-WebSocket-Key": "short"}, 400, None),
    ({"Sec-WebSocket-Key": None}, 400, None),
    ({"Sec-WebSocket-Version": "8"}, 426, ("sec-websocket-version", "13")),
])
def test_bad_handshakes_get_http_errors(server, headers, status, header_check):
    c = raw(server, handshake=False)
    assert c.handshake("/", headers) == status
    assert c.body  # a reason is given
    if header_check:
        assert c.response_headers[header_check[0]] == header_check[1]
    assert c.wait_eof()
    rec = server.log.wait_for("connection.rejected")[0]
    assert rec["status"] == status and rec["reason"] and rec["connection_id"]


def test_post_and_garbage_are_400(server):
    c = raw(server, handshake=False)
    assert c.handshake(raw=b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") == 400
    c = raw(server, handshake=False)
    assert c.handshake(raw=b"NOT HTTP AT ALL\r\n\r\n") == 400


def test_origin_allow_list(make_server):
    server = make_server(origins=("https://good.example",))
    c = raw(server, handshake=False)
    assert c.handshake("/", {"Origin": "https://evil.example"}) == 403
    with ws(server, origin="https://good.example") as conn:
        conn.send("x")
        assert conn.recv() == "x"
    with pytest.raises(InvalidStatus) as info:
        ws(server)  # no Origin at all
    assert info.value.response.status_code == 403


def test_max_connections_gets_503(make_server):
    # one worker: with K workers each holds its share (SO_REUSEPORT picks the worker)
    server = make_server(max_connections=2, workers=1)
    with ws(server) as a, ws(server) as b:
        with pytest.raises(InvalidStatus) as info:
            ws(server)
        assert info.value.response.status_code == 503
        a.send("still")
        assert a.recv() == "still"
        b.send("fine")
        assert b.recv() == "fine"
    rec = server.log.wait_for("connection.rejected", status=503)[0]
    assert rec["connection_id"]
    # capacity comes back when connections end
    wait_until(lambda: len(server.log.events("connection.closed")) == 2)
    with ws(server) as c:
        c.send("again")
        assert c.recv() == "again"


def test_subprotocol_negotiation(make_server):
    server = make_server(app="apps:ControlApp", subprotocols=("chat.v2", "chat.v1"))
    with ws(server, subprotocols=["chat.v1", "chat.v2"]) as c:
        assert c.subprotocol == "chat.v2"   # the server's preference wins
        assert c.recv().endswith(" / chat.v2")
    with ws(server, subprotocols=["other"]) as c:
        assert c.subprotocol is None
    [up1, up2] = server.log.wait_for("connection.upgraded", count=2)
    assert up1["subprotocol"] == "chat.v2" and up2["subprotocol"] is None


def test_app_selects_subprotocol(make_server):
    server = make_server(app="apps:PickySubprotocolApp")
    with ws(server, subprotocols=["v1.wsup", "v2.wsup"]) as c:
        assert c.subprotocol == "v2.wsup"


# -- the application ---------------------------------------------------------------------------


def test_app_crash_closes_1011_and_disturbs_nothing_else(make_server):
    server = make_server(app="apps:CrashApp")
    with ws(server) as other, ws(server) as victim:
        victim.send("crash")
        with pytest.raises(ConnectionClosed) as info:
            victim.recv()
        assert info.value.rcvd.code == 1011
        other.send("still here")
        assert other.recv() == "still here"
    crash = server.log.wait_for("actor.crashed")[0]
    assert crash["actor"] == "ConnectionActor" and crash["error_type"] == "RuntimeError"
    assert crash["connection_id"]
    closed = server.log.wait_for("connection.closed", code=1011)[0]
    assert closed["connection_id"] == crash["connection_id"] and closed["initiator"] == "server"
    assert len(server.log.events("connection.closed")) >= 1


def test_handle_info_pushes_from_another_actor(make_server):
    """Deliver(id, message) to conn.address.worker, from the server's main process."""
    import pickle

    from wsup.app import Deliver
    server = make_server(app="apps:ControlApp")
    with ws(server, "/room") as c:
        hello = c.recv()
        connection_id = hello.split()[1]
        c.send("address")
        address = pickle.loads(c.recv())
        assert address.connection_id == connection_id
        server.runtime.tell(address.worker, Deliver(connection_id, "news"))
        assert c.recv() == "pushed: news"


# -- timeouts and keepalive ----------------------------------------------------------------------


def test_idle_timeout_closes_1001(make_server):
    server = make_server(idle_timeout=0.5, ping_interval=None)
    with ws(server) as c:
        t = time.monotonic()
        with pytest.raises(ConnectionClosed) as info:
            c.recv(timeout=5)
        assert info.value.rcvd.code == 1001 and "idle" in info.value.rcvd.reason
        assert 0.4 < time.monotonic() - t < 3
    rec = server.log.wait_for("connection.closed")[0]
    assert rec["code"] == 1001 and rec["initiator"] == "server"


def test_keepalive_pings_and_drops_a_silent_peer(make_server):
    server = make_server(ping_interval=0.3, ping_timeout=0.5)
    c = raw(server)
    f = c.recv_frame(timeout=3)
    assert f is not None and f[2] == PING
    # never answer: the server gives up after ping_timeout
    assert c.wait_eof(5)
    rec = server.log.wait_for("connection.closed")[0]
    assert rec["code"] == 1006 and "keepalive" in rec["reason"]


def test_keepalive_keeps_a_live_peer(make_server):
    server = make_server(ping_interval=0.2, ping_timeout=0.5)
    with ws(server) as c:   # websockets answers pings
        time.sleep(1.5)     # several ping intervals must pass
        c.send("alive")
        assert c.recv() == "alive"


def test_close_handshake_timeout(make_server):
    server = make_server(app="apps:ControlApp", close_timeout=0.5)
    c = raw(server)
    c.recv_frame()  # hello
    c.send_frame(TEXT, b"close:1000")
    assert c.recv_close() == (1000, "asked to")
    t = time.monotonic()
    assert c.wait_eof(5)       # we never answered; the server closes TCP anyway
    assert 0.3 < time.monotonic() - t < 3
    rec = server.log.wait_for("connection.closed")[0]
    assert rec["code"] == 1000 and rec["clean"] is False


def test_handshake_timeout(make_server):
    server = make_server(handshake_timeout=0.5)
    c = raw(server, handshake=False)
    c.send_raw(b"GET / HTTP/1.1\r\n")
    assert c.wait_eof(5)
    rec = server.log.wait_for("connection.rejected")[0]
    assert rec["status"] == 408


# -- sockets and processes -----------------------------------------------------------------------


def _server_side_inode(port, client_sock):
    """The inode of the server's end of an established connection."""
    cport = client_sock.getsockname()[1]
    want_local = f"0100007F:{port:04X}"
    want_remote = f"0100007F:{cport:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[1] == want_local and parts[2] == want_remote:
                return int(parts[9])
    return None


def _holders(inodes, pids):
    """inode -> [pids holding it open]"""
    out = {i: [] for i in inodes}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = int(link[8:-1])
                if ino in out:
                    out[ino].append(pid)
    return out


def test_each_client_socket_lives_in_one_process_and_closes_promptly(make_server):
    server = make_server(app="apps:ControlApp")
    clients = [raw(server) for _ in range(51)]
    for c in clients:
        assert c.recv_frame() is not None  # hello: the connection is up
    inodes = {id(c): _server_side_inode(server.port, c.sock) for c in clients}
    assert all(inodes.values())
    pids = server.runtime.processes()
    holders = _holders(set(inodes.values()), pids)
    for ino, hold in holders.items():
        assert len(hold) == 1, f"socket {ino} is open in {hold}"
    workers = {ref.pid for cid, ref, _t, _m in server.runtime.which_children(server.child("workers"))}
    assert {h[0] for h in holders.values()} <= workers   # each in the worker that serves it
    # the server closes one connection: its client sees EOF promptly even
    # though 50 others are open (no other process keeps the socket alive)
    victim = clients[25]
    victim.send_frame(TEXT, b"close:1000")
    assert victim.recv_close() == (1000, "asked to")
    victim.send_frame(CLOSE, b"\x03\xe8")
    t = time.monotonic()
    assert victim.wait_eof(2)
    assert time.monotonic() - t < 1.0
    for c in clients:
        c.close()


def _listening_sockets(pids):
    """[(address, port)] of TCP sockets in LISTEN held by these processes."""
    inodes = {}
    for table, fam in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A":  # LISTEN
                    addr, port = parts[1].split(":")
                    if fam == 4:
                        ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1])
                    else:
                        raw_ = bytes.fromhex(addr)
                        ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw_[i:i + 4][::-1] for i in range(0, 16, 4)))
                    inodes[int(parts[9])] = (ip, int(port, 16))
    found = set()
    for ino, hold in _holders(set(inodes), pids).items():
        if hold:
            found.add(inodes[ino])
    return found


def test_no_process_listens_beyond_loopback_except_the_websocket_port(make_server):
    server = make_server(host="0.0.0.0")
    with ws(server) as c:   # a connection subtree exists too
        c.send("x")
        c.recv()
        listening = _listening_sockets(server.runtime.processes())
    assert ("0.0.0.0", server.port) in listening
    others = [(ip, port) for ip, port in listening if (ip, port) != ("0.0.0.0", server.port)]
    assert others, "Thespian's own listeners should have been found"
    assert all(ip == "127.0.0.1" for ip, _ in others), others


def test_two_servers_side_by_side(make_server):
    a = make_server()
    b = make_server()
    assert a.runtime.admin_port != b.runtime.admin_port
    assert not set(a.runtime.processes()) & set(b.runtime.processes())
    with ws(a) as ca, ws(b) as cb:
        ca.send("a")
        cb.send("b")
        assert (ca.recv(), cb.recv()) == ("a", "b")
    pgid = a.runtime.pgid
    assert a.stop() == 0
    assert _platform.live_group_members(pgid) == []
    with ws(b) as cb:
        cb.send("b still")
        assert cb.recv() == "b still"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # websockets: connect() outside a with
def test_max_connections_is_shared_out_over_the_workers(make_server):
    """Each worker holds its share (3 = 2 + 1); the kernel picks the worker, so
    a full worker refuses (503) while the other may have room: never more than
    --max-connections in all."""
    server = make_server(max_connections=3, workers=2)
    shares = sorted(r["max_connections"] for r in server.log.events("worker.listening"))
    assert shares == [1, 2]
    admitted, refused = [], 0
    for _ in range(12):
        try:
            c = ws(server)
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            refused += 1
        else:
            admitted.append(c)
    assert 1 <= len(admitted) <= 3 and refused == 12 - len(admitted)
    for c in admitted:
        c.send("x")
        assert c.recv() == "x"
        c.close()
