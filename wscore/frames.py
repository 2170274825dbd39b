"""Client-to-server WebSocket frames (RFC 6455 section 5), sans-I/O.

:class:`FrameParser` turns bytes into frames and checks every header rule a
server must: client frames are masked, opcodes are known, control frames are
final and carry at most 125 bytes, payload lengths use their shortest form
(and 63 bits at most), RSV2/RSV3 are never set and RSV1 only where
permessage-deflate allows it (the first frame of a data message).  Any
violation raises :class:`FrameError` (close code 1002).

A data frame's payload is handed out as it arrives — a 1 MiB frame comes as
the pieces TCP delivered, each unmasked — so memory stays bounded by what is
buffered, never by the frame's declared length.  A control frame is handed
out whole (at most 125 bytes).

This replaced wsproto's ``FrameDecoder`` on the per-message path: the same
rules, about a fifth of the CPU per frame (no Header/Frame objects, no
per-byte masking generator; the mask is one XOR of two integers).
"""

from __future__ import annotations

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_KNOWN = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))


class FrameError(Exception):
    """A frame that breaks RFC 6455's framing rules (close code 1002)."""


class FrameTooBig(Exception):
    """A frame header declares more than ``max_frame_size`` bytes (close code 1009)."""


def unmask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` (repeated)."""
    n = len(data)
    if not n:
        return b""
    k = key * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(k[:n], "little")).to_bytes(n, "little")


class FrameParser:
    """Feed bytes with :meth:`feed`; take frames with :meth:`next`.

    ``next()`` returns ``(opcode, payload, frame_finished, fin, rsv1)`` or
    None when more bytes are needed.  A data frame comes in one or more
    pieces of at least one byte each (one empty piece if its length is 0);
    ``frame_finished`` is True on its last piece.  Every piece carries the
    frame's opcode, FIN and RSV1 bits.
    """

    __slots__ = ("rsv1_allowed", "_buf", "_pos", "_opcode", "_fin", "_rsv1", "_remaining", "_key", "_phase",
                 "in_frame", "max_frame_size")

    def __init__(self, rsv1_allowed: bool = False, max_frame_size: int | None = None) -> None:
        self.rsv1_allowed = rsv1_allowed
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._pos = 0
        self._opcode = 0
        self._fin = False
        self._rsv1 = False
        self._remaining = 0
        self._key = b""
        self._phase = 0
        self.in_frame = False        # a data frame's payload is still arriving

    def feed(self, data: bytes) -> None:
        buf = self._buf
        if self._pos:
            del buf[:self._pos]
            self._pos = 0
        buf += data

    def next(self) -> tuple[int, bytes, bool, bool, bool] | None:
        if self.in_frame:
            return self._more_payload()
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        opcode = b0 & 0x0F
        fin = bool(b0 & 0x80)
        if opcode not in _KNOWN:
            raise FrameError(f"Invalid opcode {opcode:#x}")
        control = opcode >= CLOSE
        if control and not fin:
            raise FrameError("Invalid attempt to fragment control frame")
        length = b1 & 0x7F
        if control and length > 125:
            raise FrameError("Control frame with payload len > 125")
        head = 2
        if length == 126:
            if avail < 4:
                return None
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if length <= 125:
                raise FrameError("Payload length used 2 bytes when 1 would have sufficed")
            head = 4
        elif length == 127:
            if avail < 10:
                return None
            length = int.from_bytes(buf[pos + 2:pos + 10], "big")
            if length <= 0xFFFF:
                raise FrameError("Payload length used 8 bytes when 2 would have sufficed")
            if length >> 63:
                raise FrameError("8-byte payload length with non-zero MSB")
            head = 10
        rsv1 = bool(b0 & 0x40)
        if b0 & 0x30:
            raise FrameError("Reserved bit set unexpectedly")
        if rsv1:
            if not self.rsv1_allowed:
                raise FrameError("Reserved bit set unexpectedly")
            if control or opcode == CONTINUATION:
                raise FrameError("RSV1 set on a control or continuation frame")
        if not b1 & 0x80:
            raise FrameError("server received unexpected unmasked frame")
        if self.max_frame_size is not None and length > self.max_frame_size:
            raise FrameTooBig(f"frame of {length} bytes is over the limit of {self.max_frame_size}")
        if avail < head + 4:
            return None
        key = bytes(buf[pos + head:pos + head + 4])
        start = pos + head + 4
        if control:
            if avail < head + 4 + length:
                return None
            self._pos = start + length
            return opcode, unmask(buf[start:start + length], key), True, True, False
        if length == 0:
            self._pos = start
            return opcode, b"", True, fin, rsv1
        if avail >= head + 4 + length:
            # the whole frame is here (the common case): one piece, no frame state kept
            self._pos = start + length
            return opcode, unmask(buf[start:start + length], key), True, fin, rsv1
        self._pos = start
        self._opcode, self._fin, self._rsv1, self._remaining, self._key, self._phase = \
            opcode, fin, rsv1, length, key, 0
        self.in_frame = True
        return self._more_payload()

    def _take(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        n = min(len(buf) - pos, self._remaining)
        if n <= 0:
            return None
        phase = self._phase
        key = self._key[phase:] + self._key[:phase] if phase else self._key
        piece = unmask(memoryview(buf)[pos:pos + n], key)
        self._pos = pos + n
        self._remaining -= n
        self._phase = (phase + n) & 3
        if not self._remaining:
            self.in_frame = False
        return piece

    def _more_payload(self) -> tuple[int, bytes, bool, bool, bool] | None:
        piece = self._take()
        if piece is None:
            return None
        return self._opcode, piece, not self.in_frame, self._fin, self._rsv1
