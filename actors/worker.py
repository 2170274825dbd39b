"""WorkerActor: one worker process of the process tier, hosting connections in-process.

It is a process-tier actor (multiprocTCPBase, supervised by `workers`) that
owns, in a thread of its own, a WorkerLoop (wscore.ioloop): a selector, its
own SO_REUSEPORT listening socket on the server's port (the kernel spreads
new connections over the workers; no handoff, no fork after accepting) and a
private in-process actor system whose tree is

    Application -> connections (simple_one_for_one, max_children = this worker's share)
                   -> connection-<id> (ConnectionSupervisor) -> ConnectionActor [+ CompressionActor]

The worker's ledger (wscore.ledger.worker_ledger) records every compression
context; the tier's death hook releases, as ``owner_died``, the contexts of
any in-process actor killed without terminate.

This, the actor's Thespian thread, keeps the lifecycle: a ShutdownRequest
becomes an ordered stop of the in-process tree (1001 to every client); when
that tree is gone (or gave up: restart intensity) the worker exits (or
crashes, and its supervisor restarts it).  A crash of the loop thread is a
crash of the worker.

Each worker also listens on a control socket (abstract AF_UNIX, named in its
``worker.listening`` record, same user only): newline-delimited JSON requests
``{"op": "kill", "kind": ..., "connection_id": ..., "limit": ...}`` and
``{"op": "info"}``, answered in the loop thread — how ``wsup chaos`` kills
in-process actors from outside the server.

Addressing: connection ids are ``<worker index>-<random>``, and a
connection's ``conn.address`` is ``ConnectionAddress(this actor's address,
id)``.  ``Deliver(id, message)`` sent to a worker (by any actor of the
process tier, or ``{"op": "send"}`` on the control socket) reaches the
connection's handle_info: in-process if it is here, else forwarded to the
worker its id names (its address from the `workers` supervisor's
which_children, cached for a second).  ``conn.tell`` from a connection in
another worker comes the same way.
"""

from __future__ import annotations

import gc
import itertools
from collections import deque
import json
import random
import struct
from dataclasses import dataclass
import os
import socket
import ssl
import threading
import time
from typing import Any

from thespian.actors import WatchMessage

from actors.connection_supervisor import ConnectionSupervisor
from actors.tier_messages import ClusterStats, PublishBatch
from supervisors import (SHUTDOWN, SIMPLE_ONE_FOR_ONE, SUPERVISOR, TEMPORARY, ChildSpec, SupervisedActor,
                         SupFlags, supervisor_spec)
from supervisors import events as sup_events
from supervisors import faults
from supervisors import log as _log
from supervisors.application import Application, AwaitExit, StopApplication
from supervisors.mailbox import Mailbox
from supervisors.messages import Init, InitAck, Reply, StartChild, WhichChildren, _Request
from wscore.ids import token_hex
from wscore.config import ServerConfig
from wscore.app import Deliver, Publish, load_app, worker_index
from wscore.deflate import negotiate
from wscore.gc_policy import FreezeSurvivors
from wscore.handshake import ServerHandshake, http_response
from wscore.ioloop import WorkerLoop
from wscore.ledger import worker_ledger
from wscore.metrics import METRICS


@dataclass
class KillInProcess(_Request):
    """Kill in-process actors of this worker (Erlang's exit(Pid, kill)): every
    actor of class ``kind`` (ConnectionActor, CompressionActor,
    ConnectionSupervisor, or Supervisor for ``connections``), of connection
    ``connection_id`` if given, at most ``limit``.  Answered with the actor
    ids killed.  Fault injection and chaos."""
    kind: str = ""
    connection_id: str | None = None
    limit: int | None = None


@dataclass
class WorkerInfo(_Request):
    """-> {"pid", "connections", "actors"}"""


class _Pending:
    """A connection whose upgrade request has not been read yet."""
    __slots__ = ("connection_id", "peer", "handshake", "deflate", "timer", "t0")

    def __init__(self, connection_id: str, peer: list) -> None:
        self.t0 = time.monotonic()
        self.connection_id = connection_id
        self.peer = peer
        self.handshake: Any = None
        self.deflate: Any = None
        self.timer: Any = None


def listening_socket(config: ServerConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((config.host, config.port))
    sock.listen(config.backlog)
    return sock


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """--certfile/--keyfile: TLS 1.2+, the certificate chain loaded once per worker."""
    if not config.certfile:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.certfile, config.keyfile)
    return ctx


def control_name(config: ServerConfig, index: int) -> str:
    """The abstract AF_UNIX name of worker ``index``'s control socket."""
    return f"{config.name}-worker-{index}"


def control_socket(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen(16)
    return sock


def _peer_uid(sock: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return uid


class WorkerActor(SupervisedActor):
    def init(self, config: ServerConfig, index: int, max_connections: int) -> None:
        if faults.ACTIVE:
            faults.point("worker.init", worker=index)
        self.config = config
        self.index = index
        self.mailbox = Mailbox()      # loop thread -> this thread
        self.loop = WorkerLoop().make_current()
        self.loop.worker_index = index
        self.loop.worker_address = self.myAddress
        self.loop.route = self._route_out
        self._siblings: dict[int, Any] = {}      # worker index -> its address (which_children)
        self._siblings_at = -1.0
        self._cluster: Any = None                  # this node's ClusterActor (--cluster-address)
        self._cluster_stats: dict | None = None    # its last ClusterStats (for the observer)
        self._siblings_ref: int | None = None
        self._routes: list[tuple[str, Any]] = []   # waiting for the siblings' addresses
        self._publish_wait: list = []              # publishes waiting for them too
        self.publish_batches_out = 0
        self.publish_batches_in = 0
        pubsub = self.loop.pubsub
        pubsub.forwarding = config.workers > 1 or config.cluster_address is not None
        pubsub.hand_over = lambda items: self.mailbox.put(("publish", items))
        pubsub.on_listener_failure = lambda topic, exc: self.log.error(
            "pubsub.listener_failed", topic=topic, error=f"{type(exc).__name__}: {exc}")
        ledger = worker_ledger()
        pid = os.getpid()
        METRICS.__init__()      # this worker's counts start here (a restarted worker: from zero)
        self._watchers: set[Any] = set()           # control ports that asked for events ("watch")
        self._events: deque = deque(maxlen=200)    # the last supervision events, for who asks
        self._stopping = False
        sup_events.add_handler(self._supervision_event)
        self.loop.tier.on_death(lambda actor_id, killed: ledger.owner_died(actor_id, pid))
        self.listen_sock = listening_socket(config)
        self.tls = tls_context(config)
        self._refs = itertools.count(1)
        self._starts: dict[int, tuple[str, socket.socket]] = {}
        self._stop_ref: int | None = None
        self._pending: dict[str, Any] = {}     # connection id -> its handshake, before any actor
        self._app_cls = load_app(config.app)
        worker_started = getattr(self._app_cls, "worker_started", None)
        if worker_started is not None:
            worker_started(index)      # e.g. wsup.app.listen(...): this worker's listeners
        self._exit_ref: int | None = None
        system = self.loop.system
        spec = supervisor_spec("connections", SupFlags(strategy=SIMPLE_ONE_FOR_ONE, intensity=10, period=5.0,
                                                       max_children=max_connections, name="connections"),
                               [ChildSpec("connection", (ConnectionSupervisor, ()), restart=TEMPORARY,
                                          type=SUPERVISOR)])
        self.app = system.createActor(Application)
        reply = system.ask(self.app, Init("application", (spec,), {}, _log.current(),
                                          f"worker-{index}", pid), 30)
        if not isinstance(reply, InitAck):
            raise RuntimeError(f"the in-process tree did not start: {reply!r}")
        self.connections = self._call(WhichChildren())[0][1].address
        self._exit_ref = self._send_request(self.app, AwaitExit())
        self.loop.after_each = self._after_turn
        self.gc_policy = FreezeSurvivors(config.gc_thaw_every).install()   # None: only counts
        self.loop.call_later(1.0, self._gc_tick)
        self.loop.listen(self.listen_sock, self._accept)
        self.control_name = control_name(config, index)
        self.loop.listen(control_socket(self.control_name), self._control_accept)
        self._control_buf: dict[Any, bytearray] = {}
        self.thread = threading.Thread(target=self._run_loop, name=f"worker-{index}-loop", daemon=True)
        self.thread.start()
        self.log.info("worker.listening", host=config.host, port=config.port, max_connections=max_connections,
                      control=self.control_name)

    # -- the in-process tree, from outside it (loop thread, or before it runs) ------

    def _send_request(self, target: Any, request: Any) -> int:
        request.ref = next(self._refs)
        self.loop.system.tell(target, request)
        return request.ref

    def _call(self, request: Any) -> Any:
        ref = self._send_request(self.app, request)
        while True:
            reply = self.loop.system.listen(0)
            if reply is None:
                raise RuntimeError("no answer from the in-process tree")
            if isinstance(reply, Reply) and reply.ref == ref:
                return reply.result

    def _replies(self) -> None:
        """Answers from the in-process tree (loop thread)."""
        system = self.loop.system
        while True:
            reply = system.listen(0)
            if reply is None:
                return
            if not isinstance(reply, Reply):
                continue
            start = self._starts.pop(reply.ref, None)
            if start is not None:
                self._started(start, reply.result)
            elif reply.ref in (self._stop_ref, self._exit_ref):
                self.loop.stop()
                result = reply.result
                self.mailbox.put(("tree_exited", bool(getattr(result, "requested", False)), result))

    def _after_turn(self) -> None:
        """After each turn of the loop: the tree's answers, and this turn's
        publishes for the other workers, as one mailbox item."""
        self._replies()
        if self.loop.pubsub.outbox:
            self.mailbox.put(("publish", self.loop.pubsub.take_outbox()))

    def _accept(self, client: socket.socket, peer: Any) -> None:
        """Before the upgrade a connection is a socket and an HTTP parser in
        this loop (a few KiB), not actors; their number is bounded."""
        if faults.ACTIVE:
            faults.point("worker.accept")
        cfg = self.config
        METRICS.accepted += 1
        if len(self._pending) >= cfg.max_pending_handshakes:
            self.log.warning("connection.rejected", status=None, reason="too many pending handshakes",
                             peer=f"{peer[0]}:{peer[1]}")
            METRICS.rejected_with(None)
            client.close()
            return
        connection_id = f"{self.index}-{token_hex(6)}"
        self.log.info("connection.accepted", connection_id=connection_id, peer=f"{peer[0]}:{peer[1]}")
        pending = _Pending(connection_id, list(peer[:2]))

        def negotiate_extensions(offered: str) -> str | None:
            pending.deflate = negotiate(offered, cfg.compression)
            return pending.deflate.response if pending.deflate else None

        pending.handshake = ServerHandshake(
            origins=cfg.origins, subprotocols=cfg.subprotocols,
            select_subprotocol=getattr(self._app_cls, "select_subprotocol", None),
            negotiate_extensions=negotiate_extensions if cfg.compression.enabled else None,
            http_get=getattr(self._app_cls, "http_get", None))
        port = self.loop.loop_port(client, lambda port, data: self._handshake_data(pending, port, data),
                                   tls=self.tls)
        pending.timer = self.loop.call_later(cfg.handshake_timeout, lambda: self._handshake_timeout(pending, port))
        self._pending[connection_id] = pending

    def _handshake_data(self, pending: "_Pending", port: Any, data: bytes) -> None:
        result = pending.handshake.receive_data(data)
        if result is None:
            return
        self._pending.pop(pending.connection_id, None)
        pending.timer[2] = None
        pending.handshake = None     # it holds negotiate_extensions, which holds pending: a cycle
        if result.status == 200:       # the application's page (App.http_get)
            port.write(result.response)
            port.close_when_flushed()
            self.log.info("http.served", connection_id=pending.connection_id, path=result.path)
            return
        if not result.accepted:
            port.write(result.response)
            port.close()
            self.log.warning("connection.rejected", connection_id=pending.connection_id, status=result.status,
                             reason=result.reason, path=result.path)
            METRICS.rejected_with(result.status)
            return
        METRICS.handshake_done(time.monotonic() - pending.t0)
        port.upgrade = (result, pending.deflate)
        self.loop.hold(pending.connection_id, port)
        ref = self._send_request(self.connections, StartChild(spec_or_args=(self.config, pending.connection_id,
                                                                             pending.peer)))
        self._starts[ref] = (pending.connection_id, port)

    def _handshake_timeout(self, pending: "_Pending", port: Any) -> None:
        if self._pending.pop(pending.connection_id, None) is not None:
            pending.handshake = None
            port.close()
            self.log.warning("connection.rejected", connection_id=pending.connection_id, status=408,
                             reason="handshake timeout", path="")
            METRICS.rejected_with(408)

    def _started(self, start: tuple[str, Any], result: Any) -> None:
        connection_id, _port = start
        if isinstance(result, tuple) and result[0] == "ok":
            return
        port = self.loop.drop_held(connection_id)
        if port is None:
            return
        status, why = (503, "server at its connection limit") if result == ("error", "max_children") \
            else (500, "could not start the connection")
        self.log.warning("connection.rejected", connection_id=connection_id, status=status, reason=why)
        METRICS.rejected_with(status)
        port.write(http_response(status, why))
        port.close()

    def _run_loop(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:   # the loop is this worker: its crash is ours
            self.mailbox.crash(exc)

    def _kill(self, req: KillInProcess, sender: Any) -> None:   # loop thread
        self.mailbox.put(("reply", sender, req.ref, self._kill_actors(req.kind, req.connection_id, req.limit)))

    def _kill_actors(self, kind: str, connection_id: str | None, limit: int | None,
                     rng: Any = None) -> list[str]:   # loop thread
        """Kill (untrappable, no terminate) in-process actors of class ``kind``;
        with ``rng``, at random among them.  The actor ids killed."""
        killed = []
        base = self.loop.system._systemBase
        refs = []
        for ref in list(base.actorRegistry.values()):
            inst = getattr(ref, "instance", None) if ref is not None else None
            if inst is None or type(inst).__name__ != kind or getattr(inst, "_sup_killed", False):
                continue
            if kind == "Supervisor" and getattr(inst, "name", None) != "connections":
                continue
            if connection_id is not None and \
                    getattr(inst, "_sup_log_context", {}).get("connection_id") != connection_id and \
                    getattr(inst, "connection_id", None) != connection_id:
                continue
            refs.append(ref)
        if rng is not None:
            rng.shuffle(refs)
        for ref in refs:
            if limit is not None and len(killed) >= limit:
                break
            actor_id = self.loop.tier.actor_id(ref.address)
            if self.loop.tier.kill_address(ref.address):
                killed.append(actor_id)
        self.log.info("worker.killed", kind=kind, connection_id=connection_id, actor_ids=killed)
        return killed

    def _info(self, req: WorkerInfo, sender: Any) -> None:   # loop thread
        self.mailbox.put(("reply", sender, req.ref, self._worker_info()))

    def _worker_info(self) -> dict:   # loop thread
        base = self.loop.system._systemBase
        live = [r.instance for r in base.actorRegistry.values() if r is not None and r.instance is not None]
        return {"pid": os.getpid(), "actors": len(live),
                "connections": sum(1 for i in live if type(i).__name__ == "ConnectionActor"),
                "open_contexts": len(worker_ledger().open_contexts()),
                "pending_handshakes": len(self._pending),
                "registry_entries": len(base.actorRegistry)}

    def _gc_info(self, collect: bool) -> dict:   # loop thread
        """The cycle collector's counts in this worker (after a full collection of
        everything, frozen objects too, if ``collect``): ``collected`` is every
        object it has freed since the worker started.  A closed connection should
        add nothing: its objects are freed by reference counting (see
        InProcessTier.died)."""
        if collect:
            self.gc_policy.collect_all()
        stats = gc.get_stats()
        return {"collections": [g["collections"] for g in stats], "collected": sum(g["collected"] for g in stats),
                "uncollectable": sum(g["uncollectable"] for g in stats), "tracked": len(gc.get_objects()),
                "frozen": gc.get_freeze_count(),
                "policy": {"thaw_every": self.gc_policy.thaw_every, "freezes": self.gc_policy.freezes,
                           "thaws": self.gc_policy.thaws, "full_collections": self.gc_policy.full_collections,
                           "longest_full_ms": round(self.gc_policy.longest_full * 1000, 1)}}

    def _gc_tick(self) -> None:   # loop thread
        self.gc_policy.tick()
        self.loop.call_later(1.0, self._gc_tick)

    # -- what observers see (loop thread) -------------------------------------------------

    def _supervision_event(self, event: str, supervisor: str, kind: str, child_id: Any, **fields: Any) -> None:
        METRICS.supervision_event(event, supervisor, kind, child_id, **fields)
        if event == "child.started":
            return      # every connection starts three: counted, not pushed
        record = {"event": event, "worker": self.index, "t": time.time(), "supervisor": supervisor,
                  "child_id": str(child_id), **{k: v for k, v in fields.items() if isinstance(v, (str, int))}}
        self._events.append(record)
        self._push(record)

    def _push(self, record: dict) -> None:
        if self._watchers:
            line = json.dumps(record).encode() + b"\n"
            for port in list(self._watchers):
                if port.closed:
                    self._watchers.discard(port)
                else:
                    port.write(line)

    def _stats(self) -> dict:
        ledger = worker_ledger()
        return {"worker": self.index, "pid": os.getpid(), "t": time.time(),
                "connections_open": len(self.loop._names), "pending_handshakes": len(self._pending),
                "contexts_open": len(ledger._open), "contexts_opened": ledger.opened_total,
                "contexts_released": sorted(ledger.released_by_cause.items()),
                "counters": METRICS.snapshot(), "pubsub": self._pubsub_stats(), "cluster": self._cluster_stats}

    def _pubsub_stats(self) -> dict:
        p = self.loop.pubsub
        return {"topics": p.topic_count, "subscriptions": p.subscriptions, "published": p.published,
                "delivered": p.delivered, "batches_out": self.publish_batches_out,
                "batches_in": self.publish_batches_in, "listener_failures": p.listener_failures}

    def _tree(self, limit: int) -> dict:
        """This worker's in-process tree: its connections (the newest ``limit``)."""
        names = self.loop._names
        ids = list(itertools.islice(reversed(names), max(0, limit)))
        return {"worker": self.index, "pid": os.getpid(), "connections_open": len(names),
                "pending_handshakes": len(self._pending), "stopping": self._stopping,
                "connections": [self._connection_summary(cid, names[cid]) for cid in ids]}

    def _connection_summary(self, connection_id: str, address: Any) -> dict:
        actor = self.loop.tier.instance(address)
        session = getattr(actor, "session", None)
        proto = getattr(session, "proto", None)
        return {"connection_id": connection_id,
                "state": proto.state if proto is not None else "starting",
                "compression": getattr(session, "_z", None) if session is not None else None,
                "recoveries": getattr(session, "recoveries", 0)}

    def _inspect(self, connection_id: str) -> dict:
        """One connection's subtree: its supervisor and actors, with their state."""
        address = self.loop.whereis(connection_id)
        actor = self.loop.tier.instance(address) if address is not None else None
        if actor is None:
            return {"connection_id": connection_id, "found": False}
        tier = self.loop.tier
        session = actor.session
        sup = tier.instance(actor.supervisor)
        out = {"connection_id": connection_id, "found": True, **self._connection_summary(connection_id, address),
               "peer": f"{session.peer[0]}:{session.peer[1]}" if session.peer else "",
               "path": getattr(session.conn, "path", "") if session.conn is not None else "",
               "deflate": session.deflate.response if session.deflate is not None else None,
               "pending_output": actor.port.pending_output,
               "supervisor": {"actor": "ConnectionSupervisor", "name": getattr(sup, "name", None),
                              "actor_id": tier.actor_id(actor.supervisor)}}
        children = []
        ledger = worker_ledger()
        for child in getattr(sup, "children", ()):
            inst = tier.instance(child.address) if child.alive else None
            entry = {"child_id": str(child.spec.id), "actor": child.spec.actor_class.__name__,
                     "restart": child.spec.restart, "actor_id": child.actor_id, "incarnation": child.incarnation,
                     "state": str(child.state) if inst is not None else "restarting"}
            if child.spec.id == "compression":
                entry["contexts_open"] = len(ledger.open_contexts(child.actor_id)) if child.actor_id else 0
                entry["restarts"] = session.recoveries
            children.append(entry)
        out["children"] = children
        return out

    # -- the control socket (loop thread) ------------------------------------------------

    def _control_accept(self, client: socket.socket, _peer: Any) -> None:
        if _peer_uid(client) != os.getuid():
            client.close()
            return
        port = self.loop.loop_port(client, self._control_data)
        self._control_buf[port] = bytearray()

    def _control_data(self, port: Any, data: bytes) -> None:
        buf = self._control_buf.get(port)
        if buf is None:
            return
        if not data:
            del self._control_buf[port]
            self._watchers.discard(port)
            port.close()
            return
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            port.write(json.dumps(self._control(line, port)).encode() + b"\n")

    def _control(self, line: bytes, port: Any = None) -> dict:
        try:
            req = json.loads(line)
            op = req["op"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "bad request: JSON with an op expected"}
        answer = self._control_op(op, req, port)
        if "ref" in req:
            answer["ref"] = req["ref"]
        return answer

    def _control_op(self, op: str, req: dict, port: Any) -> dict:
        if op == "stats":
            return {"ok": True, **self._stats()}
        if op == "tree":
            return {"ok": True, **self._tree(int(req.get("limit", 100)))}
        if op == "inspect":
            return {"ok": True, **self._inspect(str(req.get("connection_id")))}
        if op == "watch":     # supervision events pushed on this socket from now on
            self._watchers.add(port)
            return {"ok": True, "events": list(self._events), "stopping": self._stopping, **self._stats()}
        if op == "info":
            return {"ok": True, **self._worker_info()}
        if op == "gc":
            return {"ok": True, **self._gc_info(bool(req.get("collect")))}
        if op == "send":
            cid = req.get("connection_id")
            if not isinstance(cid, str):
                return {"ok": False, "error": "send needs a connection_id"}
            self._route_out(cid, None, req.get("message"))
            return {"ok": True}
        if op == "publish":
            message = req.get("message")
            if req.get("binary") and isinstance(message, str):
                message = message.encode()
            try:
                return {"ok": True, "delivered_here": self.loop.pubsub.publish(req.get("topic"), message)}
            except (TypeError, ValueError) as exc:
                return {"ok": False, "error": str(exc)}
        if op == "kill":
            kind = req.get("kind")
            if kind not in ("ConnectionActor", "CompressionActor", "ConnectionSupervisor", "Supervisor"):
                return {"ok": False, "error": f"unknown kind {kind!r}"}
            rng = random.Random(req["seed"]) if "seed" in req else None
            return {"ok": True, "killed": self._kill_actors(kind, req.get("connection_id"), req.get("limit"), rng)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _begin_stop(self) -> None:   # loop thread
        self._stopping = True
        self._push({"event": "worker.stopping", "worker": self.index, "t": time.time()})
        self.loop.stop_listening()
        self._stop_ref = self._send_request(self.app, StopApplication())
        self._replies()

    # -- addressing --------------------------------------------------------------------

    def _publish_from_outside(self, topic: Any, message: Any) -> None:   # loop thread
        try:
            self.loop.pubsub.publish(topic, message)
        except (TypeError, ValueError) as exc:
            self.log.warning("pubsub.refused", error=str(exc))

    def _deliver_here(self, connection_id: str, message: Any) -> None:   # loop thread
        address = self.loop.whereis(connection_id)
        if address is not None:
            self.loop.system.tell(address, message)

    def _route_out(self, connection_id: str, worker: Any, message: Any) -> None:   # loop thread
        if worker is None and worker_index(connection_id) in (self.index, None):
            self._deliver_here(connection_id, message)
        else:
            self.mailbox.put(("route", connection_id, worker, message))

    def _route(self, connection_id: str, worker: Any, message: Any) -> None:   # Thespian thread
        if worker is not None:
            self.send(worker, Deliver(connection_id, message))
            return
        index = worker_index(connection_id)
        if index is None or index == self.index:
            self.loop.post(lambda: self._deliver_here(connection_id, message))
            return
        if index in self._siblings and time.monotonic() - self._siblings_at < 1.0:
            self.send(self._siblings[index], Deliver(connection_id, message))
            return
        self._routes.append((connection_id, message))
        self._ask_siblings()

    def _forward(self, items: list) -> None:   # Thespian thread
        """This worker's publishes to every other worker: one batch each."""
        fresh = time.monotonic() - self._siblings_at < 1.0
        if not fresh:
            self._ask_siblings()
        if self._siblings_at < 0:
            self._publish_wait.extend(items)      # no addresses yet
            return
        batch = PublishBatch(items, self.myAddress)
        for index, address in self._siblings.items():
            if index != self.index:
                self.publish_batches_out += 1
                self.send(address, batch)
        if self._cluster is not None:      # to the other nodes, through this node's hub
            self.publish_batches_out += 1
            self.send(self._cluster, batch)

    def _ask_siblings(self) -> None:
        if self._siblings_ref is None:
            self._siblings_ref = next(self._refs)
            self.send(self.supervisor, WhichChildren(ref=self._siblings_ref))

    def _got_siblings(self, children: list) -> None:   # Thespian thread
        self._siblings = {}
        self._cluster = None
        for cid, ref, _t, _m in children:
            if isinstance(cid, str) and cid.startswith("worker-") and hasattr(ref, "address"):
                self._siblings[int(cid[7:])] = ref.address
            elif cid == "cluster" and hasattr(ref, "address"):
                self._cluster = ref.address
        self._siblings_at = time.monotonic()
        routes, self._routes = self._routes, []
        for cid, message in routes:
            address = self._siblings.get(worker_index(cid))
            if address is not None:      # else: no such worker now, dropped (as in Erlang)
                self.send(address, Deliver(cid, message))
        if self._publish_wait:
            items, self._publish_wait = self._publish_wait, []
            self._forward(items)

    # -- the Thespian thread ---------------------------------------------------------

    def watched_fds(self) -> list[int]:
        return [self.mailbox.fileno()]

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, WatchMessage) and self.mailbox.fileno() in message.ready:
            published: list = []
            for item in self.mailbox.drain():       # a crash of the loop re-raises here
                if item[0] == "publish":
                    published += item[1]
                elif item[0] == "reply":
                    _, to, ref, result = item
                    self.send(to, Reply(ref, result))
                elif item[0] == "route":
                    self._route(*item[1:])
                elif item[0] == "tree_exited":
                    _, requested, result = item
                    if not requested:
                        raise RuntimeError(f"the in-process connections tree exited: {result!r}")
                    self._exit_with(SHUTDOWN)
            if published:         # all that came since the last drain: one batch per worker
                self._forward(published)
        elif isinstance(message, PublishBatch):
            self.publish_batches_in += 1
            items = message.items
            self.loop.post(lambda: self.loop.pubsub.arrived_batch(items))
        elif isinstance(message, ClusterStats):
            self._cluster_stats = message.stats        # read by the loop thread's _stats: one reference swap
        elif isinstance(message, Publish):
            topic, text = message.topic, message.message
            self.loop.post(lambda: self._publish_from_outside(topic, text))
        elif isinstance(message, Deliver):
            self._route(message.connection_id, None, message.message)
        elif isinstance(message, Reply) and message.ref == self._siblings_ref and sender == self.supervisor:
            self._siblings_ref = None
            self._got_siblings(message.result)
        elif isinstance(message, KillInProcess):
            self.loop.post(lambda: self._kill(message, sender))
        elif isinstance(message, WorkerInfo):
            self.loop.post(lambda: self._info(message, sender))

    def _on_shutdown_request(self) -> None:
        self.loop.post(self._begin_stop)

    def terminate(self, reason: Any) -> None:
        sup_events.remove_handler(self._supervision_event)
        if self.thread.is_alive():
            self.loop.stop()
            self.thread.join(timeout=5.0)
        # After a crash the in-process tree was not stopped: its contexts end with this process.
        worker_ledger().process_ending(os.getpid())
        self.mailbox.close()
