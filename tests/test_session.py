"""wscore.session without sockets or actors: a fake host plays the I/O loop and
the CompressionActor (answering later, as messages do)."""

from __future__ import annotations

import base64
import os

from supervisors import NORMAL, SHUTDOWN, Error
from tests.test_protocol import ClientDeflate, client_frame
from wscore.app import EchoApp
from wscore.config import ServerConfig
from wscore.deflate import Deflater, Inflater
from wscore.session import Session

TEXT, CLOSE = 0x1, 0x8


class Log:
    def __init__(self):
        self.records = []

    def _rec(self, level):
        return lambda event, **kw: self.records.append((level, event, kw))

    def __getattr__(self, level):
        return self._rec(level)


class Host:
    """Collects effects; compression answers are queued and given on flush."""

    def __init__(self):
        self.log = Log()
        self.written = bytearray()
        self.closed = False
        self.timers = []
        self.stopped = None
        self.requests = []          # ("inflate", chunk, final) | ("deflate", seq, data)
        self.compression = None
        self.released = []
        self.session: Session | None = None
        self.opened = []

    def write(self, data):
        if self.closed:
            return False
        self.written += data
        return True

    def close_transport(self):
        self.closed = True

    def call_later(self, delay, what):
        self.timers.append((delay, what))

    def start_compression(self, params):
        self.params = params
        self.alive = True
        self.session.compression_started()

    def open_compression(self, zdict):
        p = self.params
        self.opened.append(zdict)
        self.compression = (Deflater("zd", p.deflate_window_bits, 6, 8, p.server_no_context_takeover),
                            Inflater("zi", p.inflate_window_bits, p.client_no_context_takeover,
                                     1 << 20, 1000, zdict=zdict))

    def kill_compression(self):
        """The CompressionActor dies: what it was asked and did not answer is lost."""
        self.alive = False
        self.compression = None
        self.requests.clear()
        self.session.compression_lost()

    def restart_compression(self):
        self.alive = True
        self.session.compression_started()

    alive = False

    def inflate(self, chunk, final):
        if self.alive:
            self.requests.append(("inflate", chunk, final))

    def deflate(self, seq, data):
        if self.alive:
            self.requests.append(("deflate", seq, data))

    def answer(self):
        """Play the CompressionActor: answer every request, in order."""
        while self.requests:
            kind, a, b = self.requests.pop(0)
            if kind == "inflate":
                self.session.inflated(self.compression[1].inflate(a, b))
            else:
                self.session.deflated(a, self.compression[0].compress(b))

    def release_compression(self, cause):
        self.released.append(cause)

    def stop(self, reason):
        self.stopped = reason


def upgrade(deflate=False):
    key = base64.b64encode(os.urandom(16))
    req = (b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n")
    if deflate:
        req += b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    return req + b"\r\n"


def make(deflate=False, **cfg):
    host = Host()
    s = Session(ServerConfig(ping_interval=None, **cfg), "c1", ("127.0.0.1", 1), EchoApp, host)
    host.session = s
    s.data_received(upgrade(deflate))
    assert host.written.startswith(b"HTTP/1.1 101")
    host.written.clear()
    return s, host


def frames(data: bytes):
    """Parse unmasked server frames: [(opcode, rsv1, payload)]."""
    out, i = [], 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        out.append((b0 & 0x0F, bool(b0 & 0x40), bytes(data[i:i + n])))
        i += n
    return out


def test_echo_and_clean_close():
    s, host = make()
    s.data_received(client_frame(TEXT, b"hello"))
    s.data_received(client_frame(CLOSE, (1000).to_bytes(2, "big")))
    assert frames(host.written) == [(TEXT, False, b"hello"), (CLOSE, False, (1000).to_bytes(2, "big"))]
    assert host.closed and host.stopped == NORMAL
    [closed] = [r for r in host.log.records if r[1] == "connection.closed"]
    assert closed[2]["code"] == 1000 and closed[2]["clean"]


def test_compressed_echo_waits_for_answers_and_keeps_order():
    client = ClientDeflate()
    s, host = make(deflate=True)
    big = "x" * 500
    s.data_received(client_frame(TEXT, client.compress(big.encode()), rsv1=True) + client_frame(TEXT, b"hi"))
    assert host.written == b"" and [r[0] for r in host.requests] == ["inflate"]   # nothing until inflated
    host.answer()          # inflated -> echo asks a deflate; "hi" parsed, echoed behind it
    got = frames(host.written)
    assert [(f[0], f[1]) for f in got] == [(TEXT, True), (TEXT, False)]
    assert client.decompress(got[0][2]) == big.encode() and got[1][2] == b"hi"
    host.written.clear()
    # the app closes while an echo is being deflated: the close frame waits behind it
    s.data_received(client_frame(TEXT, client.compress(big.encode()), rsv1=True))
    kind, chunk, final = host.requests.pop(0)
    s.inflated(host.compression[1].inflate(chunk, final))
    assert [r[0] for r in host.requests] == ["deflate"]
    s.conn.close(1000, "bye")
    s.info("tick")
    assert host.written == b""
    host.answer()
    got = frames(host.written)
    assert [f[0] for f in got] == [TEXT, CLOSE] and client.decompress(got[0][2]) == big.encode()
    s.data_received(client_frame(CLOSE, (1000).to_bytes(2, "big")))
    assert host.closed and host.released == ["close"] and host.stopped == NORMAL


def test_shutdown_sends_1001_then_stops_on_the_clients_close():
    s, host = make()
    s.shutdown()
    assert frames(host.written) == [(CLOSE, False, (1001).to_bytes(2, "big") + b"server shutting down")]
    assert not host.closed and (10.0, "shutdown") in host.timers
    s.data_received(client_frame(CLOSE, (1001).to_bytes(2, "big")))
    assert host.closed and host.stopped == SHUTDOWN


def test_bad_frame_gets_its_close_code_and_eof_is_1006():
    s, host = make()
    s.data_received(client_frame(TEXT, b"\xff"))
    assert frames(host.written)[-1][2][:2] == (1007).to_bytes(2, "big")
    assert host.closed
    s2, host2 = make()
    s2.data_received(b"")
    assert host2.closed and host2.written == b""
    [closed] = [r for r in host2.log.records if r[1] == "connection.closed"]
    assert closed[2]["code"] == 1006


def test_a_crash_gets_1011():
    s, host = make()
    s.final_close(Error("ValueError", "boom", ""))
    assert frames(host.written) == [(CLOSE, False, (1011).to_bytes(2, "big") + b"internal error")]
    assert host.closed


def test_handshake_timeout_is_408_without_a_response():
    host = Host()
    s = Session(ServerConfig(), "c2", ("127.0.0.1", 1), EchoApp, host)
    host.session = s
    assert (10.0, "handshake") in host.timers
    s.timer("handshake")
    assert host.closed and host.stopped == NORMAL
    [rej] = [r for r in host.log.records if r[1] == "connection.rejected"]
    assert rej[2]["status"] == 408


# -- the CompressionActor dies and a successor takes over ------------------------------------


def _echoed(host, client):
    got = frames(host.written)
    host.written.clear()
    return [client.decompress(p) if rsv1 else p for op, rsv1, p in got if op in (TEXT, 0x0)]


def test_a_restarted_compression_actor_is_primed_and_the_message_in_progress_replayed():
    client = ClientDeflate()
    s, host = make(deflate=True)
    first = b"the quick brown fox jumps over the lazy dog " * 10
    s.data_received(client_frame(TEXT, client.compress(first), rsv1=True))
    host.answer()
    assert _echoed(host, client) == [first]
    # the next message refers back into the first one's window, and comes in two fragments
    second = first[:200] + b" and then some more " * 5
    packed = client.compress(second)
    half = len(packed) // 2
    s.data_received(client_frame(TEXT, packed[:half], fin=False, rsv1=True))
    host.answer()                     # the first fragment inflated and delivered
    s.data_received(client_frame(0x0, packed[half:]))
    assert [r[0] for r in host.requests] == ["inflate"]
    host.kill_compression()           # dies with the last fragment unanswered
    assert host.written == b""
    host.restart_compression()
    assert host.opened[-1] == first   # primed with the window before the message in progress
    assert [r[0] for r in host.requests] == ["inflate", "inflate"]   # both fragments replayed
    host.answer()
    assert _echoed(host, client) == [second]
    [rec] = [r for r in host.log.records if r[1] == "compression.recovered"]
    assert rec[2]["replayed_chunks"] == 2 and rec[2]["window_bytes"] == len(first)
    assert s.recoveries == 1 and not s.done


def test_pending_deflates_are_sent_again_to_the_successor():
    client = ClientDeflate()
    s, host = make(deflate=True)
    msgs = [b"message number %d " % i * 40 for i in range(3)]
    s.data_received(client_frame(TEXT, client.compress(msgs[0]), rsv1=True))
    host.answer()
    assert _echoed(host, client) == [msgs[0]]
    s.data_received(client_frame(TEXT, client.compress(msgs[1]), rsv1=True))
    kind, chunk, final = host.requests.pop(0)
    s.inflated(host.compression[1].inflate(chunk, final))     # the echo now waits for its deflate
    assert [r[0] for r in host.requests] == ["deflate"]
    host.kill_compression()
    host.restart_compression()
    assert [r[0] for r in host.requests] == ["deflate"]       # sent again, to a fresh context
    host.answer()
    s.data_received(client_frame(TEXT, client.compress(msgs[2]), rsv1=True))
    host.answer()
    assert _echoed(host, client) == msgs[1:]                  # the client's inflater takes both


def test_no_successor_in_time_is_1011():
    client = ClientDeflate()
    s, host = make(deflate=True)
    s.data_received(client_frame(TEXT, client.compress(b"x" * 300), rsv1=True))
    host.kill_compression()
    assert (5.0, "compression") in host.timers
    s.timer("compression", now=s.compression_lost_at + 1.0)   # early: keeps waiting
    assert host.written == b""
    s.timer("compression", now=s.compression_lost_at + 5.0)
    assert frames(host.written)[-1][:1] == (CLOSE,)
    assert frames(host.written)[-1][2][:2] == (1011).to_bytes(2, "big")


def test_the_compression_actor_starts_with_the_first_compressed_message():
    """An idle connection with permessage-deflate agreed holds no zlib context."""
    client = ClientDeflate()
    s, host = make(deflate=True)
    assert host.opened == [] and not host.alive           # agreed, not started
    s.data_received(client_frame(TEXT, b"short"))          # uncompressed: still none
    assert frames(host.written) == [(TEXT, False, b"short")] and host.opened == []
    host.written.clear()
    s.data_received(client_frame(TEXT, client.compress(b"z" * 300), rsv1=True))
    assert host.opened == [b""]                            # started and opened by the first one
    host.answer()
    assert _echoed(host, client) == [b"z" * 300]
    quiet, qhost = make(deflate=True)
    quiet.data_received(client_frame(CLOSE, (1000).to_bytes(2, "big")))
    assert qhost.closed and qhost.opened == [] and qhost.stopped == NORMAL
