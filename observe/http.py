"""The metrics port's HTTP: one request per connection, GET only, and the
upgrade to the live feed's WebSocket (wsup's own handshake and protocol).

Sans-I/O: bytes in, a :class:`Request` (or a reply) out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from wscore.handshake import SERVER_HEADER, BadRequest, Handshake, ServerHandshake, parse_request_head
from wscore.protocol import BinaryMessage, CloseReceived, ServerProtocol, TextMessage

MAX_HEAD = 16384
_END = re.compile(rb"\r?\n\r?\n")


@dataclass
class Request:
    method: str
    path: str
    query: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    raw: bytes = b""          # the head as received (for the WebSocket handshake)
    error: str = ""           # a bad request: why


class RequestReader:
    """Collects one request head; :meth:`feed` returns it when complete."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> Request | None:
        if not data:
            return Request("", "", error="connection closed before the request")
        self._buf += data
        end = _END.search(self._buf)
        if end is None:
            if len(self._buf) > MAX_HEAD:
                return Request("", "", error="request header too large")
            return None
        head = self._buf[:end.start()]
        try:
            req = parse_request_head(head)
        except (BadRequest, UnicodeDecodeError) as exc:
            return Request("", "", error=f"bad HTTP request: {exc}")
        url = urlsplit(req.target)
        return Request(req.method, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}, req.headers,
                       self._buf)


def response(status: int, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8",
             headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Server: {SERVER_HEADER.decode()}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}", "Cache-Control: no-store",
             "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(status: int, obj: object) -> bytes:
    return response(status, json.dumps(obj, indent=1) + "\n", "application/json")


class FeedSocket:
    """The server side of one live-feed WebSocket: JSON text messages both ways."""

    def __init__(self, head: bytes) -> None:
        self.handshake: Handshake = ServerHandshake().receive_data(head)
        self.proto = ServerProtocol(max_message_size=65536) if self.handshake.accepted else None

    def receive(self, data: bytes) -> list[dict]:
        """Requests from the page ({"op": ...}); an unparsable one is ignored."""
        self.proto.receive_data(data)
        out = []
        for event in self.proto.events_received():
            if isinstance(event, (TextMessage, BinaryMessage)):
                try:
                    req = json.loads(event.data)
                except ValueError:
                    continue
                if isinstance(req, dict):
                    out.append(req)
            elif isinstance(event, CloseReceived):
                pass
        return out

    def send(self, obj: object) -> None:
        if self.proto.state == "open":
            self.proto.send_message(json.dumps(obj, separators=(",", ":")))

    @property
    def closed(self) -> bool:
        return self.proto.state == "closed"

    def data_to_send(self) -> bytes:
        return self.proto.data_to_send()
