"""The server's supervision tree and its main-process runner.

    Application
    └── wsup (one_for_one)
        ├── observer (ObserverActor, with --metrics-port: /metrics, /healthz, /readyz, the live page)
        └── workers (one_for_one, intensity 5 / 5 s)
            └── worker-1 .. worker-K (WorkerActor, permanent; K = --workers)
                    each: a SO_REUSEPORT listener, an I/O loop, and in-process
                    connections (simple_one_for_one, its share of --max-connections)
                    -> connection-<id> (ConnectionSupervisor)
                       -> ConnectionActor [+ CompressionActor]

The kernel spreads new connections over the workers' listeners; a worker
that dies loses its connections and is restarted, the others keep serving.
Shutdown stops every worker in parallel: each stops accepting and closes its
connections (1001, closing handshake).  See docs/architecture.md.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from dataclasses import replace
from typing import Any, Callable

from actors.cluster import ClusterActor
from actors.observer import ObserverActor
from actors.worker import WorkerActor
from supervisors import (ONE_FOR_ONE, PERMANENT, ChildRef, ChildSpec, Runtime, StartError, SupFlags,
                         supervisor_spec)
from supervisors import _platform
from supervisors import log as _log
from supervisors.reasons import Error, to_json
from wscore.config import ServerConfig


def worker_limits(config: ServerConfig) -> list[int]:
    """--max-connections shared out over the workers (they add up to it)."""
    k = min(config.workers, config.max_connections)
    q, r = divmod(config.max_connections, k)
    return [q + (1 if i < r else 0) for i in range(k)]


def server_spec(config: ServerConfig) -> ChildSpec:
    """wsup (one_for_one) -> [observer (ObserverActor, with --metrics-port),
    workers (one_for_one) -> worker-1..K (WorkerActor)].  The observer starts
    first (/readyz answers 503 while the workers start) and stops last."""
    workers = [ChildSpec(f"worker-{i + 1}", (WorkerActor, (config, i + 1, limit)), restart=PERMANENT,
                         shutdown=int((config.shutdown_timeout + 1 + config.compression_shutdown_timeout + 5) * 1000),
                         start_timeout=30.0)
               for i, limit in enumerate(worker_limits(config))]
    if config.cluster_address is not None:     # first: it stops after the workers
        workers.insert(0, ChildSpec("cluster", (ClusterActor, (config,)), restart=PERMANENT, shutdown=5_000,
                                    start_timeout=30.0))
    sup = supervisor_spec("workers", SupFlags(strategy=ONE_FOR_ONE, intensity=5, period=5.0, name="workers"),
                          workers)
    observer = [] if config.metrics_port is None else [
        ChildSpec("observer", (ObserverActor, (config,)), restart=PERMANENT, shutdown=10_000, start_timeout=30.0)]
    return supervisor_spec("wsup", SupFlags(strategy=ONE_FOR_ONE, intensity=3, period=5.0, name="wsup"),
                           [*observer, sup])


def port_not_in_use(config: ServerConfig) -> None:
    """The workers' listeners share the port (SO_REUSEPORT), and so would
    another server's of the same user: check, without SO_REUSEPORT, that
    nobody listens there yet.  StartError("Address already in use") if so."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is not "in use"
        try:
            probe.bind((config.host, config.port))
        except OSError as exc:
            raise StartError(Error.from_exception(exc)) from None


def prepare(config: ServerConfig) -> ServerConfig:
    """Resolve what must be fixed before the tree starts: a concrete port
    (a restarted worker must come back on the same one) and the server's
    instance name (its workers' control sockets are named after it)."""
    config.check()
    port = config.port or _platform.free_port(config.host)
    metrics_port = config.metrics_port
    if metrics_port == 0:
        metrics_port = _platform.free_port(config.metrics_host)
    leader = None if config.cluster_leader == config.cluster_address else config.cluster_leader
    return replace(config, port=port, metrics_port=metrics_port, cluster_leader=leader,
                   name=config.name or f"wsup-{os.getpid()}-{secrets.token_hex(8)}")


def join_cluster(config: ServerConfig) -> int | None:
    """--cluster-address IP:PORT: this process's actor system binds IP (every
    socket of it) with its admin on PORT, and notices a dead member within
    ~3 heartbeats.  Returns the admin port (None: no cluster, as before)."""
    if config.cluster_address is None:
        return None
    host, _, port = config.cluster_address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:   # another node's admin there?
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise StartError(Error.from_exception(exc)) from None
    _platform.set_node_address(host)
    _platform.set_convention_period(config.cluster_heartbeat)
    return int(port)


class Server:
    """Runs the tree in this process's private actor system."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = prepare(config)
        self.runtime: Runtime | None = None
        self.address: tuple[str, int] | None = None

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        c = self.config
        return None if c.metrics_port is None else (c.metrics_host, c.metrics_port)

    def start(self) -> tuple[str, int]:
        _platform.raise_open_files_limit()
        try:
            admin_port = join_cluster(self.config)
        except StartError as exc:
            _log.configure(self.config.log)
            _log.get_logger(actor="Runtime").error("server.start_failed", reason=to_json(exc.reason))
            raise
        self.runtime = rt = Runtime(log=self.config.log, admin_port=admin_port)
        try:
            port_not_in_use(self.config)
            rt.start(server_spec(self.config))
        except StartError as exc:
            rt.log.error("server.start_failed", reason=to_json(exc.reason))
            rt.shutdown()
            raise
        self.address = (self.config.host, self.config.port)
        return self.address

    def child(self, child_id: str) -> ChildRef:
        for cid, ref, _t, _m in self.runtime.which_children():
            if cid == child_id and isinstance(ref, ChildRef):
                return ref
        raise LookupError(child_id)

    def workers(self) -> dict[str, ChildRef]:
        """The running workers: {"worker-1": ChildRef, ...}."""
        return {cid: ref for cid, ref, _t, _m in self.runtime.which_children(self.child("workers"))
                if isinstance(ref, ChildRef) and cid.startswith("worker-")}

    def stop(self) -> int:
        rt = self.runtime
        rt.log.info("server.stopping")
        # each worker stops its connections' subtrees in parallel: a ConnectionActor
        # (closing handshake) then its CompressionActor, each within its timeout
        c = self.config
        rt.shutdown(stop_timeout=c.shutdown_timeout + 1 + c.compression_shutdown_timeout + 20)
        rt.log.info("server.stopped", status=rt.exit_status)
        return rt.exit_status

    def serve_forever(self, on_ready: Callable[[tuple[str, int]], Any] | None = None) -> int:
        """Start, run until SIGTERM/SIGINT or until the tree gives up, stop.
        Returns the process exit status."""
        signals: list[int] = []
        previous = {s: signal.signal(s, lambda n, f: signals.append(n))
                    for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            try:
                address = self.start()
            except StartError:
                return 1
            if on_ready is not None:
                on_ready(address)
            self.runtime.wait(interrupted=lambda: bool(signals))
            if signals:
                self.runtime.log.info("server.signal", signal=signal.Signals(signals[0]).name)
            return self.stop()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def print_ready(address: tuple[str, int], tls: bool = False, metrics: tuple[str, int] | None = None) -> None:
    host, port = address
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {'wss' if tls else 'ws'}://{shown}:{port}", flush=True)
    if metrics is not None:
        mhost, mport = metrics
        mshown = f"[{mhost}]" if ":" in mhost else mhost
        print(f"metrics and live view on http://{mshown}:{mport}/", flush=True)
    sys.stdout.flush()
