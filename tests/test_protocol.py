"""The sans-I/O protocol (wscore.protocol), without sockets: framing, limits, close
codes, and compression both in-line and asynchronous (the contexts held by
another actor, answers coming later, order kept)."""

from __future__ import annotations

import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wscore.deflate import CompressionError, Deflater, Inflater
from wscore.protocol import (CLOSED, BinaryMessage, CloseReceived, InflateNeeded, Ping,
                           ServerProtocol, TextMessage)

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked frame, as a client sends it."""
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class ClientDeflate:
    """The client's side of permessage-deflate (context takeover)."""

    def __init__(self) -> None:
        self.c = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.d = zlib.decompressobj(-15)

    def compress(self, data: bytes) -> bytes:
        out = self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4]

    def decompress(self, data: bytes) -> bytes:
        return self.d.decompress(data + b"\x00\x00\xff\xff")


class InlineCompression:
    """In-line contexts (what the protocol calls synchronously)."""
    rsv1_allowed = True

    def __init__(self, max_message_size=1 << 20) -> None:
        self.inflater = Inflater("zi", 15, False, max_message_size, 1000)
        self.deflater = Deflater("zd", 15, 6, 8, False)

    def decompress(self, chunk, final):
        return self.inflater.inflate(chunk, final)

    def message_done(self):
        pass

    def compress(self, data):
        return self.deflater.compress(data)


class RemoteCompression:
    """Contexts held elsewhere: the protocol only asks."""
    rsv1_allowed = True
    asynchronous = True

    def message_done(self):
        pass


def drive_async(proto: ServerProtocol, inflater: Inflater) -> list:
    """Play the other actor: answer every InflateNeeded in order."""
    out = []
    while True:
        events = proto.events_received()
        if not events:
            return out
        for ev in events:
            if isinstance(ev, InflateNeeded):
                try:
                    proto.inflated(inflater.inflate(ev.chunk, ev.final))
                except CompressionError as exc:
                    proto.inflate_failed(exc.code, exc.reason)
            else:
                out.append(ev)


def test_text_binary_ping_close():
    p = ServerProtocol()
    p.receive_data(client_frame(TEXT, b"hi") + client_frame(BINARY, b"\x00\x01")
                   + client_frame(PING, b"p") + client_frame(CLOSE, (1000).to_bytes(2, "big")))
    events = p.events_received()
    assert events[:3] == [TextMessage("hi"), BinaryMessage(b"\x00\x01"), Ping(b"p")]
    assert isinstance(events[3], CloseReceived) and events[3].code == 1000
    assert p.state == CLOSED and p.close_clean
    out = p.data_to_send()
    assert out.startswith(b"\x8a\x01p") and out.endswith(b"\x88\x02\x03\xe8")   # pong, close echo


@pytest.mark.parametrize("frames, code", [
    ([client_frame(TEXT, b"\xff")], 1007),
    ([client_frame(0x3, b"")], 1002),
    ([client_frame(PING, b"x" * 126)], 1002),
    ([client_frame(TEXT, b"a", rsv1=True)], 1002),          # RSV1 without compression
    ([client_frame(0x0, b"a")], 1002),                       # continuation without a message
])
def test_bad_input_gets_the_right_close_code(frames, code):
    p = ServerProtocol()
    for f in frames:
        p.receive_data(f)
    assert p.state == CLOSED and p.close_code == code and p.failed


def test_message_size_limit_is_checked_as_bytes_arrive():
    p = ServerProtocol(max_message_size=1000)
    p.receive_data(client_frame(BINARY, b"x" * 600, fin=False))
    assert p.state != CLOSED
    p.receive_data(client_frame(0x0, b"x" * 600))
    assert p.close_code == 1009


@pytest.mark.parametrize("mode", ["inline", "async"])
def test_compressed_messages_across_fragments_and_context_takeover(mode):
    client = ClientDeflate()
    if mode == "inline":
        comp = InlineCompression()
        p = ServerProtocol(compression=comp)
        inflater = None
    else:
        p = ServerProtocol(compression=RemoteCompression())
        inflater = Inflater("zi", 15, False, 1 << 20, 1000)
    msgs = [b"hello hello hello", b"hello again, hello", bytes(range(256)) * 20]
    wire = b""
    for m in msgs[:2]:
        wire += client_frame(TEXT, client.compress(m), rsv1=True)
    z = client.compress(msgs[2])
    wire += client_frame(BINARY, z[:100], fin=False, rsv1=True) + client_frame(PING, b"mid")
    wire += client_frame(0x0, z[100:])
    p.receive_data(wire)
    events = p.events_received() if inflater is None else drive_async(p, inflater)
    assert events == [TextMessage(msgs[0].decode()), TextMessage(msgs[1].decode()), Ping(b"mid"),
                      BinaryMessage(msgs[2])]


def test_async_inflate_pauses_parsing_until_answered():
    client = ClientDeflate()
    p = ServerProtocol(compression=RemoteCompression())
    inflater = Inflater("zi", 15, False, 1 << 20, 1000)
    p.receive_data(client_frame(TEXT, client.compress(b"first"), rsv1=True)
                   + client_frame(TEXT, b"second") + client_frame(CLOSE, (1000).to_bytes(2, "big")))
    [need] = p.events_received()
    assert isinstance(need, InflateNeeded) and need.final and p.awaiting_inflate
    p.receive_data(b"")                         # EOF waits behind the buffered frames
    assert p.state != CLOSED and p.events_received() == []
    p.inflated(inflater.inflate(need.chunk, need.final))
    events = p.events_received()
    assert events[:2] == [TextMessage("first"), TextMessage("second")]
    assert isinstance(events[2], CloseReceived) and p.close_clean


def test_async_inflate_failure_closes_with_its_code():
    p = ServerProtocol(compression=RemoteCompression())
    p.receive_data(client_frame(TEXT, b"\xff\xff\xff\xff", rsv1=True))
    [need] = p.events_received()
    p.inflate_failed(1007, "invalid compressed data")
    assert p.state == CLOSED and p.close_code == 1007
    with pytest.raises(RuntimeError):
        p.inflated(b"late")


def test_send_compressed_frames_with_rsv1():
    client = ClientDeflate()
    deflater = Deflater("zd", 15, 6, 8, False)
    p = ServerProtocol(compression=RemoteCompression())
    p.send_compressed(True, deflater.compress(b"abc" * 50))
    out = p.data_to_send()
    assert out[0] == 0xC1                       # FIN + RSV1 + text
    n = out[1] & 0x7F
    assert client.decompress(out[2:2 + n]) == b"abc" * 50


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=6), st.integers(1, 200))
def test_async_and_inline_agree_on_any_split(messages, cut):
    """Whatever the messages and however the bytes arrive, asynchronous
    compression yields exactly what in-line compression does."""
    client = ClientDeflate()
    wire = b"".join(client_frame(BINARY, client.compress(m), rsv1=True) for m in messages)
    inline = ServerProtocol(compression=InlineCompression())
    remote = ServerProtocol(compression=RemoteCompression())
    inflater = Inflater("zi", 15, False, 1 << 20, 1000)
    got_inline, got_remote = [], []
    for i in range(0, len(wire), cut):
        inline.receive_data(wire[i:i + cut])
        got_inline += inline.events_received()
        remote.receive_data(wire[i:i + cut])
        got_remote += drive_async(remote, inflater)
    assert got_inline == got_remote == [BinaryMessage(m) for m in messages]
