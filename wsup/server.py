"""The server's supervision tree and its main-process runner.

    Application
    └── wsup (rest_for_one)
        ├── connections (one_for_all, intensity 0)
        │   └── connections-1 .. connections-K (simple_one_for_one; K =
        │       │   --connection-supervisors, max_children adding up to --max-connections)
        │       └── connection-<id> (ConnectionSupervisor, temporary; one_for_one,
        │           │                auto_shutdown = any_significant)
        │           ├── connection (ConnectionActor, temporary, significant)
        │           └── compression (CompressionActor, transient, when negotiated)
        └── listener (ListenerActor, permanent)

The listener spreads new connections over the K partitions in turn, so K
connection subtrees start in parallel (a start is ~20 ms of forking and
handshakes per process), and no one parent has to reap every connection's
exit.  rest_for_one: if `connections` dies (any partition dying takes it
down: intensity 0), the listener (which holds the partitions' addresses) is
restarted after it; the listener dying does not touch open connections.
Shutdown goes in reverse: the listener first (no new connections), then every
connection in parallel (1001, closing handshake).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from dataclasses import replace
from typing import Any, Callable

from actors.connection_supervisor import ConnectionSupervisor
from actors.listener import ListenerActor, ListenerInfo
from supervisors import (ONE_FOR_ALL, ONE_FOR_ONE, PERMANENT, REST_FOR_ONE, SIMPLE_ONE_FOR_ONE, SUPERVISOR, TEMPORARY,
                         ChildRef, ChildSpec, PartitionSupervisor, Runtime, StartError, SupFlags, supervisor_spec)
from supervisors import _platform
from supervisors.reasons import Error, to_json
from wsup.config import ServerConfig


def partition_limits(config: ServerConfig) -> list[int]:
    """--max-connections split over the partitions: they add up to it exactly."""
    k = min(config.connection_supervisors, config.max_connections)
    q, r = divmod(config.max_connections, k)
    return [q + (1 if i < r else 0) for i in range(k)]


def worker_limits(config: ServerConfig) -> list[int]:
    """--max-connections shared out over the workers (they add up to it)."""
    k = min(config.workers, config.max_connections)
    q, r = divmod(config.max_connections, k)
    return [q + (1 if i < r else 0) for i in range(k)]


def workers_spec(config: ServerConfig) -> ChildSpec:
    """wsup (rest_for_one) -> workers (one_for_one) -> worker-1..K (WorkerActor)."""
    from actors.worker_actor import WorkerActor
    workers = [ChildSpec(f"worker-{i + 1}", (WorkerActor, (config, i + 1, limit)), restart=PERMANENT,
                         shutdown=int((config.shutdown_timeout + 1 + config.compression_shutdown_timeout + 5) * 1000),
                         start_timeout=30.0)
               for i, limit in enumerate(worker_limits(config))]
    sup = supervisor_spec("workers", SupFlags(strategy=ONE_FOR_ONE, intensity=5, period=5.0, name="workers"),
                          workers)
    return supervisor_spec("wsup", SupFlags(strategy=REST_FOR_ONE, intensity=3, period=5.0, name="wsup"), [sup])


def server_spec(config: ServerConfig) -> ChildSpec:
    if config.workers:
        return workers_spec(config)
    partitions = [
        supervisor_spec(
            f"connections-{i + 1}",
            SupFlags(strategy=SIMPLE_ONE_FOR_ONE, intensity=10, period=5.0,
                     max_children=limit, name=f"connections-{i + 1}"),
            [ChildSpec("connection", (ConnectionSupervisor, ()), restart=TEMPORARY, type=SUPERVISOR)])
        for i, limit in enumerate(partition_limits(config))]
    # A partition that dies takes `connections` with it (intensity 0): the listener,
    # which holds the partitions' addresses, is then restarted after it (rest_for_one).
    connections = supervisor_spec(
        "connections", SupFlags(strategy=ONE_FOR_ALL, intensity=0, period=5.0, name="connections"), partitions,
        actor_class=PartitionSupervisor)
    listener = ChildSpec("listener", (ListenerActor, (config,)), restart=PERMANENT, shutdown=5000)
    return supervisor_spec("wsup", SupFlags(strategy=REST_FOR_ONE, intensity=3, period=5.0, name="wsup"),
                           [connections, listener])


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
    (a restarted listener must come back on the same one) and the name of
    the socket-handoff channel."""
    config.check()
    port = config.port or _platform.free_port(config.host)
    return replace(config, port=port,
                   handoff_name=config.handoff_name or f"wsup-{os.getpid()}-{secrets.token_hex(8)}")


class Server:
    """Runs the tree in this process's private actor system."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = prepare(config)
        self.runtime: Runtime | None = None
        self.address: tuple[str, int] | None = None

    def start(self) -> tuple[str, int]:
        _platform.raise_open_files_limit()
        self.runtime = rt = Runtime(log=self.config.log)
        try:
            if self.config.workers:
                port_not_in_use(self.config)
            rt.start(server_spec(self.config))
        except StartError as exc:
            rt.log.error("server.start_failed", reason=to_json(exc.reason))
            rt.shutdown()
            raise
        if self.config.workers:
            self.address = (self.config.host, self.config.port)
            return self.address
        listener = self.child("listener")
        self.address = tuple(rt.call(listener, ListenerInfo(), 10))
        return self.address

    def child(self, child_id: str) -> ChildRef:
        for cid, ref, _t, _m in self.runtime.which_children():
            if cid == child_id and isinstance(ref, ChildRef):
                return ref
        raise LookupError(child_id)

    def partitions(self) -> list[ChildRef]:
        """The running partitions of `connections`: the supervisors of the connection subtrees."""
        return [ref for _cid, ref, _t, _m in self.runtime.which_children(self.child("connections"))
                if isinstance(ref, ChildRef)]

    def stop(self) -> int:
        rt = self.runtime
        rt.log.info("server.stopping")
        # a connection's subtree stops its ConnectionActor (closing handshake) then its
        # CompressionActor, each within its timeout: the whole tree within both, and a margin
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


def print_ready(address: tuple[str, int], tls: bool = False) -> None:
    host, port = address
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {'wss' if tls else 'ws'}://{shown}:{port}", flush=True)
    sys.stdout.flush()
