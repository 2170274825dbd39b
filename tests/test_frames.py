"""wscore.frames against the RFC's rules, and differentially against wsproto's FrameDecoder."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, ParseFailed, RsvBits

from wscore.frames import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, FrameError, FrameParser, FrameTooBig, unmask


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, key: bytes | None = None,
                 masked: bool = True, length_form: int | None = None) -> bytes:
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    form = length_form if length_form is not None else (0 if n < 126 else 2 if n < 65536 else 8)
    mbit = 0x80 if masked else 0
    if form == 0:
        head = bytes((b0, mbit | n))
    elif form == 2:
        head = bytes((b0, mbit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, mbit | 127)) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + unmask(payload, key)


def parse_all(data: bytes, cuts: list[int], **kw) -> list[tuple]:
    """Feed ``data`` in pieces cut at ``cuts``; whole frames (payload pieces joined)."""
    p = FrameParser(**kw)
    out, cur = [], None
    bounds = sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]
    start = 0
    for end in bounds:
        p.feed(data[start:end])
        start = end
        while (fr := p.next()) is not None:
            opcode, piece, finished, fin, rsv1 = fr
            assert piece or finished, "a piece carries at least one byte"
            if cur is None:
                cur = [opcode, b"", fin, rsv1]
            cur[1] += piece
            if finished:
                out.append(tuple(cur))
                cur = None
    return out


class _AllowRsv1(Extension):
    name = "permessage-deflate"

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    def frame_inbound_header(self, proto, opcode, rsv, payload_length):
        if rsv.rsv1 and (opcode.iscontrol() or opcode == CONTINUATION):
            return CloseReason.PROTOCOL_ERROR
        return RsvBits(True, False, False)


def wsproto_all(data: bytes, rsv1_allowed: bool) -> list[tuple]:
    d = FrameDecoder(client=False, extensions=[_AllowRsv1()] if rsv1_allowed else [])
    d.receive_bytes(data)
    out, cur = [], None
    while True:
        fr = d.process_buffer()
        if fr is None:
            return out
        if cur is None:
            cur = [int(fr.opcode), b"", fr.message_finished, None]
        cur[1] += fr.payload
        if fr.frame_finished:
            out.append(tuple(cur[:3]))
            cur = None


def test_masked_text_frame():
    data = client_frame(TEXT, b"hello")
    assert parse_all(data, []) == [(TEXT, b"hello", True, False)]


def test_every_split_point_gives_the_same_frames():
    data = (client_frame(TEXT, b"a" * 300, fin=False) + client_frame(PING, b"p")
            + client_frame(CONTINUATION, b"b" * 70000) + client_frame(CLOSE, struct.pack("!H", 1000)))
    whole = parse_all(data, [])
    assert [f[0] for f in whole] == [TEXT, PING, CONTINUATION, CLOSE]
    for cut in list(range(0, 40)) + [305, 306, 320, 70000, len(data) - 3]:
        assert parse_all(data, [cut, cut + 7]) == whole


def test_data_frame_payload_comes_as_it_arrives():
    data = client_frame(BINARY, b"x" * 1000)
    p = FrameParser()
    p.feed(data[:14])            # header (2 + 2) + key (4) + 6 payload bytes
    assert p.next() == (BINARY, b"x" * 6, False, True, False)
    assert p.next() is None
    p.feed(data[14:])
    assert p.next() == (BINARY, b"x" * 994, True, True, False)


@pytest.mark.parametrize("data, why", [
    (client_frame(0x3, b""), "opcode"),
    (client_frame(0xB, b""), "opcode"),
    (client_frame(PING, b"", fin=False), "fragment"),
    (client_frame(PING, b"x" * 126), "125"),
    (client_frame(TEXT, b"x" * 10, length_form=2), "2 bytes"),
    (client_frame(TEXT, b"x" * 300, length_form=8), "8 bytes"),
    (bytes((0x81, 0xFF)) + struct.pack("!Q", 1 << 63) + b"abcd", "MSB"),
    (client_frame(TEXT, b"x", rsv=2), "Reserved"),
    (client_frame(TEXT, b"x", rsv=1), "Reserved"),
    (client_frame(TEXT, b"x", masked=False), "unmasked"),
])
def test_header_violations_are_protocol_errors(data, why):
    p = FrameParser()
    p.feed(data)
    with pytest.raises(FrameError, match=why):
        p.next()


def test_rsv1_only_on_a_data_messages_first_frame_when_allowed():
    assert parse_all(client_frame(TEXT, b"z", rsv=4), [], rsv1_allowed=True) == [(TEXT, b"z", True, True)]
    for data in (client_frame(CONTINUATION, b"z", rsv=4), client_frame(PING, b"", rsv=4)):
        p = FrameParser(rsv1_allowed=True)
        p.feed(data)
        with pytest.raises(FrameError):
            p.next()


def test_a_frame_over_the_limit_fails_at_its_header():
    p = FrameParser(max_frame_size=1000)
    p.feed(client_frame(BINARY, b"x" * 1001)[:8])     # header and key, no payload yet
    with pytest.raises(FrameTooBig):
        p.next()


_frames = st.lists(st.tuples(st.sampled_from([TEXT, BINARY, CONTINUATION, PING, PONG, CLOSE]),
                             st.binary(max_size=300), st.booleans(), st.sampled_from([0, 0, 0, 1, 2, 4])),
                   min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(_frames, st.lists(st.integers(min_value=0, max_value=2000), max_size=5), st.booleans(),
       st.booleans())
def test_same_frames_and_same_verdict_as_wsproto(frames, cuts, rsv1_allowed, bad_length):
    data = b"".join(client_frame(op, payload if op < CLOSE else payload[:125 + bad_length], fin=fin or op >= CLOSE
                                 or bad_length, rsv=rsv)
                    for op, payload, fin, rsv in frames)
    try:
        expected = wsproto_all(data, rsv1_allowed)
        expected_error = None
    except ParseFailed as exc:
        expected_error = exc
    if expected_error is not None:
        with pytest.raises(FrameError):
            parse_all(data, cuts, rsv1_allowed=rsv1_allowed)
        return
    got = parse_all(data, cuts, rsv1_allowed=rsv1_allowed)
    assert [f[:3] for f in got] == expected
