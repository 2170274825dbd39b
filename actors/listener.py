"""ListenerActor: owns the listening socket; accepts and hands sockets over.

For every accepted TCP connection it asks one of the ``connections``
partitions (dynamic supervisors under its sibling ``connections``, taken in
turn) to start a connection subtree, and keeps the socket
until that subtree's ConnectionActor collects it over an abstract AF_UNIX
socket with SCM_RIGHTS.  The listener then closes its copy: from that moment
the ConnectionActor's process is the only one holding the client socket (the
listener never forks, so no other process ever had it).

A partition at its share of the connection limit answers
``("error", "max_children")``; the listener then tries the next one, and when
every partition has refused it answers the client ``503 Service Unavailable``
itself.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from thespian.actors import WakeupMessage, WatchMessage

from actors.connection_supervisor import ConnectionSupervisor
from supervisors import SUPERVISOR, TEMPORARY, ChildRef, ChildSpec, SupervisedActor, faults
from supervisors.messages import Reply, StartChild, WhichChildren, _Request
from wsup.config import ServerConfig
from wsup.handoff import give_socket
from wsup.handshake import http_response

ACCEPT_BATCH = 64
PENDING_TTL = 10.0          # an accepted socket nobody collected is closed after this


@dataclass
class ListenerInfo(_Request):
    """-> (host, port) actually bound."""


class ListenerActor(SupervisedActor):
    def init(self, config: ServerConfig) -> None:
        self.config = config
        self.lsock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET,
                                   socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((config.host, config.port))
        self.lsock.listen(config.backlog)
        self.lsock.setblocking(False)
        self.handoff = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.handoff.bind("\0" + config.handoff_name)
        self.handoff.listen(128)
        self.handoff.setblocking(False)
        self.host, self.port = self.lsock.getsockname()[:2]
        self.pending: dict[str, tuple[socket.socket, tuple, float]] = {}
        # request ref -> (connection id, spec, partitions that refused it)
        self.starting: dict[int, tuple[str, ChildSpec, int]] = {}
        self.partitions: list[Any] = []
        self._turn = 0
        self._refs = 1000
        # Our sibling, the connections supervisor, started before us
        # (rest_for_one order); ask our supervisor where it is, then it
        # where its partitions are.
        self.send(self.supervisor, WhichChildren(ref=1))
        self.wakeupAfter(PENDING_TTL, payload="sweep")

    def watched_fds(self) -> list[int]:
        fds = [self.handoff.fileno()]
        if self.partitions:
            fds.append(self.lsock.fileno())
        return fds

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, WatchMessage):
            if self.handoff.fileno() in message.ready:
                self._serve_handoffs()
            if self.lsock.fileno() in message.ready:
                self._accept()
        elif isinstance(message, Reply):
            if message.ref == 1:
                self._found_siblings(message.result)
            elif message.ref == 2:
                self._found_partitions(message.result)
            else:
                self._start_result(self.starting.pop(message.ref, None), message.result)
        elif isinstance(message, ListenerInfo):
            self.send(sender, Reply(message.ref, (self.host, self.port)))
        elif isinstance(message, WakeupMessage) and message.payload == "sweep":
            self._sweep()
            self.wakeupAfter(PENDING_TTL, payload="sweep")

    def _found_siblings(self, children: list) -> None:
        for child_id, ref, _type, _mods in children:
            if child_id == "connections" and isinstance(ref, ChildRef):
                self.send(ref.address, WhichChildren(ref=2))
                return
        raise RuntimeError("no running 'connections' supervisor beside the listener")

    def _found_partitions(self, children: list) -> None:
        self.partitions = [ref.address for _id, ref, _type, _mods in children if isinstance(ref, ChildRef)]
        if len(self.partitions) != len(children) or not self.partitions:
            raise RuntimeError(f"'connections' has partitions not running: {children!r}")
        self.log.info("server.listening", host=self.host, port=self.port, partitions=len(self.partitions))

    def _accept(self) -> None:
        if faults.ACTIVE:
            faults.point("listener.accept")
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep listening
                self.log.error("server.accept_failed", error=str(exc))
                return
            connection_id = secrets.token_hex(6)
            self.pending[connection_id] = (sock, peer, time.monotonic())
            self.log.info("connection.accepted", connection_id=connection_id, peer=f"{peer[0]}:{peer[1]}")
            spec = ChildSpec("connection", (ConnectionSupervisor, (self.config, connection_id, peer[:2])),
                             restart=TEMPORARY, type=SUPERVISOR,
                             log_context={"connection_id": connection_id})
            self._start(connection_id, spec, 0)

    def _start(self, connection_id: str, spec: ChildSpec, refused: int) -> None:
        """Ask the next partition in turn to start the connection's subtree."""
        self._refs += 1
        self.starting[self._refs] = (connection_id, spec, refused)
        partition = self.partitions[self._turn % len(self.partitions)]
        self._turn += 1
        self.send(partition, StartChild(ref=self._refs, spec_or_args=spec))

    def _start_result(self, started: tuple[str, ChildSpec, int] | None, result: Any) -> None:
        if started is None or (isinstance(result, tuple) and result[0] == "ok"):
            return  # the ConnectionActor collects its socket itself
        connection_id, spec, refused = started
        if result == ("error", "max_children") and refused + 1 < len(self.partitions) \
                and connection_id in self.pending:
            self._start(connection_id, spec, refused + 1)   # this partition is full: the next one
            return
        entry = self.pending.pop(connection_id, None)
        if entry is None:
            return
        sock = entry[0]
        if result == ("error", "max_children"):
            status, reason = 503, "the server is at its connection limit"
        else:
            status, reason = 500, "the connection could not be started"
        self._reply_and_close(sock, status, reason)
        self.log.warning("connection.rejected", connection_id=connection_id, status=status, reason=reason,
                         error=repr(result) if status == 500 else None)

    @staticmethod
    def _reply_and_close(sock: socket.socket, status: int, reason: str) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(0.5)
            sock.sendall(http_response(status, reason))
        except OSError:
            pass
        finally:
            sock.close()

    def _serve_handoffs(self) -> None:
        while True:
            try:
                chan, _ = self.handoff.accept()
            except (BlockingIOError, InterruptedError):
                return
            with chan:
                chan.settimeout(1.0)  # a same-user peer that sends nothing must not stall us
                try:
                    self._handoff(chan)
                except OSError as exc:
                    self.log.warning("server.handoff_failed", error=str(exc))

    def _handoff(self, chan: socket.socket) -> None:
        def take(connection_id: str) -> socket.socket | None:
            entry = self.pending.pop(connection_id, None)
            return entry[0] if entry else None
        give_socket(chan, take)

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection_id, (sock, _peer, t) in list(self.pending.items()):
            if now - t > PENDING_TTL and all(s[0] != connection_id for s in self.starting.values()):
                del self.pending[connection_id]
                sock.close()
                self.log.warning("connection.rejected", connection_id=connection_id, status=None,
                                 reason="never collected by a connection actor")

    def terminate(self, reason: Any) -> None:
        self.lsock.close()
        self.handoff.close()
        for connection_id, (sock, _peer, _t) in self.pending.items():
            self._reply_and_close(sock, 503, "the server is stopping")
            self.log.warning("connection.rejected", connection_id=connection_id, status=503,
                             reason="the server is stopping")
        self.pending.clear()


