"""One WebSocket connection's event loop: socket, handshake, protocol, app.

It runs in its own thread of the ConnectionActor (actors/connection.py), with
blocking I/O on the one socket it owns: Thespian's loop costs ~0.2-0.3 ms per
watched-socket event, more than the rest of an echo.  The actor's Thespian
thread keeps the lifecycle (start, shutdown request, exit) and relays
Thespian messages into the loop (``post``); the loop hands back what only
the Thespian thread may do (send a Thespian message, stop, crash) through
``to_actor``.  The application's callbacks all run in this one thread.

Every way a connection ends goes through :meth:`finish` (closing handshake
done, failure, timeout, TCP drop) or :meth:`final_close` (crash, forced stop,
called once the loop has exited), and is logged once as ``connection.closed``.
"""

from __future__ import annotations

import heapq
import itertools
import select
import socket
import time
from typing import Any

from supervisors import NORMAL, SHUTDOWN, Error, faults
from supervisors.mailbox import Mailbox
from wsup.config import ServerConfig
from wsup.deflate import DeflateParams, negotiate
from wsup.handshake import ServerHandshake
from wsup.protocol import (ABNORMAL_CLOSURE, CLOSED, CLOSING, GOING_AWAY, INTERNAL_ERROR, OPEN,
                           BinaryMessage, Pong, ProtocolFailure, ServerProtocol, TextMessage)
from wsup.zchannel import CompressionClient, channel_name

READ_SIZE = 65536


class Conn:
    """What the application sees of its connection."""

    def __init__(self, connection: "Connection") -> None:
        self._c = connection
        self.connection_id = connection.connection_id
        self.peer = connection.peer
        self.path = ""
        self.query = ""
        self.headers: dict[str, str] = {}
        self.subprotocol: str | None = None

    @property
    def address(self) -> Any:
        """The connection's Thespian address, for other actors to message it."""
        return self._c.address

    def send(self, data: str | bytes) -> bool:
        """Send a text (str) or binary (bytes) message; False if the
        connection is no longer open."""
        return self._c.app_send(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._c.proto is not None:
            self._c.proto.close(code, reason)

    def ping(self, payload: bytes = b"") -> None:
        if self._c.proto is not None:
            self._c.proto.send_ping(payload)

    def send_after(self, seconds: float, message: Any) -> None:
        """Deliver ``message`` to the application's handle_info after ``seconds``
        (Erlang's send_after to self): timers, periodic pushes."""
        self._c.timer(seconds, ("app", message))


class Connection:
    def __init__(self, config: ServerConfig, connection_id: str, peer: tuple, sock: socket.socket,
                 app_cls: type, log: Any, address: Any, to_actor: Mailbox) -> None:
        self.config = config
        self.connection_id = connection_id
        self.peer = peer
        self.sock: socket.socket | None = sock
        self.app_cls = app_cls
        self.log = log
        self.address = address
        self.to_actor = to_actor
        self.handshake: ServerHandshake | None = ServerHandshake(
            origins=config.origins, subprotocols=config.subprotocols,
            select_subprotocol=getattr(app_cls, "select_subprotocol", None),
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
        self.done = False
        self._close_timer = False
        self._pending_open: Any = None
        self._closed_logged = False
        self._app_terminated = False
        self._timers: list = []
        self._seq = itertools.count()
        self._inbox = Mailbox()   # Thespian thread -> the loop
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timer(config.handshake_timeout, "handshake")

    # -- the actor's side (any thread) ------------------------------------------

    def post(self, item: tuple) -> None:
        """From the Thespian thread: ("info", msg), ("compression", result),
        ("shutdown",) or ("exit",)."""
        self._inbox.put(item)

    # -- the loop (its own thread) ------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:   # the app or we failed: the actor crashes
            self.done = True
            self.to_actor.crash(exc)

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._inbox.fileno(), select.POLLIN)
        reading = None   # the socket's fd while we read it
        while not self.done:
            want = self.sock.fileno() if self.sock is not None and self._pending_open is None else None
            if want != reading:
                if reading is not None:
                    poller.unregister(reading)
                if want is not None:
                    poller.register(want, select.POLLIN)
                reading = want
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic()) * 1000
            for fd, _ev in poller.poll(timeout):
                if fd == self._inbox.fileno():
                    self._drain_inbox()
                elif fd == reading and self.sock is not None:
                    self._on_readable()
                if self.done:
                    return
            self._run_timers()

    def _drain_inbox(self) -> None:
        for item in self._inbox.drain():
            if self.done:
                return
            kind = item[0]
            if kind == "info":
                self._app_info(item[1])
            elif kind == "compression":
                self._compression_started(item[1])
            elif kind == "shutdown":
                self._on_shutdown_request()
            elif kind == "exit":
                self.done = True

    def timer(self, delay: float, what: Any) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), what))

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now and not self.done:
            _due, _seq, what = heapq.heappop(self._timers)
            if isinstance(what, tuple) and what[0] == "app":
                self._app_info(what[1])
            else:
                self._on_timer(what, now)

    # -- input ---------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset by peer: same as EOF for us
        self._feed(data)

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
                self.finish()
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
                # Received while open: delivered even if a close frame that
                # came in the same read has closed the connection since.
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
            self.finish()
        elif proto.state == CLOSED:
            self.finish()
        elif proto.state == CLOSING and not self._close_timer:
            self._close_timer = True
            self.timer(self.config.close_timeout, "close")

    def _app_info(self, message: Any) -> None:
        if self.proto is not None and self.proto.state == OPEN and self.app is not None:
            if faults.ACTIVE:
                faults.point("app.handle_info")
            self.app.handle_info(self.conn, message)
            self._after_app()

    # -- opening ---------------------------------------------------------------------

    def _negotiate(self, offered: str) -> str | None:
        self.deflate = negotiate(offered, self.config.compression)
        return self.deflate.response if self.deflate else None

    def _open(self, result: Any) -> None:
        cfg = self.config
        if self.deflate is not None:
            name = channel_name(cfg.handoff_name, self.connection_id)
            # The actor asks our supervisor for a CompressionActor beside us.
            self.to_actor.put(("start_compression", name, self.deflate))
            self.log.info("compression.negotiated", **self.deflate.agreed, response=self.deflate.response,
                          deflate_window_bits=self.deflate.deflate_window_bits,
                          inflate_window_bits=self.deflate.inflate_window_bits)
            self.compression = CompressionClient(name, self.deflate, cfg.compression.threshold,
                                                 on_event=lambda event, **kw: self.log.info(event, **kw))
        self.proto = ServerProtocol(max_message_size=cfg.max_message_size,
                                    max_frame_size=cfg.max_frame_size, compression=self.compression)
        conn = self.conn
        conn.path, conn.query, conn.headers = result.path, result.query, result.headers
        conn.subprotocol = result.subprotocol
        self.log.info("connection.upgraded", path=result.path, subprotocol=result.subprotocol,
                      extensions=result.extensions)
        if cfg.idle_timeout:
            self.timer(cfg.idle_timeout, "idle")
        if cfg.ping_interval:
            self.timer(cfg.ping_interval, "ping")
        if self.compression is not None:
            self._pending_open = result   # frames wait in the socket until it is up
            return
        self._activate(result)

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
            self.proto.fail(INTERNAL_ERROR, "compression unavailable")
            self._after_app()

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

    def _reject(self, response: bytes, status: int, reason: str, path: str) -> None:
        if response:
            self._write(response)
        self._close_socket()
        self.log.warning("connection.rejected", status=status, reason=reason, path=path)
        self.done = True
        self.to_actor.put(("stop", NORMAL))

    # -- timers ---------------------------------------------------------------------

    def _on_timer(self, what: Any, now: float) -> None:
        cfg = self.config
        if what == "handshake":
            if self.handshake is not None:
                self._reject(b"", 408, "handshake timeout", "")
            return
        proto = self.proto
        if proto is None or proto.state == CLOSED:
            return
        if what in ("close", "shutdown"):
            if proto.state == CLOSING:  # the client never answered our close frame
                proto.abort(proto.close_code or ABNORMAL_CLOSURE, "close handshake timed out")
                self.app_reason = "timeout" if what == "close" else self.app_reason
                self.finish()
            elif what == "shutdown":
                proto.abort(GOING_AWAY, "server shutting down")
                self.finish()
        elif what == "idle":
            idle = now - self.last_rx
            if idle >= cfg.idle_timeout:
                if proto.state == OPEN:
                    self.app_reason = "timeout"
                    proto.close(GOING_AWAY, "idle timeout")
                    self._after_app()
            else:
                self.timer(cfg.idle_timeout - idle, "idle")
        elif what == "ping" and proto.state == OPEN:
            if self.ping_sent is None:
                self.ping_sent = now
                proto.send_ping(b"wsup")
                self.timer(cfg.ping_timeout, "pong")
                self._after_app()
            self.timer(cfg.ping_interval, "ping")
        elif what == "pong" and self.ping_sent is not None and now - self.ping_sent >= cfg.ping_timeout * 0.99:
            proto.abort(ABNORMAL_CLOSURE, "keepalive ping timed out")
            self.app_reason = "timeout"
            self.finish()

    # -- shutdown -----------------------------------------------------------------------

    def _on_shutdown_request(self) -> None:
        """Graceful: send 1001, wait for the client's close frame up to
        --shutdown-timeout, then exit with reason shutdown."""
        self.stop_reason = SHUTDOWN
        self.app_reason = "shutdown"
        proto = self.proto
        if proto is None or proto.state == CLOSED or self._pending_open is not None:
            if proto is not None and proto.state == OPEN:
                proto.close(GOING_AWAY, "server shutting down")
            self.finish()
            return
        if proto.state == OPEN:
            proto.close(GOING_AWAY, "server shutting down")
            self._close_timer = True  # the shutdown timer below bounds the wait
            if not self._flush():
                self.finish()
                return
        self.timer(self.config.shutdown_timeout, "shutdown")

    # -- the application's side ----------------------------------------------------------

    def app_send(self, data: str | bytes) -> bool:
        if self.proto is None or self.proto.state != OPEN:
            return False
        self.proto.send_message(data)
        return True

    # -- I/O and the end -------------------------------------------------------------------

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

    def finish(self) -> None:
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
        self.done = True
        self._terminate_app(self.app_reason)
        self.to_actor.put(("stop", self.stop_reason))

    def final_close(self, reason: Any) -> None:
        """The actor is ending (any reason); the loop has exited.  Close what
        is still open: 1011 after a crash, 1001 otherwise."""
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
            self._inbox.close()
