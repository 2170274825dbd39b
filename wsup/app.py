"""The application API, in the spirit of Elixir's WebSock.

An application is a class; the server makes one instance per connection, in
the connection's own process, and calls:

* ``init(conn)`` once the WebSocket is open,
* ``handle_in(conn, data)`` for every message (``str`` for text, ``bytes`` for binary),
* ``handle_info(conn, message)`` for every message another actor sends to the
  connection (its Thespian address is ``conn.address``),
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
from typing import Any, Protocol


class Conn(Protocol):
    connection_id: str
    path: str
    query: str
    headers: dict[str, str]
    subprotocol: str | None
    peer: tuple[str, int]
    address: Any

    def send(self, data: str | bytes) -> None: ...
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
