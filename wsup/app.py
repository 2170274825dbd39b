"""The application API (see wscore/app.py, where it is defined so that the
actors can use it without importing the server): subclass :class:`App`;
reach other connections with ``conn.tell`` or :class:`Deliver`."""

from wscore.app import App, Conn, ConnectionAddress, Deliver, EchoApp, load_app, worker_index

__all__ = ["App", "Conn", "ConnectionAddress", "Deliver", "EchoApp", "load_app", "worker_index"]
