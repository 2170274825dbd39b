"""The opening handshake (RFC 6455 section 4), sans-I/O.

Feed bytes with :meth:`ServerHandshake.receive_data` until it returns a
:class:`Handshake`: either accepted (with the 101 response to send and the
bytes that followed the request) or rejected (with the HTTP error response to
send before closing: 400 with a reason, 403 for an origin not allowed, 426 for
a wrong version, 431 for oversized headers).  HTTP parsing is h11's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Sequence
from urllib.parse import urlsplit

import h11

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REQUEST_BYTES = 16 * 1024
SERVER_HEADER = b"wsup"


def accept_key(key: str | bytes) -> str:
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode("ascii")


def http_response(status: int, reason: str = "", headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    phrase = HTTPStatus(status).phrase.encode("ascii")
    body = (reason + "\n").encode("utf-8") if reason else b""
    lines = [b"HTTP/1.1 %d %s" % (status, phrase), b"Server: " + SERVER_HEADER]
    lines += [name + b": " + value for name, value in headers]
    if status != 101:
        lines += [b"Content-Type: text/plain; charset=utf-8",
                  b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass
class Handshake:
    accepted: bool
    response: bytes                      # bytes to send to the client
    status: int
    reason: str = ""                     # why it was rejected
    path: str = ""
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    subprotocol: str | None = None
    extensions: list[str] = field(default_factory=list)   # accepted extension headers
    offered_extensions: str = ""
    trailing: bytes = b""                # frames that arrived with the request


def _header_tokens(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()]


class ServerHandshake:
    """Parses one upgrade request and decides.

    ``select_subprotocol(offered) -> str | None`` picks among the client's
    subprotocols (default: the first one in ``subprotocols`` the client
    offered).  ``negotiate_extensions(header_value) -> str | None`` returns
    the Sec-WebSocket-Extensions response value (None: no extension)."""

    def __init__(self, origins: Sequence[str] = (), subprotocols: Sequence[str] = (),
                 select_subprotocol: Callable[[list[str]], str | None] | None = None,
                 negotiate_extensions: Callable[[str], str | None] | None = None,
                 max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.origins = {o.lower().rstrip("/") for o in origins}
        self.subprotocols = list(subprotocols)
        self.select_subprotocol = select_subprotocol
        self.negotiate_extensions = negotiate_extensions
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_request_bytes)
        self._request: h11.Request | None = None

    def receive_data(self, data: bytes) -> Handshake | None:
        """None while the request is incomplete.  Empty ``data`` means EOF."""
        self._h11.receive_data(data)
        try:
            while True:
                event = self._h11.next_event()
                if event is h11.NEED_DATA:
                    if not data:
                        return self._reject(400, "connection closed during the handshake")
                    return None
                if isinstance(event, h11.Request):
                    self._request = event
                elif isinstance(event, (h11.EndOfMessage,)) or event is h11.PAUSED:
                    return self._decide()
                elif isinstance(event, h11.Data):
                    return self._reject(400, "a WebSocket upgrade request has no body")
                elif isinstance(event, h11.ConnectionClosed):
                    return self._reject(400, "connection closed during the handshake")
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 400 and len(self._h11._receive_buffer) >= self._h11._max_incomplete_event_size:
                status = 431
            return self._reject(status, f"bad HTTP request: {exc}")

    def _reject(self, status: int, reason: str,
                headers: Sequence[tuple[bytes, bytes]] = ()) -> Handshake:
        path = ""
        if self._request is not None:
            path = urlsplit(self._request.target.decode("latin-1")).path
        return Handshake(False, http_response(status, reason, headers), status, reason, path=path)

    def _decide(self) -> Handshake:
        req = self._request
        assert req is not None
        headers: dict[str, str] = {}
        for name, value in req.headers:
            key = name.decode("latin-1").lower()
            val = value.decode("latin-1")
            headers[key] = headers[key] + ", " + val if key in headers else val
        if req.method != b"GET":
            return self._reject(400, "the WebSocket handshake must be a GET request")
        if req.http_version != b"1.1":
            return self._reject(400, "the WebSocket handshake needs HTTP/1.1")
        if "websocket" not in _header_tokens(headers.get("upgrade", "")):
            return self._reject(400, "missing or invalid Upgrade: websocket header")
        if "upgrade" not in _header_tokens(headers.get("connection", "")):
            return self._reject(400, "missing or invalid Connection: Upgrade header")
        key = headers.get("sec-websocket-key", "")
        try:
            if len(base64.b64decode(key.encode("ascii"), validate=True)) != 16:
                raise ValueError
        except (ValueError, binascii.Error, UnicodeEncodeError):
            return self._reject(400, "missing or invalid Sec-WebSocket-Key header")
        if headers.get("sec-websocket-version", "").strip() != "13":
            return self._reject(426, "unsupported WebSocket version (13 is supported)",
                                [(b"Sec-WebSocket-Version", b"13")])
        origin = headers.get("origin")
        if self.origins and (origin is None or origin.lower().rstrip("/") not in self.origins):
            return self._reject(403, f"origin {origin!r} is not allowed")

        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        subprotocol = None
        if offered:
            if self.select_subprotocol is not None:
                subprotocol = self.select_subprotocol(offered)
            else:
                subprotocol = next((p for p in self.subprotocols if p in offered), None)
            if subprotocol is not None and subprotocol not in offered:
                subprotocol = None
        offered_ext = headers.get("sec-websocket-extensions", "")
        extensions = []
        if offered_ext and self.negotiate_extensions is not None:
            agreed = self.negotiate_extensions(offered_ext)
            if agreed:
                extensions.append(agreed)

        out = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
               (b"Sec-WebSocket-Accept", accept_key(key).encode("ascii"))]
        if subprotocol:
            out.append((b"Sec-WebSocket-Protocol", subprotocol.encode("latin-1")))
        for ext in extensions:
            out.append((b"Sec-WebSocket-Extensions", ext.encode("latin-1")))
        target = urlsplit(req.target.decode("latin-1"))
        trailing = bytes(self._h11.trailing_data[0])
        return Handshake(True, http_response(101, headers=out), 101, path=target.path or "/",
                         query=target.query, headers=headers, subprotocol=subprotocol,
                         extensions=extensions, offered_extensions=offered_ext, trailing=trailing)
