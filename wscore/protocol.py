"""The WebSocket protocol after the handshake (RFC 6455), server side, sans-I/O.

Bytes in with :meth:`ServerProtocol.receive_data`, events out with
:meth:`events_received`, bytes to write with :meth:`data_to_send`; the
connection actor does the I/O.  Framing is wscore.frames (header
validation, masking, control-frame rules, RSV bits); message
assembly, limits, UTF-8 and the closing handshake are here, with Bandit's and
RFC 6455's close codes:

* 1002 protocol error (unmasked frame, RSV bit without extension, bad opcode,
  fragmented or oversized control frame, bad continuation, bad close frame)
* 1007 invalid UTF-8 in a text message or close reason
* 1009 a frame over ``max_frame_size`` or a message over ``max_message_size``
  (checked as bytes arrive: memory stays bounded)
* 1006 recorded (never sent) when TCP closes without a closing handshake

Compression (RFC 7692) plugs in as ``compression``: an object with
``rsv1_allowed`` (negotiated), ``decompress(chunk, final) -> bytes`` (raises
:class:`ProtocolFailure` to fail the connection), ``message_done()`` and
``compress(data) -> bytes | None`` (None: send uncompressed).

Or the contexts live elsewhere (another actor) and answers come later: a
``compression`` object with ``asynchronous = True``.  Then each compressed
chunk is an :class:`InflateNeeded` event and parsing pauses (frames after it
wait in the buffer, so order is kept) until the caller hands the plaintext
back with :meth:`ServerProtocol.inflated` (or a failure with
:meth:`ServerProtocol.inflate_failed`).  Outgoing messages are compressed by
the caller and framed with :meth:`ServerProtocol.send_compressed`.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field
from typing import Any

from wsproto.frame_protocol import CloseReason

from wscore.frames import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, FrameError, FrameParser, FrameTooBig

OPEN, CLOSING, CLOSED = "open", "closing", "closed"

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
NO_STATUS_RCVD = 1005
ABNORMAL_CLOSURE = 1006
INVALID_DATA = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011

_LOCAL_ONLY = {1005, 1006, 1015}
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


@dataclass
class InflateNeeded:
    """A compressed chunk of the message in progress: inflate it and call
    ``inflated(plaintext)``; nothing more is parsed until then."""
    chunk: bytes
    final: bool


@dataclass
class TextMessage:
    data: str
    size: int = field(default=0, compare=False)     # bytes of the (uncompressed) payload


@dataclass
class BinaryMessage:
    data: bytes
    size: int = field(default=0, compare=False)


@dataclass
class Ping:
    payload: bytes


@dataclass
class Pong:
    payload: bytes


@dataclass
class CloseReceived:
    code: int
    reason: str


class ProtocolFailure(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """One server-to-client (unmasked) frame."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


def close_payload(code: int | None, reason: str = "") -> bytes:
    if code is None or code == NO_STATUS_RCVD:
        return b""
    data = reason.encode("utf-8")
    while len(data) > 123:  # a control frame carries at most 125 bytes
        reason = reason[:-1]
        data = reason.encode("utf-8")
    return struct.pack("!H", code) + data


class ServerProtocol:
    def __init__(self, max_message_size: int | None = 1 << 20, max_frame_size: int | None = None,
                 compression: Any = None) -> None:
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.compression = compression
        self._frames = FrameParser(rsv1_allowed=compression is not None, max_frame_size=max_frame_size)
        self.state = OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_initiator: str | None = None    # "client" | "server"
        self.close_clean = False
        self.failed = False
        self._out = bytearray()
        self._events: list[Any] = []
        self._in_frame = False
        self._msg_opcode: int | None = None
        self._msg_parts: list[Any] = []
        self._msg_size = 0
        self._msg_compressed = False
        self._utf8: Any = None
        self._text = False
        self._async = compression is not None and getattr(compression, "asynchronous", False)
        self._awaiting: tuple[bool] | None = None   # (final,) of the chunk being inflated elsewhere
        self._eof_pending = False

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the peer closed TCP."""
        if self.state == CLOSED:
            return
        if not data:
            if self._awaiting is not None:
                self._eof_pending = True   # after what is buffered
                return
            self._eof()
            return
        self._frames.feed(data)
        if self._awaiting is not None:
            return
        try:
            self._parse()
        except ProtocolFailure as exc:
            self.fail(exc.code, exc.reason)

    def _eof(self) -> None:
        if self.state == OPEN:
            self.close_code = ABNORMAL_CLOSURE
            self.close_reason = "connection closed without a close frame"
            self.close_initiator = "client"
        self.close_clean = False
        self.state = CLOSED

    def _parse(self) -> None:
        frames = self._frames
        while self.state != CLOSED and self._awaiting is None:
            try:
                fr = frames.next()
            except FrameError as exc:
                raise ProtocolFailure(PROTOCOL_ERROR, str(exc)) from None
            except FrameTooBig as exc:
                raise ProtocolFailure(MESSAGE_TOO_BIG, str(exc)) from None
            if fr is None:
                return
            self._on_frame(*fr)

    def _on_frame(self, opcode: int, data: bytes, frame_finished: bool, fin: bool, rsv1: bool) -> None:
        if opcode >= CLOSE:
            self._on_control(opcode, data)
            return
        new_frame = not self._in_frame
        self._in_frame = not frame_finished
        if new_frame:
            if opcode == CONTINUATION:
                if self._msg_opcode is None:
                    raise ProtocolFailure(PROTOCOL_ERROR, "continuation frame without a message")
            else:
                if self._msg_opcode is not None:
                    raise ProtocolFailure(PROTOCOL_ERROR, "new message before the last one finished")
                self._start_message(opcode, rsv1)
        final = frame_finished and fin
        if self._msg_compressed and self.state == OPEN:
            if self._async:
                self._awaiting = (final,)
                self._events.append(InflateNeeded(data, final))
                return
            data = self.compression.decompress(data, final)
        self._add_to_message(data, final)
        if final:
            self._finish_message()

    def _start_message(self, opcode: int, rsv1: bool) -> None:
        self._msg_opcode = opcode
        self._msg_parts = []
        self._msg_size = 0
        self._msg_compressed = rsv1
        self._text = opcode == TEXT
        self._utf8 = None    # an incremental decoder, from the first piece that is not the last

    def _add_to_message(self, data: bytes, final: bool) -> None:
        self._msg_size += len(data)
        if self.max_message_size is not None and self._msg_size > self.max_message_size:
            raise ProtocolFailure(MESSAGE_TOO_BIG, f"message over the limit of {self.max_message_size} bytes")
        if self.state != OPEN:
            return  # closing: data is discarded, only the close frame matters
        if self._text:
            try:
                if final and self._utf8 is None:
                    data = data.decode("utf-8")    # the whole message in one piece
                else:
                    if self._utf8 is None:
                        self._utf8 = _utf8_decoder()
                    data = self._utf8.decode(data, final)
            except UnicodeDecodeError as exc:
                raise ProtocolFailure(INVALID_DATA, f"invalid UTF-8: {exc.reason}") from None
        if data:
            self._msg_parts.append(data)

    def _finish_message(self) -> None:
        opcode, parts = self._msg_opcode, self._msg_parts
        if self._msg_compressed:
            self.compression.message_done()
        self._msg_opcode, self._msg_parts, self._utf8, self._text = None, [], None, False
        if self.state != OPEN:
            return
        if opcode == TEXT:
            self._events.append(TextMessage("".join(parts), self._msg_size))
        else:
            self._events.append(BinaryMessage(b"".join(parts), self._msg_size))

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            if self.state == OPEN:
                self._out += frame(PONG, payload)
            self._events.append(Ping(payload))
        elif opcode == PONG:
            self._events.append(Pong(payload))
        else:
            self._on_close_frame(payload)

    def _on_close_frame(self, payload: bytes) -> None:
        if not payload:
            code, reason = NO_STATUS_RCVD, ""
        elif len(payload) == 1:
            raise ProtocolFailure(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        else:
            (code,) = struct.unpack("!H", payload[:2])
            if not (1000 <= code <= 4999) or code in _LOCAL_ONLY or (
                    code <= 2999 and code not in CloseReason._value2member_map_):
                raise ProtocolFailure(PROTOCOL_ERROR, f"close frame with invalid code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolFailure(INVALID_DATA, "close reason is not UTF-8") from None
        if self.state == OPEN:
            # The client starts the closing handshake: echo its code.
            self.close_code, self.close_reason, self.close_initiator = code, reason, "client"
            self._out += frame(CLOSE, close_payload(NORMAL_CLOSURE if code == NO_STATUS_RCVD
                                                           else code))
        self.close_clean = True
        self.state = CLOSED
        self._events.append(CloseReceived(code, reason))

    @property
    def awaiting_inflate(self) -> bool:
        return self._awaiting is not None

    def inflated(self, data: bytes) -> None:
        """The plaintext of the last InflateNeeded chunk: go on parsing."""
        if self._awaiting is None:
            raise RuntimeError("no inflate is awaited")
        (final,), self._awaiting = self._awaiting, None
        if self.state == CLOSED:
            return
        try:
            self._add_to_message(data, final)
            if final:
                self._finish_message()
            self._parse()
        except ProtocolFailure as exc:
            self.fail(exc.code, exc.reason)
        if self._eof_pending and self._awaiting is None and self.state != CLOSED:
            self._eof()

    def inflate_failed(self, code: int, reason: str) -> None:
        """The last InflateNeeded chunk could not be inflated (1007, 1009, 1011)."""
        self._awaiting = None
        self.fail(code, reason)

    # -- output ---------------------------------------------------------------

    def events_received(self) -> list[Any]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    def send_message(self, data: str | bytes) -> None:
        if self.state != OPEN:
            raise RuntimeError(f"cannot send a message: the connection is {self.state}")
        if isinstance(data, str):
            opcode, payload = TEXT, data.encode("utf-8")
        else:
            opcode, payload = BINARY, bytes(data)
        compressed = self.compression.compress(payload) if self.compression is not None else None
        if compressed is not None:
            self._out += frame(opcode, compressed, rsv1=True)
        else:
            self._out += frame(opcode, payload)

    def send_compressed(self, text: bool, payload: bytes) -> None:
        """Frame a message the caller has deflated (RSV1 set)."""
        if self.state != OPEN:
            raise RuntimeError(f"cannot send a message: the connection is {self.state}")
        self._out += frame(TEXT if text else BINARY, payload, rsv1=True)

    def send_ping(self, payload: bytes = b"") -> None:
        if self.state == OPEN:
            self._out += frame(PING, payload[:125])

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (no-op unless open)."""
        if self.state != OPEN:
            return
        self.close_code, self.close_reason, self.close_initiator = code, reason, "server"
        self._out += frame(CLOSE, close_payload(code, reason))
        self.state = CLOSING

    def fail(self, code: int, reason: str) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 7.1.7): send a close frame
        if we still may, then the transport should be closed at once."""
        self.failed = True
        if self.state == OPEN:
            self._out += frame(CLOSE, close_payload(code, reason))
        if self.state != CLOSED:
            if self.state == OPEN or self.close_code is None:
                self.close_code, self.close_reason, self.close_initiator = code, reason, "server"
            self.close_clean = False
            self.state = CLOSED

    def abort(self, code: int, reason: str) -> None:
        """Record an abnormal end (timeouts, I/O errors) without sending."""
        if self.state != CLOSED:
            if self.state == OPEN:
                self.close_code, self.close_reason, self.close_initiator = code, reason, "server"
            self.close_clean = False
            self.state = CLOSED
