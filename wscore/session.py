"""One WebSocket connection as an event-driven state machine (no I/O, no threads).

The handshake, the protocol and the application, driven by events — bytes
received, a timer due, a message for the application, compression answers —
with every effect asked of a *host* (the ConnectionActor on a worker's I/O
loop): write bytes, close the transport, arm a timer, ask the
CompressionActor to inflate or deflate, stop.  So the same connection logic
runs wherever the host puts it, and tests drive it without sockets.

Compression is asynchronous: the contexts are the CompressionActor's, so a
compressed chunk goes out as ``host.inflate(chunk, final)`` and parsing waits
for :meth:`Session.inflated`; an outgoing message over the threshold goes out
as ``host.deflate(seq, data)`` and its frame waits, in order, for
:meth:`Session.deflated`.  Output keeps its order: while a deflate is
pending, everything after it (other messages, pongs, the close frame) queues
behind it.

The CompressionActor is started with the first message to inflate or
deflate (an idle connection holds no zlib context); it may die (crash or
kill) and be restarted at any point:
:meth:`compression_lost` then :meth:`compression_started` again.  The Session
primes the new inflate context with the last window and replays the message
in progress (wscore.inflate_history), and sends its pending deflates again; the
client sees nothing.  If no successor starts within RECOVERY_TIMEOUT, 1011.

Every way a connection ends goes through :meth:`finish` (closing handshake
done, failure, timeout, TCP drop) or :meth:`final_close` (crash, forced
stop), and is logged once as ``connection.closed``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from supervisors import NORMAL, SHUTDOWN, Error, faults
from wscore.app import App
from wscore.config import ServerConfig
from wscore.deflate import DeflateParams, negotiate
from wscore.frames import BINARY, TEXT
from wscore.handshake import ServerHandshake
from wscore.inflate_history import HistoryMismatch, InflateHistory
from wscore.metrics import METRICS
from wscore.protocol import (ABNORMAL_CLOSURE, CLOSED, CLOSING, GOING_AWAY, INTERNAL_ERROR, OPEN,
                           BinaryMessage, InflateNeeded, Pong, ServerProtocol, TextMessage, frame)


RECOVERY_TIMEOUT = 5.0


class RemoteCompression:
    """What the protocol sees of compression whose contexts are elsewhere."""
    rsv1_allowed = True
    asynchronous = True

    def message_done(self) -> None:
        pass

    def compress(self, data: bytes) -> None:
        return None   # under the threshold: sent as it is (Session deflates the rest)


class SessionConn:
    """What the application sees of its connection."""

    def __init__(self, session: "Session") -> None:
        self._s = session
        self.send = session.app_send    # what send() below does, one call fewer per message
        self.connection_id = session.connection_id
        self.peer = session.peer
        self.path = ""
        self.query = ""
        self.headers: dict[str, str] = {}
        self.subprotocol: str | None = None

    @property
    def address(self) -> Any:
        return self._s.address

    def send(self, data: str | bytes) -> bool:
        return self._s.app_send(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._s.proto is not None:
            self._s.proto.close(code, reason)

    def ping(self, payload: bytes = b"") -> None:
        if self._s.proto is not None:
            self._s.proto.send_ping(payload)

    def send_after(self, seconds: float, message: Any) -> None:
        self._s.host.call_later(seconds, ("app", message))

    def tell(self, to: Any, message: Any) -> None:
        """``message`` to another connection's handle_info (an id or a
        ConnectionAddress; any worker).  Dropped if it is gone."""
        self._s.host.tell(to, message)

    def subscribe(self, topic: str) -> bool:
        """Messages published to ``topic`` (by any connection, worker or
        node) come to this connection until it unsubscribes or ends
        (``App.handle_publish``; by default sent to the client).  False if it
        was subscribed already."""
        return self._s.host.subscribe(topic)

    def unsubscribe(self, topic: str) -> bool:
        return self._s.host.unsubscribe(topic)

    def publish(self, topic: str, message: str | bytes, exclude_self: bool = False) -> int:
        """``message`` (str: text, bytes: binary) to every subscriber of
        ``topic`` — this connection too, unless ``exclude_self``.  Returns
        the number of subscribers reached in this worker at once (those of
        other workers and nodes get it in their next batch)."""
        return self._s.host.publish(topic, message, exclude_self)

    @property
    def topics(self) -> set[str]:
        """The topics this connection is subscribed to."""
        return self._s.host.topics()


class Session:
    def __init__(self, config: ServerConfig, connection_id: str, peer: tuple, app_cls: type,
                 host: Any, address: Any = None, upgraded: tuple | None = None) -> None:
        """``upgraded``: (Handshake, DeflateParams | None) when the upgrade
        request was already read and accepted (by the worker's loop)."""
        self.config = config
        self.connection_id = connection_id
        self.peer = peer
        self.app_cls = app_cls
        self.host = host
        self.log = host.log
        self.address = address
        self.handshake: ServerHandshake | None = None if upgraded is not None else ServerHandshake(
            origins=config.origins, subprotocols=config.subprotocols,
            select_subprotocol=getattr(app_cls, "select_subprotocol", None),
            negotiate_extensions=self._negotiate if config.compression.enabled else None)
        self.deflate: DeflateParams | None = None
        self.proto: ServerProtocol | None = None
        self.app: Any = None
        self.conn = SessionConn(self)
        self.stop_reason: Any = NORMAL
        self.app_reason: Any = "normal"
        self.last_rx = time.monotonic()
        self.ping_sent: float | None = None
        self.done = False
        self.transport_closed = False
        self._close_timer = False
        # compression: None (not agreed) | idle (no CompressionActor yet) | starting | running | lost
        self._z: str | None = None
        self._closed_logged = False
        self._app_terminated = False
        self._out: deque = deque()       # [bytes | [seq, frame-or-None, text, payload]] in wire order
        self._deflate_seq = 0
        self.history: InflateHistory | None = None
        self.compression_lost_at: float | None = None   # while no CompressionActor serves us
        self.recoveries = 0
        if upgraded is not None:
            result, self.deflate = upgraded
            self._write_now(result.response)
            self._open(result)
        else:
            host.call_later(config.handshake_timeout, "handshake")

    # -- input ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        if faults.ACTIVE:
            faults.point("connection.handle_in")
        if self.handshake is not None:
            result = self.handshake.receive_data(data)
            if result is None:
                if not data:
                    self._reject(b"", 400, "connection closed during the handshake", "")
                return
            self.handshake = None
            if not result.accepted:
                self._reject(result.response, result.status, result.reason, result.path)
                return
            self._write_now(result.response)
            self._open(result)
            return
        self.last_rx = time.monotonic()
        self.proto.receive_data(data)
        self._process()

    def _process(self) -> None:
        proto = self.proto
        while True:
            events = proto.events_received()
            if not events:
                break
            for event in events:
                if event.__class__ is InflateNeeded:
                    self.history.sent(event.chunk, event.final)
                    if self._compression_running():
                        self.host.inflate(event.chunk, event.final)
                elif isinstance(event, (TextMessage, BinaryMessage)):
                    METRICS.messages_in += 1
                    METRICS.payload_bytes_in += event.size
                    if faults.ACTIVE:
                        faults.point("app.handle_in")
                    self.app.handle_in(self.conn, event.data)
                elif isinstance(event, Pong):
                    self.ping_sent = None
        self._after_app()

    def inflated(self, data: bytes) -> None:
        if self.done or self.proto is None or not self.proto.awaiting_inflate:
            return
        try:
            delivered = self.history.answer(data)
        except HistoryMismatch as exc:
            self.inflate_failed(INTERNAL_ERROR, str(exc))
            return
        if delivered is None:
            return      # a replayed chunk's answer: delivered before the restart
        self.proto.inflated(delivered)
        self._process()

    def inflate_failed(self, code: int, reason: str) -> None:
        if self.done or self.proto is None or not self.proto.awaiting_inflate:
            return
        self.history.failed()
        self.proto.inflate_failed(code, reason)
        self._after_app()

    def info(self, message: Any) -> None:
        if self.proto is not None and self.proto.state == OPEN and self.app is not None and not self.done:
            if faults.ACTIVE:
                faults.point("app.handle_info")
            self.app.handle_info(self.conn, message)
            self._after_app()

    def published(self, published: Any) -> None:
        """A message published to a topic this connection subscribed to."""
        if self.proto is not None and self.proto.state == OPEN and self.app is not None and not self.done:
            if self._default_publish:
                self.app_send(published.message)
            else:
                self.app.handle_publish(self.conn, published.topic, published.message)
            self._after_app()

    # -- opening ----------------------------------------------------------------

    def _negotiate(self, offered: str) -> str | None:
        self.deflate = negotiate(offered, self.config.compression)
        return self.deflate.response if self.deflate else None

    def _open(self, result: Any) -> None:
        cfg = self.config
        compression = None
        agreed: dict = {}
        if self.deflate is not None:
            # one record for the upgrade and what permessage-deflate agreed (it was two)
            agreed = dict(self.deflate.agreed, deflate_window_bits=self.deflate.deflate_window_bits,
                          inflate_window_bits=self.deflate.inflate_window_bits)
            compression = RemoteCompression()
            self.history = InflateHistory(self.deflate.inflate_window_bits,
                                          not self.deflate.client_no_context_takeover)
        self.proto = ServerProtocol(max_message_size=cfg.max_message_size,
                                    max_frame_size=cfg.max_frame_size, compression=compression)
        conn = self.conn
        conn.path, conn.query, conn.headers = result.path, result.query, result.headers
        conn.subprotocol = result.subprotocol
        self.log.info("connection.upgraded", path=result.path, subprotocol=result.subprotocol,
                      extensions=result.extensions, **agreed)
        if cfg.idle_timeout:
            self.host.call_later(cfg.idle_timeout, "idle")
        if cfg.ping_interval:
            self.host.call_later(cfg.ping_interval, "ping")
        if compression is not None:
            self._z = "idle"     # the CompressionActor starts with the first compressed message
        self._activate(result)

    def _compression_running(self) -> bool:
        """Whether requests can go to a CompressionActor now.  The first one
        is started lazily, by the first message to inflate or deflate: an idle
        connection holds no zlib context.  Until it (or a successor) runs,
        requests wait in the history and the output queue: compression_started
        sends them."""
        if self._z == "running":
            return True
        if self._z == "idle":
            self._z = "starting"
            self.host.start_compression(self.deflate)
        return False

    def compression_started(self) -> None:
        """A CompressionActor started for us: the first, or a successor."""
        if self.done or self._z not in ("starting", "lost"):
            return
        recovering = self._z == "lost"
        self._z = "running"
        self.compression_lost_at = None
        zdict, chunks = self.history.replay()
        self.host.open_compression(zdict)
        for chunk, final in chunks:
            self.host.inflate(chunk, final)
        resent = 0
        for item in self._out:
            if isinstance(item, list) and item[1] is None:
                self.host.deflate(item[0], item[3])
                resent += 1
        if recovering:
            self.recoveries += 1
            METRICS.compression_recoveries += 1
            self.log.info("compression.recovered", replayed_chunks=len(chunks), window_bytes=len(zdict),
                          resent_deflates=resent)

    def compression_failed(self, why: str) -> None:
        """The CompressionActor could not be started: 1011."""
        if self.done or self._z is None:
            return
        self.log.error("compression.start_failed", result=why)
        self._compression_gone()

    def compression_lost(self, now: float | None = None) -> None:
        """The CompressionActor died; its supervisor restarts it.  Until the
        successor starts, requests are not answered (the host drops them);
        compression_started replays them.  No successor in RECOVERY_TIMEOUT: 1011."""
        if self.done or self.proto is None or self._z not in ("starting", "running"):
            return
        self._z = "lost"
        self.compression_lost_at = time.monotonic() if now is None else now
        self.host.call_later(RECOVERY_TIMEOUT, "compression")

    def _compression_gone(self) -> None:
        self._out = deque(i for i in self._out if not isinstance(i, list))
        if self.proto.state == OPEN:
            self.proto.fail(INTERNAL_ERROR, "compression lost")
        else:
            self.proto.abort(INTERNAL_ERROR, "compression lost")
        self._after_app()

    def _activate(self, result: Any) -> None:
        self.app = self.app_cls()
        handler = getattr(self.app_cls, "handle_publish", None)
        self._default_publish = handler is None or handler is App.handle_publish
        if faults.ACTIVE:
            faults.point("app.init")
        self.app.init(self.conn)
        self._after_app()
        if result.trailing and self.proto.state == OPEN and not self.done:
            self.last_rx = time.monotonic()
            self.proto.receive_data(result.trailing)
            self._process()

    def _reject(self, response: bytes, status: int, reason: str, path: str) -> None:
        if response:
            self._write_now(response)
        self._close_transport()
        self.log.warning("connection.rejected", status=status, reason=reason, path=path)
        METRICS.rejected_with(status)
        self.done = True
        self.host.stop(NORMAL)

    # -- timers -----------------------------------------------------------------

    def timer(self, what: Any, now: float | None = None) -> None:
        if self.done:
            return
        if isinstance(what, tuple) and what[0] == "app":
            self.info(what[1])
            return
        now = time.monotonic() if now is None else now
        cfg = self.config
        if what == "handshake":
            if self.handshake is not None:
                self._reject(b"", 408, "handshake timeout", "")
            return
        proto = self.proto
        if proto is None or proto.state == CLOSED:
            return
        if what == "compression":
            lost = self.compression_lost_at
            if lost is not None and now - lost >= RECOVERY_TIMEOUT * 0.99:
                self.log.error("compression.recovery_failed", waited=round(now - lost, 3))
                self._compression_gone()
            return
        if what in ("close", "shutdown"):
            if proto.state == CLOSING:
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
                self.host.call_later(cfg.idle_timeout - idle, "idle")
        elif what == "ping" and proto.state == OPEN:
            if self.ping_sent is None:
                self.ping_sent = now
                proto.send_ping(b"wsup")
                self.host.call_later(cfg.ping_timeout, "pong")
                self._after_app()
            self.host.call_later(cfg.ping_interval, "ping")
        elif what == "pong" and self.ping_sent is not None and now - self.ping_sent >= cfg.ping_timeout * 0.99:
            proto.abort(ABNORMAL_CLOSURE, "keepalive ping timed out")
            self.app_reason = "timeout"
            self.finish()

    # -- shutdown -----------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful: send 1001, wait for the client's close frame up to
        --shutdown-timeout, then stop with reason shutdown."""
        if self.done:
            return
        self.stop_reason = SHUTDOWN
        self.app_reason = "shutdown"
        proto = self.proto
        if proto is None or proto.state == CLOSED:
            if proto is not None and proto.state == OPEN:
                proto.close(GOING_AWAY, "server shutting down")
            self.finish()
            return
        if proto.state == OPEN:
            proto.close(GOING_AWAY, "server shutting down")
            self._close_timer = True
            self._after_app()
            if self.done:
                return
        self.host.call_later(self.config.shutdown_timeout, "shutdown")

    # -- output -------------------------------------------------------------------

    def app_send(self, data: str | bytes) -> bool:
        proto = self.proto
        if proto is None or proto.state != OPEN or self.done:
            return False
        text = isinstance(data, str)
        payload = data.encode("utf-8") if text else bytes(data)
        m = METRICS
        m.messages_out += 1
        m.payload_bytes_out += len(payload)
        if self.deflate is not None and len(payload) >= self.config.compression.threshold:
            self._take_proto_output()
            self._deflate_seq += 1
            self._out.append([self._deflate_seq, None, text, payload])
            if self._compression_running():
                self.host.deflate(self._deflate_seq, payload)
            return True
        proto.send_message(data)
        return True

    def deflated(self, seq: int, payload: bytes | None) -> None:
        """The CompressionActor's answer to deflate(seq): the compressed
        payload, or None to send the message uncompressed."""
        for item in self._out:
            if isinstance(item, list) and item[0] == seq:
                opcode = TEXT if item[2] else BINARY
                item[1] = (frame(opcode, payload, rsv1=True) if payload is not None
                           else frame(opcode, item[3]))
                item[3] = b""
                break
        self._after_app()

    def _take_proto_output(self) -> None:
        if self.proto is not None:
            data = self.proto.data_to_send()
            if data:
                self._out.append(data)

    def _flush(self) -> bool:
        """Write what is ready, in order; False if the transport broke."""
        self._take_proto_output()
        out = self._out
        while out:
            item = out[0]
            if isinstance(item, list):
                if item[1] is None:
                    return True     # a deflate is pending: the rest waits behind it
                item = item[1]
            out.popleft()
            if not self._write_now(item):
                return False
        return True

    @property
    def deflates_pending(self) -> bool:
        return any(isinstance(i, list) and i[1] is None for i in self._out)

    def _after_app(self) -> None:
        if self.done:
            return
        proto = self.proto
        if not self._flush():
            self.finish()
        elif proto.state == CLOSED and not self.deflates_pending:
            self.finish()
        elif proto.state == CLOSING and not self._close_timer:
            self._close_timer = True
            self.host.call_later(self.config.close_timeout, "close")

    def _write_now(self, data: bytes) -> bool:
        if self.transport_closed:
            return False
        if not self.host.write(data):
            if self.proto is not None:
                self.proto.abort(ABNORMAL_CLOSURE, "connection lost while sending")
            self.app_reason = "remote"
            return False
        return True

    def _close_transport(self) -> None:
        if not self.transport_closed:
            self.transport_closed = True
            self.host.close_transport()

    # -- the end --------------------------------------------------------------------

    def _log_closed(self) -> None:
        if self._closed_logged or self.proto is None:
            return
        self._closed_logged = True
        p = self.proto
        self.log.info("connection.closed", code=p.close_code, reason=p.close_reason,
                      initiator=p.close_initiator, clean=p.close_clean)
        METRICS.connection_closed(p.close_code, p.close_initiator, p.close_reason)

    def _terminate_app(self, reason: Any) -> None:
        if self.app is not None and not self._app_terminated:
            self._app_terminated = True
            if faults.ACTIVE:
                faults.point("app.terminate")
            self.app.terminate(self.conn, reason)

    def finish(self) -> None:
        """The connection is over: flush, close the transport, log, stop."""
        if self.done:
            return
        if faults.ACTIVE:
            faults.point("connection.close")
        self.done = True
        proto = self.proto
        if proto is not None:
            if proto.state == CLOSED and proto.close_code == ABNORMAL_CLOSURE and proto.close_initiator == "client":
                self.app_reason = "remote"
            if proto.state != CLOSED:
                proto.abort(ABNORMAL_CLOSURE, "connection ended")
            self._flush()
        self._close_transport()
        if self.deflate is not None:
            self.host.release_compression("close")
        self._log_closed()
        self._terminate_app(self.app_reason)
        self.host.stop(self.stop_reason)

    def forget(self) -> None:
        """The host is gone: break the cycles (this Session and its ``conn``, the app
        that keeps ``conn``) so they are freed by reference counting.  ``conn`` stays
        usable by an app that kept it: its sends answer False."""
        self.done = True
        conn = self.conn
        if conn is not None:
            conn.__dict__.pop("send", None)     # the bound app_send (SessionConn.send remains)
        self.conn = self.app = self.host = None     # type: ignore[assignment]

    def final_close(self, reason: Any) -> None:
        """The host is ending (any reason) without finish(): 1011 after a
        crash, 1001 otherwise, for what is still open."""
        self.done = True
        if not self.transport_closed:
            proto = self.proto
            if proto is not None and proto.state == OPEN:
                proto.fail(INTERNAL_ERROR if isinstance(reason, Error) else GOING_AWAY,
                           "internal error" if isinstance(reason, Error) else "server shutting down")
                self._out.clear()       # pending deflates will never come back
                self._take_proto_output()
                for item in list(self._out):
                    self._write_now(item)
            elif proto is not None and proto.state == CLOSING:
                proto.abort(proto.close_code, "connection ended")
            self._close_transport()
            self._log_closed()
        self._terminate_app(reason if isinstance(reason, Error) else self.app_reason)
