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
* ``handle_publish(conn, topic, message)`` for every message published to a
  topic the connection subscribed to (``conn.subscribe(topic)``); by default
  it sends the message to the client (compressed per connection),
* ``terminate(conn, reason)`` once, when the connection ends
  (reason: ``"normal"``, ``"shutdown"``, ``("remote", code)``, or an error).

``conn`` replies and pushes with ``conn.send(data)``, closes with
``conn.close(code, reason)`` and pings with ``conn.ping()``; pub/sub:
``conn.subscribe(topic)``, ``conn.unsubscribe(topic)``,
``conn.publish(topic, message, exclude_self=False)`` — to every subscriber
in every worker (and every node of a cluster).  Code that runs in a worker
but outside a connection publishes with :func:`publish` and listens with
:func:`listen`; a process-tier actor sends :class:`Publish` to any worker;
``wsup publish`` does it from a shell.  An exception in
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


@dataclass
class Publish:
    """Send this to any worker (``ConnectionAddress.worker``) to publish
    from outside a connection: delivered in every worker and node."""
    topic: str
    message: str | bytes


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
    def subscribe(self, topic: str) -> bool: ...
    def unsubscribe(self, topic: str) -> bool: ...
    def publish(self, topic: str, message: str | bytes, exclude_self: bool = False) -> int: ...


class App:
    """Base class: override what you need."""

    select_subprotocol = None  # or a callable: (offered: list[str]) -> str | None
    # or a callable: (path) -> (content type, body) | None: a page for a plain GET on the
    # WebSocket port (e.g. the browser page of an example); None: 400, as without it
    http_get = None

    @classmethod
    def worker_started(cls, worker: int) -> None:
        """Once in each worker process, before it accepts: set up what the
        worker shares between its connections (e.g. ``listen``)."""

    def init(self, conn: Conn) -> None:
        pass

    def handle_in(self, conn: Conn, data: str | bytes) -> None:
        pass

    def handle_info(self, conn: Conn, message: Any) -> None:
        pass

    def handle_publish(self, conn: Conn, topic: str, message: str | bytes) -> None:
        conn.send(message)

    def terminate(self, conn: Conn, reason: Any) -> None:
        pass


class EchoApp(App):
    """The default application: sends every message back as it came."""

    def handle_in(self, conn: Conn, data: str | bytes) -> None:
        conn.send(data)


def publish(topic: str, message: str | bytes) -> int:
    """Publish from code running in a worker outside a connection (a
    listener, a timer of the worker): like ``conn.publish``.  The number of
    subscribers reached in this worker at once."""
    from wscore import ioloop
    return ioloop.current().pubsub.publish(topic, message)


def listen(topic: str, fn: Any) -> None:
    """Call ``fn(topic, message)`` in this worker's loop for every message
    published to ``topic`` anywhere, until :func:`unlisten` (or the worker
    ends).  A listener must be quick; an exception in it is logged
    (``pubsub.listener_failed``) and the listener stays."""
    from wscore import ioloop
    ioloop.current().pubsub.subscribe(topic, _listener_key(fn), fn)


def unlisten(topic: str, fn: Any) -> bool:
    from wscore import ioloop
    return ioloop.current().pubsub.unsubscribe(topic, _listener_key(fn))


def _listener_key(fn: Any) -> str:
    if not callable(fn):
        raise TypeError("a listener is a function fn(topic, message)")
    return f"fn:{id(fn)}"


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
