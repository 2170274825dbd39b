"""ConnectionActor (in-process): owns one client socket, as a port of its worker's loop.

A thin shell: the connection's logic is wscore.session.Session; this actor is
its host.  Bytes come as PortData from the loop, timers are Thespian
wakeups, compression goes to the CompressionActor beside it (started by the
ConnectionSupervisor on our request once permessage-deflate is agreed, and
restarted by it after a crash or kill: the Session then rebuilds its state)
as in-process messages, and every end of the connection goes through the
Session (finish, or final_close from terminate).  Killed in-process (no
terminate), the loop closes its port through the death hook.
"""

from __future__ import annotations

from typing import Any

from thespian.actors import WakeupMessage

from actors.compression import CompressionActor
from actors.messages import (CompressionLost, CompressionStarted, Deflate, Deflated, Inflate, Inflated,
                                    InflateFailed, Open, Release)
from supervisors import TRANSIENT, ChildSpec, SupervisedActor, faults
from supervisors.messages import Reply, StartChild
from wscore import ioloop
from wscore.app import ConnectionAddress, load_app, worker_index
from wscore.config import ServerConfig
from wscore.ioloop import PortData
from wscore.metrics import METRICS
from wscore.pubsub import Published
from wscore.session import Session

_TIMER = "__session_timer__"


class ConnectionActor(SupervisedActor):
    def init(self, config: ServerConfig, connection_id: str, peer: Any) -> None:
        self.config = config
        self.connection_id = connection_id
        self.loop = loop = ioloop.current()
        self.port = loop.claim(connection_id, self.myAddress)
        loop.register(connection_id, self.myAddress)     # found by id (Deliver, conn.tell)
        self.compression: Any = None
        self.session = Session(config, connection_id, tuple(peer), load_app(config.app), self,
                               address=ConnectionAddress(loop.worker_address, connection_id),
                               upgraded=self.port.upgrade)
        self.port.upgrade = None

    # -- the session's host ----------------------------------------------------

    def write(self, data: bytes) -> bool:
        METRICS.wire_bytes_out += len(data)
        return self.port.write(data)

    def close_transport(self) -> None:
        self.port.close()

    def call_later(self, delay: float, what: Any) -> None:
        self.wakeupAfter(delay, payload=(_TIMER, what))

    def start_compression(self, params: Any) -> None:
        cfg = self.config
        spec = ChildSpec("compression", (CompressionActor, (self.connection_id, params, cfg.compression,
                                                            cfg.max_message_size, self.myAddress)),
                         restart=TRANSIENT, shutdown=int(cfg.compression_shutdown_timeout * 1000),
                         log_context={"connection_id": self.connection_id})
        self.send(self.supervisor, StartChild(ref=1, spec_or_args=spec))

    # Between a CompressionActor's death and its successor's start, requests
    # are dropped: the Session replays what is unanswered (wscore.inflate_history).

    def open_compression(self, zdict: bytes) -> None:
        if self.compression is not None:
            self.send(self.compression, Open(zdict))

    def inflate(self, chunk: bytes, final: bool) -> None:
        if self.compression is not None:
            self.send(self.compression, Inflate(chunk, final))

    def deflate(self, seq: int, data: bytes) -> None:
        if self.compression is not None:
            self.send(self.compression, Deflate(seq, data))

    def release_compression(self, cause: str) -> None:
        if self.compression is not None:
            self.send(self.compression, Release(cause))

    def tell(self, to: Any, message: Any) -> None:
        """To another connection: in-process if it is in this worker, else
        through the process tier (the WorkerActor routes it)."""
        loop = self.loop
        if isinstance(to, ConnectionAddress):
            cid, worker = to.connection_id, to.worker
            local = worker == loop.worker_address
        else:
            cid, worker = str(to), None
            local = worker_index(cid) in (loop.worker_index, None)
        if local:
            address = loop.whereis(cid)
            if address is not None:
                self.send(address, message)
        elif loop.route is not None:
            loop.route(cid, worker, message)

    # -- pub/sub: this worker's table (wscore.pubsub), by our id; dropped when we die ----

    def subscribe(self, topic: str) -> bool:
        return self.loop.pubsub.subscribe(topic, self.connection_id, self.myAddress)

    def unsubscribe(self, topic: str) -> bool:
        return self.loop.pubsub.unsubscribe(topic, self.connection_id)

    def publish(self, topic: str, message: Any, exclude_self: bool) -> int:
        cid = self.connection_id
        return self.loop.pubsub.publish(topic, message, exclude=cid if exclude_self else None, publisher=cid)

    def topics(self) -> set[str]:
        return self.loop.pubsub.topics_of(self.connection_id)

    # stop(reason) and log: SupervisedActor's

    # -- messages ----------------------------------------------------------------

    def handle_message(self, message: Any, sender: Any) -> None:
        s = self.session
        kind = message.__class__     # the three of every compressed message first, by class
        if kind is PortData:         # (these classes are the loop's and ours: never subclassed)
            METRICS.wire_bytes_in += len(message.data)
            s.data_received(message.data)
        elif kind is Inflated:
            s.inflated(message.data)
        elif kind is Deflated:
            s.deflated(message.seq, message.payload)
        elif kind is Published:
            s.published(message)
        elif isinstance(message, WakeupMessage) and isinstance(message.payload, tuple) \
                and message.payload[:1] == (_TIMER,):
            s.timer(message.payload[1])
        elif isinstance(message, InflateFailed):
            s.inflate_failed(message.code, message.reason)
        elif isinstance(message, CompressionStarted):
            self.compression = sender
            s.compression_started()
        elif isinstance(message, CompressionLost) and sender == self.supervisor:
            self.compression = None
            s.compression_lost()
        elif isinstance(message, Reply) and sender == self.supervisor:
            result = message.result   # ok: CompressionStarted came first
            if not (isinstance(result, tuple) and result[0] == "ok"):
                s.compression_failed(repr(result))
        else:
            s.info(message)

    def _sup_forget(self) -> None:
        session = self.__dict__.get("session")
        if session is not None:
            session.forget()
        super()._sup_forget()

    def _on_shutdown_request(self) -> None:
        self.session.shutdown()

    def terminate(self, reason: Any) -> None:
        if faults.ACTIVE:
            faults.point("connection.terminate")
        if not self.session.done:
            self.session.final_close(reason)
        self.port.close()
