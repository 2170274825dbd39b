"""ConnectionActor: owns one client socket; a thin shell around its event loop.

It collects its socket from the listener (SCM_RIGHTS, see wsup.handoff) and
runs the connection (wsup.connection: handshake, protocol, application) in a
thread of its own with blocking I/O — Thespian's loop would cost more per
frame than the rest of an echo.  This, the actor's Thespian thread, keeps the
lifecycle: it relays the supervisor's shutdown request and other actors'
messages into the loop, and does for the loop what only it may do: send
Thespian messages (start the CompressionActor), stop, crash.  It never
creates actors, so its socket exists in its process only.
"""

from __future__ import annotations

import threading
from typing import Any

from thespian.actors import WatchMessage

from actors.compression import CompressionActor
from supervisors import TRANSIENT, ChildSpec, SupervisedActor, faults
from supervisors.mailbox import Mailbox
from supervisors.messages import Reply, StartChild
from wsup.app import load_app
from wsup.config import ServerConfig
from wsup.connection import Conn, Connection  # noqa: F401  (Conn: the app's view)
from wsup.handoff import collect_socket

EXIT_JOIN_TIMEOUT = 2.0


class ConnectionActor(SupervisedActor):
    def init(self, config: ServerConfig, connection_id: str, peer: Any) -> None:
        self.config = config
        self.connection_id = connection_id
        sock = collect_socket(config.handoff_name, connection_id)
        self.mailbox = Mailbox()   # the connection's loop -> Thespian thread
        self.connection = Connection(config, connection_id, tuple(peer), sock, load_app(config.app),
                                     self.log, self.myAddress, self.mailbox)
        self.thread = threading.Thread(target=self.connection.run, name=f"ws-{connection_id}", daemon=True)
        self.thread.start()

    def watched_fds(self) -> list[int]:
        return [self.mailbox.fileno()]

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, WatchMessage):
            if self.mailbox.fileno() in message.ready:
                self._drain()
        elif isinstance(message, Reply) and sender == self.supervisor:
            self.connection.post(("compression", message.result))
        else:
            self.connection.post(("info", message))

    def _drain(self) -> None:
        for item in self.mailbox.drain():   # the loop's crash re-raises here: let it crash
            kind = item[0]
            if kind == "stop":
                self.stop(item[1])
            elif kind == "start_compression":
                _, name, params = item
                cfg = self.config
                spec = ChildSpec("compression", (CompressionActor, (self.connection_id, name, params,
                                                                    cfg.compression, cfg.max_message_size)),
                                 restart=TRANSIENT, shutdown=int(cfg.compression_shutdown_timeout * 1000),
                                 log_context={"connection_id": self.connection_id})
                self.send(self.supervisor, StartChild(ref=1, spec_or_args=spec))

    # -- lifecycle -----------------------------------------------------------------

    def _on_shutdown_request(self) -> None:
        self.connection.post(("shutdown",))

    def terminate(self, reason: Any) -> None:
        """The actor ends (normal stop, crash or forced shutdown)."""
        if faults.ACTIVE:
            faults.point("connection.terminate")
        self.connection.post(("exit",))
        self.thread.join(timeout=EXIT_JOIN_TIMEOUT)
        self.connection.final_close(reason)
        self.mailbox.close()
