"""The opening handshake (RFC 6455 section 4), sans-I/O.

Feed bytes with :meth:`ServerHandshake.receive_data` until it returns a
:class:`Handshake`: either accepted (with the 101 response to send and the
bytes that followed the request) or rejected (with the HTTP error response to
send before closing: 400 with a reason, 403 for an origin not allowed, 426 for
a wrong version, 431 for oversized headers).

The HTTP request head is parsed here (an upgrade request is a request line
and header fields, never a body): RFC 9112's grammar with the same checks
h11 makes (token methods and field names, no whitespace before a colon,
obsolete line folding unfolded, no control characters in values, a Host header for
HTTP/1.1), in a few regular-expression calls rather than h11's event machine,
which was 12% of a worker's CPU per connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Sequence
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REQUEST_BYTES = 16 * 1024
SERVER_HEADER = b"wsup"

# RFC 9110 token; request-target: any visible ASCII (the path checks are the application's)
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_VCHAR = rb"[^\x00\s]"      # as h11: visible characters and obs-text (RFC 9110 5.5)
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?[ \t]*")
_END = re.compile(rb"\r?\n\r?\n")


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


def page_response(content_type: str, body: bytes) -> bytes:
    """200 with a body (an application's page for a plain GET), then close."""
    head = [b"HTTP/1.1 200 OK", b"Server: " + SERVER_HEADER, b"Content-Type: " + content_type.encode("latin-1"),
            b"Content-Length: %d" % len(body), b"Cache-Control: no-cache", b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class BadRequest(Exception):
    """The request head is not valid HTTP/1.x."""


@dataclass
class Request:
    method: str
    target: str
    http_version: str
    headers: dict[str, str]        # lower-case names; repeated fields joined with ", "


def parse_request_head(head: bytes) -> Request:
    """Parse a request head (without the blank line that ends it)."""
    lines = head.split(b"\n")
    # each line but the last ends with CR LF or LF; the last one's end is the blank line's match
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines[:-1]] + lines[-1:]
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        raise BadRequest("illegal request line")
    method, target, major, minor = m.groups()
    fields: list[bytes] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):     # obsolete line folding: RFC 9112 5.2 allows replacing it with SP
            if not fields:
                raise BadRequest("continuation line at the start of the header fields")
            fields[-1] += b" " + line.lstrip(b" \t")
        else:
            fields.append(line)
    headers: dict[str, str] = {}
    for line in fields:
        f = _FIELD.fullmatch(line)
        if f is None:
            raise BadRequest("illegal header line")
        name = f.group(1).decode("ascii").lower()
        value = (f.group(2) or b"").decode("latin-1")
        if name == "host" and name in headers:
            raise BadRequest("more than one Host header")
        if name == "content-length" and (not value.isdigit() or headers.get(name, value) != value):
            raise BadRequest("bad Content-Length")
        headers[name] = headers[name] + ", " + value if name in headers else value
    version = f"{major.decode()}.{minor.decode()}"
    if version == "1.1" and "host" not in headers:
        raise BadRequest("missing mandatory Host header")
    return Request(method.decode("ascii"), target.decode("ascii"), version, headers)


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
                 max_request_bytes: int = MAX_REQUEST_BYTES,
                 http_get: Callable[[str], tuple[str, bytes] | None] | None = None) -> None:
        """``http_get(path)``: for a plain GET (no Upgrade: websocket), the
        application's page as (content type, body), or None (then 400)."""
        self.origins = {o.lower().rstrip("/") for o in origins} if origins else ()
        self.subprotocols = subprotocols
        self.select_subprotocol = select_subprotocol
        self.negotiate_extensions = negotiate_extensions
        self.max_request_bytes = max_request_bytes
        self.http_get = http_get
        self._buf = b""
        self._request: Request | None = None

    def receive_data(self, data: bytes) -> Handshake | None:
        """None while the request is incomplete.  Empty ``data`` means EOF."""
        if not data:
            return self._reject(400, "connection closed during the handshake")
        start = max(0, len(self._buf) - 3)
        buf = self._buf = self._buf + data if self._buf else data
        end = _END.search(buf, start)
        if end is None:
            if len(buf) > self.max_request_bytes:
                return self._reject(431, "bad HTTP request: request header too large")
            return None
        if end.start() > self.max_request_bytes:
            return self._reject(431, "bad HTTP request: request header too large")
        try:
            self._request = parse_request_head(buf[:end.start()])
        except BadRequest as exc:
            return self._reject(400, f"bad HTTP request: {exc}")
        except UnicodeDecodeError:
            return self._reject(400, "bad HTTP request: not ASCII")
        return self._decide(buf[end.end():])

    def _reject(self, status: int, reason: str,
                headers: Sequence[tuple[bytes, bytes]] = ()) -> Handshake:
        path = ""
        if self._request is not None:
            path = urlsplit(self._request.target).path
        return Handshake(False, http_response(status, reason, headers), status, reason, path=path)

    def _decide(self, trailing: bytes) -> Handshake:
        req = self._request
        assert req is not None
        headers = req.headers
        if "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("0", ""):
            return self._reject(400, "a WebSocket upgrade request has no body")
        if req.method != "GET":
            return self._reject(400, "the WebSocket handshake must be a GET request")
        if req.http_version != "1.1":
            return self._reject(400, "the WebSocket handshake needs HTTP/1.1")
        if "websocket" not in _header_tokens(headers.get("upgrade", "")):
            page = self.http_get(urlsplit(req.target).path or "/") if self.http_get is not None else None
            if page is not None:
                content_type, body = page
                return Handshake(False, page_response(content_type, body), 200, "page",
                                 path=urlsplit(req.target).path or "/")
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

        subprotocol = None
        offered_protocols = headers.get("sec-websocket-protocol")
        if offered_protocols:
            offered = [p.strip() for p in offered_protocols.split(",") if p.strip()]
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
        path, _, query = req.target.partition("?")
        if "#" in query:
            query = query.partition("#")[0]
        elif "#" in path:
            path = path.partition("#")[0]
        if not path.startswith("/"):     # absolute-form (http://host/path)
            target = urlsplit(req.target)
            path, query = target.path, target.query
        return Handshake(True, http_response(101, headers=out), 101, path=path or "/",
                         query=query, headers=headers, subprotocol=subprotocol,
                         extensions=extensions, offered_extensions=offered_ext, trailing=trailing)
