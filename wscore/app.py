"""The application API, in the spirit of Elixir's WebSock.

An application is a class; the server makes one instance per connection, in
the connection's own process, and calls:

* ``init(conn)`` once the WebSocket is open,
* ``handle_in(conn, data)`` for every message (``str`` for text, ``bytes`` for binary),
* ``handle_info(conn, message)`` for every message sent to the connection:
  by another connection's ``conn.tell(to, message)`` (``to``: a connection id
  or a :class:`ConnectionAddress`, in any worker), by any actor of the
  server's process tier (``Deliver`` sent to ``conn.address.worker``), from
  outside the server (``wsup send``), or by ``conn.send_after``;
* ``terminate(conn, reason)`` once, when the connection ends
  (reason: ``"normal"``, ``"shutdown"``, ``("remote", code)``, or an error).

``conn`` replies and pushes with ``conn.send(data)``, closes with
``conn.close(code, reason)`` and pings with ``conn.ping()``.  An exception in
any callback crashes the connection actor: the client gets close code 1011,
the crash is reported, and nothing else is disturbed.

``select_subprotocol(offered)`` (a static or class method) may pick one of
the subprotocols the client offered; by default, the server's
``--subprotocol`` list decides.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ConnectionAddress:
    """Where a connection is: its worker's Thespian address and its id.
    Picklable; valid from any process of the server."""
    worker: Any
    connection_id: str


@dataclass
class Deliver:
    """Send this to ``ConnectionAddress.worker`` (or to any worker: it routes
    by the id) to have ``message`` given to the connection's handle_info.  A
    message for a connection that is gone is dropped, as in Erlang."""
    connection_id: str
    message: Any


def worker_index(connection_id: str) -> int | None:
    """The worker a connection id belongs to (ids are ``<worker>-<random>``)."""
    head, sep, _ = connection_id.partition("-")
    return int(head) if sep and head.isdigit() else None


class Conn(Protocol):
    connection_id: str
    path: str
    query: str
    headers: dict[str, str]
    subprotocol: str | None
    peer: tuple[str, int]
    address: ConnectionAddress

    def send(self, data: str | bytes) -> None: ...
    def tell(self, to: "str | ConnectionAddress", message: Any) -> None: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...
    def ping(self, payload: bytes = b"") -> None: ...


class App:
    """Base class: override what you need."""

    select_subprotocol = None  # or a callable: (offered: list[str]) -> str | None

    def init(self, conn: Conn) -> None:
        pass

    def handle_in(self, conn: Conn, data: str | bytes) -> None:
        pass

    def handle_info(self, conn: Conn, message: Any) -> None:
        pass

    def terminate(self, conn: Conn, reason: Any) -> None:
        pass


class EchoApp(App):
    """The default application: sends every message back as it came."""

    def handle_in(self, conn: Conn, data: str | bytes) -> None:
        conn.send(data)


def load_app(spec: str) -> type:
    """``package.module:Class`` -> the class."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app must look like package.module:Class, not {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ValueError(f"{spec} is not a class")
    return obj
