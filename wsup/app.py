"""The application API (see wscore/app.py, where it is defined so that the
actors can use it without importing the server): subclass :class:`App`;
reach other connections with ``conn.tell`` or :class:`Deliver`, many with
``conn.publish`` (pub/sub, docs/apps.md)."""

from wscore.app import (App, Conn, ConnectionAddress, Deliver, EchoApp, Publish, listen, load_app, publish,
                        unlisten, worker_index)

__all__ = ["App", "Conn", "ConnectionAddress", "Deliver", "EchoApp", "Publish", "listen", "load_app", "publish",
           "unlisten", "worker_index"]
