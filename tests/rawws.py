"""A raw WebSocket client for crafting frames the libraries refuse to send."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import zlib


def deflate_payload(data: bytes, compressor=None, *, level: int = 6, wbits: int = 15) -> bytes:
    """One message's payload as a permessage-deflate sender writes it: deflated, sync-flushed,
    the 00 00 ff ff tail removed (RFC 7692, 7.2.1). Pass *compressor* to keep context
    takeover across messages; otherwise a fresh raw-deflate compressor of *wbits*."""
    c = compressor if compressor is not None else zlib.compressobj(level, zlib.DEFLATED, -wbits)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


class RawClient:
    def __init__(self, host: str, port: int, path: str = "/", headers: dict | None = None,
                 handshake: bool = True, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.status = None
        self.response_headers: dict[str, str] = {}
        self.body = b""
        if handshake:
            self.handshake(path, headers or {})

    def handshake(self, path: str = "/", headers: dict | None = None, raw: bytes | None = None) -> int:
        if raw is None:
            hdrs = {"Host": "localhost", "Upgrade": "websocket", "Connection": "Upgrade",
                    "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                    "Sec-WebSocket-Version": "13"}
            for k, v in (headers or {}).items():
                if v is None:
                    hdrs.pop(k, None)
                else:
                    hdrs[k] = v
            raw = (f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                   + "\r\n").encode()
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else None
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.response_headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            n = int(self.response_headers.get("content-length", "0"))
            while len(self.buf) < n:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buf += data
            self.body, self.buf = self.buf[:n], self.buf[n:]
        return self.status

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
                   mask: bool = True, length: int | None = None) -> None:
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload) if length is None else length
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, deadline: float) -> bool:
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                data = b""
            if not data:
                return False
            self.buf += data
        return True

    def recv_frame(self, timeout: float = 5.0):
        """(fin, rsv, opcode, payload) or None at EOF/timeout."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            if not self._fill(4, deadline):
                return None
            (n,) = struct.unpack("!H", self.buf[2:4])
            off = 4
        elif n == 127:
            if not self._fill(10, deadline):
                return None
            (n,) = struct.unpack("!Q", self.buf[2:10])
            off = 10
        if not self._fill(off + n, deadline):
            return None
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload

    def recv_close(self, timeout: float = 5.0):
        """Skip data/ping frames; return (code, reason) of the close frame, or None."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f is None:
                return None
            if f[2] == 0x8:
                p = f[3]
                return (struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None,
                        p[2:].decode("utf-8", "replace"))

    def wait_eof(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
        return False

    def close(self) -> None:
        self.sock.close()
