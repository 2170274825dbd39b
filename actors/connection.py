"""ConnectionActor: owns one client socket and runs one WebSocket connection.

It collects its socket from the listener (SCM_RIGHTS, see wsup.handoff),
watches it with ThespianWatch, runs the handshake (wsup.handshake) and the
protocol (wsup.protocol) and calls the application.  It never creates actors,
so its socket exists in its process only.

Every way a connection ends goes through :meth:`_finish` (closing handshake
done, failure, timeout, TCP drop) or the ``terminate`` hook (crash, forced
stop), and is logged once as ``connection.closed``.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from thespian.actors import WakeupMessage, WatchMessage

from actors.compression import CompressionActor
from supervisors import NORMAL, SHUTDOWN, TRANSIENT, ChildSpec, Error, SupervisedActor, faults
from supervisors.messages import Reply, StartChild
from wsup.app import load_app
from wsup.config import ServerConfig
from wsup.deflate import DeflateParams, negotiate
from wsup.handoff import collect_socket
from wsup.handshake import ServerHandshake
from wsup.zchannel import CompressionClient, channel_name
from wsup.protocol import (ABNORMAL_CLOSURE, ProtocolFailure, CLOSED, CLOSING, GOING_AWAY, INTERNAL_ERROR, OPEN,
                           BinaryMessage, Pong, ServerProtocol, TextMessage)

READ_SIZE = 65536
READ_BUDGET = 256 * 1024     # bytes read per wakeup before Thespian messages get a turn
_APP = "__app__"


class Conn:
    """What the application sees of its connection."""

    def __init__(self, actor: "ConnectionActor") -> None:
        self._actor = actor
        self.connection_id = actor.connection_id
        self.peer = actor.peer
        self.path = ""
        self.query = ""
        self.headers: dict[str, str] = {}
        self.subprotocol: str | None = None

    @property
    def address(self) -> Any:
        """The connection's Thespian address, for other actors to message it."""
        return self._actor.myAddress

    def send(self, data: str | bytes) -> bool:
        """Send a text (str) or binary (bytes) message; False if the
        connection is no longer open."""
        return self._actor._app_send(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._actor._app_close(code, reason)

    def ping(self, payload: bytes = b"") -> None:
        self._actor._app_ping(payload)

    def send_after(self, seconds: float, message: Any) -> None:
        """Deliver ``message`` to the application's handle_info after ``seconds``
        (Erlang's send_after to self): timers, periodic pushes."""
        self._actor.wakeupAfter(seconds, payload=(_APP, message))


class ConnectionActor(SupervisedActor):
    def init(self, config: ServerConfig, connection_id: str, peer: Any) -> None:
        self.config = config
        self.connection_id = connection_id
        self.peer = tuple(peer)
        self.sock: socket.socket | None = collect_socket(config.handoff_name, connection_id)
        self.sock.setblocking(False)
        if self.sock.family in (socket.AF_INET, socket.AF_INET6):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.app_cls = load_app(config.app)
        self.handshake: ServerHandshake | None = ServerHandshake(
            origins=config.origins, subprotocols=config.subprotocols,
            select_subprotocol=getattr(self.app_cls, "select_subprotocol", None),
            negotiate_extensions=self._negotiate if config.compression.enabled else None)
        self.deflate: DeflateParams | None = None
        self.compression: CompressionClient | None = None
        self.proto: ServerProtocol | None = None
        self.app: Any = None
        self.conn = Conn(self)
        self.stop_reason: Any = NORMAL
        self.app_reason: Any = "normal"
        self.last_rx = time.monotonic()
        self.ping_sent: float | None = None
        self._close_timer = False
        self._pending_open: Any = None
        self._closed_logged = False
        self._app_terminated = False
        self.wakeupAfter(config.handshake_timeout, payload="handshake")

    def watched_fds(self) -> list[int]:
        if self.sock is None or self._pending_open is not None:
            return []  # while the CompressionActor starts, frames wait in the socket
        return [self.sock.fileno()]

    # -- events ---------------------------------------------------------------

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, WatchMessage):
            if self.sock is not None:
                self._on_readable()
        elif isinstance(message, WakeupMessage):
            payload = message.payload
            if isinstance(payload, tuple) and payload[:1] == (_APP,):
                self._app_info(payload[1])
            else:
                self._on_timer(payload)
        elif isinstance(message, Reply) and sender == self.supervisor:
            self._compression_started(message.result)
        else:
            self._app_info(message)

    def _app_info(self, message: Any) -> None:
        if self.proto is not None and self.proto.state == OPEN and self.app is not None:
            if faults.ACTIVE:
                faults.point("app.handle_info")
            self.app.handle_info(self.conn, message)
            self._after_app()

    def _on_readable(self) -> None:
        budget = READ_BUDGET
        while budget > 0 and self.sock is not None:
            try:
                data = self.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""  # reset by peer: same as EOF for us
            budget -= len(data)
            self._feed(data)
            if not data or self._pending_open is not None:
                return

    def _feed(self, data: bytes) -> None:
        if faults.ACTIVE:
            faults.point("connection.handle_in")
        if self.handshake is not None:
            result = self.handshake.receive_data(data)
            if result is None:
                return
            self.handshake = None
            if not result.accepted:
                self._reject(result.response, result.status, result.reason, result.path)
                return
            if not self._write(result.response):
                self._finish()
                return
            self._open(result)
            return
        self.last_rx = time.monotonic()
        self.proto.receive_data(data)
        self._process()

    def _process(self) -> None:
        proto = self.proto
        for event in proto.events_received():
            if isinstance(event, (TextMessage, BinaryMessage)):
                if proto.state == OPEN:
                    if faults.ACTIVE:
                        faults.point("app.handle_in")
                    self.app.handle_in(self.conn, event.data)
            elif isinstance(event, Pong):
                self.ping_sent = None
        self._after_app()

    def _after_app(self) -> None:
        """Write what is due; end or arm the close timer as the state says."""
        proto = self.proto
        if not self._flush():
            self._finish()
        elif proto.state == CLOSED:
            self._finish()
        elif proto.state == CLOSING and not self._close_timer:
            self._close_timer = True
            self.wakeupAfter(self.config.close_timeout, payload="close")

    def _negotiate(self, offered: str) -> str | None:
        self.deflate = negotiate(offered, self.config.compression)
        return self.deflate.response if self.deflate else None

    def _start_compression(self) -> CompressionClient:
        """Ask our supervisor for a CompressionActor beside us; the client
        connects to it (waiting for it to come up) on first use."""
        cfg = self.config
        name = channel_name(cfg.handoff_name, self.connection_id)
        spec = ChildSpec("compression", (CompressionActor, (self.connection_id, name, self.deflate,
                                                            cfg.compression, cfg.max_message_size)),
                         restart=TRANSIENT, shutdown=2000, log_context={"connection_id": self.connection_id})
        self.send(self.supervisor, StartChild(ref=1, spec_or_args=spec))
        self.log.info("compression.negotiated", **self.deflate.agreed, response=self.deflate.response,
                      deflate_window_bits=self.deflate.deflate_window_bits,
                      inflate_window_bits=self.deflate.inflate_window_bits)
        return CompressionClient(name, self.deflate, cfg.compression.threshold,
                                 on_event=lambda event, **kw: self.log.info(event, **kw))

    def _compression_started(self, result: Any) -> None:
        pending, self._pending_open = self._pending_open, None
        if pending is None:
            return
        if isinstance(result, tuple) and result[0] == "ok":
            try:
                self.compression.connect()
            except ProtocolFailure as exc:
                result = exc.reason
            else:
                self._activate(pending)
                return
        self.log.error("compression.start_failed", result=repr(result))
        if self.proto is not None and self.proto.state == OPEN:
            self.proto.fail(1011, "compression unavailable")
            self._after_app()

    def _open(self, result: Any) -> None:
        cfg = self.config
        if self.deflate is not None:
            self.compression = self._start_compression()
        self.proto = ServerProtocol(max_message_size=cfg.max_message_size,
                                    max_frame_size=cfg.max_frame_size, compression=self.compression)
        conn = self.conn
        conn.path, conn.query, conn.headers = result.path, result.query, result.headers
        conn.subprotocol = result.subprotocol
        self.log.info("connection.upgraded", path=result.path, subprotocol=result.subprotocol,
                      extensions=result.extensions)
        if cfg.idle_timeout:
            self.wakeupAfter(cfg.idle_timeout, payload="idle")
        if cfg.ping_interval:
            self.wakeupAfter(cfg.ping_interval, payload="ping")
        if self.compression is not None:
            # Thespian sends our StartChild only when this handler returns:
            # wait for the CompressionActor before reading frames.
            self._pending_open = result
            return
        self._activate(result)

    def _activate(self, result: Any) -> None:
        self.app = self.app_cls()
        if faults.ACTIVE:
            faults.point("app.init")
        self.app.init(self.conn)
        self._after_app()
        if result.trailing and self.proto.state == OPEN:
            self.last_rx = time.monotonic()
            self.proto.receive_data(result.trailing)
            self._process()
        elif self.sock is not None and self.proto.state == OPEN:
            self._on_readable()  # frames may have arrived while we waited

    def _reject(self, response: bytes, status: int, reason: str, path: str) -> None:
        self._write(response)
        self._close_socket()
        self.log.warning("connection.rejected", status=status, reason=reason, path=path)
        self.stop(NORMAL)

    # -- timers ---------------------------------------------------------------

    def _on_timer(self, what: Any) -> None:
        now = time.monotonic()
        cfg = self.config
        if what == "handshake":
            if self.handshake is not None:
                self._reject(b"", 408, "handshake timeout", "")
            return
        proto = self.proto
        if proto is None or proto.state == CLOSED:
            return
        if what == "close" or what == "shutdown":
            if proto.state == CLOSING:  # the client never answered our close frame
                proto.abort(proto.close_code or ABNORMAL_CLOSURE, "close handshake timed out")
                self.app_reason = "timeout"
                self._finish()
            elif what == "shutdown":
                proto.abort(GOING_AWAY, "server shutting down")
                self._finish()
        elif what == "idle":
            idle = now - self.last_rx
            if idle >= cfg.idle_timeout:
                if proto.state == OPEN:
                    self.app_reason = "timeout"
                    proto.close(GOING_AWAY, "idle timeout")
                    self._after_app()
            else:
                self.wakeupAfter(cfg.idle_timeout - idle, payload="idle")
        elif what == "ping" and proto.state == OPEN:
            if self.ping_sent is None:
                self.ping_sent = now
                proto.send_ping(b"wsup")
                self.wakeupAfter(cfg.ping_timeout, payload="pong")
                self._after_app()
            self.wakeupAfter(cfg.ping_interval, payload="ping")
        elif what == "pong" and self.ping_sent is not None and now - self.ping_sent >= cfg.ping_timeout * 0.99:
            proto.abort(ABNORMAL_CLOSURE, "keepalive ping timed out")
            self.app_reason = "timeout"
            self._finish()

    # -- shutdown -------------------------------------------------------------

    def _on_shutdown_request(self) -> None:
        """Graceful: send 1001, wait for the client's close frame up to
        --shutdown-timeout, then exit with reason shutdown."""
        self.stop_reason = SHUTDOWN
        self.app_reason = "shutdown"
        proto = self.proto
        if proto is None or proto.state == CLOSED:
            self._finish()
            return
        if proto.state == OPEN:
            proto.close(GOING_AWAY, "server shutting down")
            self._close_timer = True  # the shutdown timer below bounds the wait
            if not self._flush():
                self._finish()
                return
        self.wakeupAfter(self.config.shutdown_timeout, payload="shutdown")

    # -- the application's side -----------------------------------------------

    def _app_send(self, data: str | bytes) -> bool:
        if self.proto is None or self.proto.state != OPEN:
            return False
        self.proto.send_message(data)
        return True

    def _app_close(self, code: int, reason: str) -> None:
        if self.proto is not None:
            self.proto.close(code, reason)

    def _app_ping(self, payload: bytes) -> None:
        if self.proto is not None:
            self.proto.send_ping(payload)

    # -- I/O and the end --------------------------------------------------------

    def _flush(self) -> bool:
        if self.proto is None:
            return True
        data = self.proto.data_to_send()
        return self._write(data) if data else True

    def _write(self, data: bytes) -> bool:
        """Write all of ``data``; a client that does not read for
        --send-timeout, or a broken connection, ends the connection."""
        sock = self.sock
        if sock is None:
            return False
        view = memoryview(data)
        deadline = None
        while view:
            try:
                view = view[sock.send(view):]
            except (BlockingIOError, InterruptedError):
                now = time.monotonic()
                deadline = deadline or now + self.config.send_timeout
                poller = select.poll()
                poller.register(sock, select.POLLOUT)
                if now >= deadline or not poller.poll((deadline - now) * 1000):
                    if self.proto is not None:
                        self.proto.abort(ABNORMAL_CLOSURE, "send timed out (client not reading)")
                    self.app_reason = "timeout"
                    return False
            except OSError:
                if self.proto is not None:
                    self.proto.abort(ABNORMAL_CLOSURE, "connection lost while sending")
                self.app_reason = "remote"
                return False
        return True

    def _close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _log_closed(self) -> None:
        if self._closed_logged or self.proto is None:
            return
        self._closed_logged = True
        p = self.proto
        self.log.info("connection.closed", code=p.close_code, reason=p.close_reason,
                      initiator=p.close_initiator, clean=p.close_clean)

    def _terminate_app(self, reason: Any) -> None:
        if self.app is not None and not self._app_terminated:
            self._app_terminated = True
            if faults.ACTIVE:
                faults.point("app.terminate")
            self.app.terminate(self.conn, reason)

    def _finish(self) -> None:
        """The connection is over: flush, close the socket, log, stop."""
        if faults.ACTIVE:
            faults.point("connection.close")
        proto = self.proto
        if proto is not None:
            if proto.state == CLOSED and proto.close_code == ABNORMAL_CLOSURE and proto.close_initiator == "client":
                self.app_reason = "remote"
            if proto.state != CLOSED:
                proto.abort(ABNORMAL_CLOSURE, "connection ended")
            self._flush()
        self._close_socket()
        if self.compression is not None:
            # The closing handshake is over: the contexts can go now.  (The
            # CompressionActor's terminate will ask again: a no-op there.)
            self.compression.release("close")
            self.compression.close()
        self._log_closed()
        self._terminate_app(self.app_reason)
        self.stop(self.stop_reason)

    def terminate(self, reason: Any) -> None:
        """The actor ends (normal stop, crash or forced shutdown)."""
        if faults.ACTIVE:
            faults.point("connection.terminate")
        if self.sock is not None:
            if self.proto is not None and self.proto.state == OPEN:
                if isinstance(reason, Error):
                    self.proto.fail(INTERNAL_ERROR, "internal error")
                else:
                    self.proto.fail(GOING_AWAY, "server shutting down")
                self._flush()
            elif self.proto is not None and self.proto.state == CLOSING:
                self.proto.abort(self.proto.close_code, "connection ended")
            self._close_socket()
            self._log_closed()
        if self.compression is not None:
            self.compression.close()
        try:
            self._terminate_app(reason if isinstance(reason, Error) else self.app_reason)
        finally:
            self._close_socket()
