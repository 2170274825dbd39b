"""The direct channel between a ConnectionActor and its CompressionActor.

A Thespian message round trip costs ~1-1.3 ms and ~1 ms of CPU here; a
socket round trip ~25 us.  So frames do not travel as Thespian messages: the
CompressionActor listens on an abstract AF_UNIX stream socket named after
its connection, and the ConnectionActor makes blocking request/reply calls on
it.  Thespian stays in charge of the lifecycle and supervision.

Wire format: request ``!BBI`` (op, flags, length) + payload; reply ``!BHI``
(status, close code, length) + payload.

The client side (:class:`CompressionClient`) survives a CompressionActor
crash without the WebSocket client noticing: it reconnects to the restarted
actor, primes its new inflate context with the last window of plaintext
(kept here, outside the crashing actor; not needed with
client_no_context_takeover), replays the compressed chunks of the message in
progress and carries on.  A fresh deflate context needs nothing: after a
sync flush a new compressor's output is valid for the client's inflater.
Where recovery is impossible it raises a 1011 CompressionError; it never
returns data it is not sure of.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Callable

from wsup.deflate import CompressionError, DeflateParams

OP_OPEN, OP_INFLATE, OP_DEFLATE, OP_RELEASE = 1, 2, 3, 4
FLAG_FINAL = 1
OK, ERR = 0, 1
REQ = struct.Struct("!BBI")
REP = struct.Struct("!BHI")

RPC_TIMEOUT = 10.0        # a CompressionActor this slow is treated as hung: 1011
RECONNECT_TIMEOUT = 5.0   # how long a restart of the CompressionActor may take
INTERNAL_ERROR = 1011
RECV_SIZE = 65536


def channel_name(handoff_name: str, connection_id: str) -> str:
    return f"{handoff_name}-z-{connection_id}"


def encode_request(op: int, payload: bytes = b"", flags: int = 0) -> bytes:
    return REQ.pack(op, flags, len(payload)) + payload


def encode_reply(status: int, code: int = 0, payload: bytes = b"") -> bytes:
    return REP.pack(status, code, len(payload)) + payload


class RequestReader:
    """Incremental parser of requests (sans-I/O)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= REQ.size:
            op, flags, n = REQ.unpack_from(self._buf)
            if len(self._buf) < REQ.size + n:
                break
            out.append((op, flags, bytes(self._buf[REQ.size:REQ.size + n])))
            del self._buf[:REQ.size + n]
        return out


class _Lost(Exception):
    """The channel broke: the CompressionActor died or restarted."""


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise _Lost("channel closed")
        buf += part
    return bytes(buf)


class CompressionClient:
    """The ConnectionActor's side; the protocol's ``compression`` object."""

    rsv1_allowed = True

    def __init__(self, name: str, params: DeflateParams, threshold: int,
                 on_event: Callable[..., None] | None = None) -> None:
        self.name = name
        self.params = params
        self.threshold = threshold
        self.takeover = not params.client_no_context_takeover
        self.window_size = 1 << params.inflate_window_bits
        self.sock: socket.socket | None = None
        self.context_ids: dict[str, str] = {}
        self.recoveries = 0
        self._on_event = on_event or (lambda *a, **k: None)
        self._window = b""        # plaintext window before the message in progress
        self._tail = b""          # window after the chunks inflated so far
        self._chunks: list[tuple[bytes, bool]] = []
        self._out_len = 0
        self._rbuf = bytearray(RECV_SIZE)
        self._rview = memoryview(self._rbuf)

    # -- the channel ----------------------------------------------------------

    def _connect(self, zdict: bytes, deadline: float | None = None) -> None:
        """Connect and open contexts; an actor that dies before it has opened
        them (or refuses us) is waited for until its restart, up to the deadline."""
        deadline = deadline or time.monotonic() + RECONNECT_TIMEOUT
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(RPC_TIMEOUT)
            try:
                sock.connect("\0" + self.name)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            else:
                self.sock = sock
                try:
                    self.context_ids = json.loads(self._call(OP_OPEN, zdict))
                    return
                except _Lost:
                    pass   # it died while opening: its successor will answer
            if time.monotonic() > deadline:
                raise CompressionError(INTERNAL_ERROR, "compression unavailable") from None
            time.sleep(0.005)

    def _call(self, op: int, payload: bytes, flags: int = 0) -> bytes:
        sock = self.sock
        try:
            sock.sendmsg([REQ.pack(op, flags, len(payload)), payload])
            # one recv_into usually holds the whole reply
            got = sock.recv_into(self._rbuf)
            while got < REP.size:
                more = sock.recv_into(self._rview[got:])
                if not more:
                    raise _Lost("channel closed")
                got += more
            status, code, n = REP.unpack_from(self._rbuf)
            if REP.size + n <= got:
                data = bytes(self._rview[REP.size:REP.size + n])
            else:
                data = bytes(self._rview[REP.size:got]) + _recv_exactly(sock, REP.size + n - got)
        except socket.timeout:
            self.close()
            raise CompressionError(INTERNAL_ERROR, "compression unresponsive") from None
        except (OSError, _Lost) as exc:
            self.close()
            raise _Lost(str(exc)) from None
        if status == ERR:
            raise CompressionError(code, data.decode("utf-8", "replace"))
        return data

    def _rpc(self, op: int, payload: bytes, flags: int = 0) -> bytes:
        if self.sock is None:
            self._connect(self._window if self.takeover else b"")
        return self._call(op, payload, flags)

    def connect(self) -> None:
        """Connect now (the CompressionActor has started)."""
        if self.sock is None:
            self._connect(self._window if self.takeover else b"")

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # -- what the protocol calls ----------------------------------------------

    def decompress(self, chunk: bytes, final: bool) -> bytes:
        if not self._chunks:
            self._tail = self._window
        self._chunks.append((chunk, final))
        try:
            out = self._rpc(OP_INFLATE, chunk, FLAG_FINAL if final else 0)
        except _Lost:
            out = self._recover()
        self._out_len += len(out)
        if self.takeover:
            self._tail = (self._tail + out)[-self.window_size:]
        if final:
            self._window = self._tail if self.takeover else b""
            self._chunks.clear()
            self._out_len = 0
        return out

    def message_done(self) -> None:
        pass

    def _recover(self) -> bytes:
        """The CompressionActor died mid-message: rebuild its inflate state in
        the restarted one and replay this message's chunks."""
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        while time.monotonic() < deadline:
            self.close()
            try:
                # (a dying actor may still accept and then drop us: try again)
                self._connect(self._window if self.takeover else b"", deadline)
                produced = 0
                last = b""
                for i, (c, f) in enumerate(self._chunks):
                    out = self._call(OP_INFLATE, c, FLAG_FINAL if f else 0)
                    if i < len(self._chunks) - 1:
                        produced += len(out)
                    else:
                        last = out
            except _Lost:
                continue
            if produced != self._out_len:
                raise CompressionError(INTERNAL_ERROR, "compression state could not be rebuilt")
            self.recoveries += 1
            self._on_event("compression.recovered", replayed_chunks=len(self._chunks),
                           window_bytes=len(self._window), context_ids=self.context_ids)
            return last
        raise CompressionError(INTERNAL_ERROR, "compression service lost")

    def compress(self, data: bytes) -> bytes | None:
        """Deflated payload, or None to send the message uncompressed (short
        messages; or no compression service: an uncompressed message is
        always valid under permessage-deflate)."""
        if len(data) < self.threshold:
            return None
        for _attempt in range(3):
            try:
                return self._rpc(OP_DEFLATE, data)
            except _Lost:
                continue
            except CompressionError:
                return None
        return None

    def release(self, cause: str) -> None:
        """Ask the CompressionActor to release the contexts (idempotent there)."""
        if self.sock is None:
            return
        try:
            self._call(OP_RELEASE, cause.encode())
        except (_Lost, CompressionError):
            pass
