"""Server configuration: one frozen, picklable value handed to every actor."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from supervisors import LogConfig
from wscore.deflate import DeflateSettings

MiB = 1 << 20


def default_workers() -> int:
    """One worker process per CPU."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    app: str = "wsup.app:EchoApp"
    max_connections: int = 1000
    # worker processes, each hosting its share of the connections as in-process actors
    workers: int = field(default_factory=default_workers)
    max_message_size: int = MiB
    max_frame_size: int | None = None          # None: bounded by max_message_size
    idle_timeout: float | None = None          # seconds without a frame from the client
    ping_interval: float | None = 20.0         # keepalive pings (None: off)
    ping_timeout: float | None = 20.0          # no pong/data this long after a ping: abort
    close_timeout: float = 5.0                 # wait for the client's close frame
    handshake_timeout: float = 10.0
    max_pending_handshakes: int = 10000        # per worker: connections not yet upgraded (worker layout)
    shutdown_timeout: float = 10.0             # graceful close on shutdown, per connection
    send_timeout: float = 30.0                 # a client that reads nothing this long is dropped
    # a CompressionActor asked to stop gets this long before SIGKILL: it stops in milliseconds,
    # but ~1,000 connections closing at once on 2 cores starved some for ~14 s (docs/performance.md)
    compression_shutdown_timeout: float = 30.0
    origins: tuple[str, ...] = ()              # allowed Origin values (empty: any)
    subprotocols: tuple[str, ...] = ()         # subprotocols the server speaks, by preference
    backlog: int = 1024
    certfile: str | None = None                # TLS (wss://): the certificate chain, PEM
    keyfile: str | None = None                 # its private key (default: in certfile)
    compression: DeflateSettings = field(default_factory=DeflateSettings)
    log: LogConfig = field(default_factory=LogConfig)
    name: str = ""                             # this server instance's name (set at start; control sockets)
    metrics_port: int | None = None            # /metrics, /healthz, /readyz and the live page (None: off)
    metrics_host: str = "127.0.0.1"
    # the cycle collector in each worker: freeze what survives a full collection, and thaw and
    # collect everything this often (seconds); None: CPython's default (wscore/gc_policy.py)
    gc_thaw_every: float | None = 60.0
    # pub/sub between nodes: a Thespian convention (docs/cluster.md)
    cluster_address: str | None = None         # "IP:PORT": this node's actor system (None: no cluster)
    cluster_leader: str | None = None          # "IP:PORT": the convention leader's (None: this node leads)
    cluster_allow_network: bool = False        # a non-loopback cluster address or leader (pickle!)
    cluster_heartbeat: float = 1.0             # seconds between a member's registrations; ~3x: death noticed

    @property
    def cluster_node(self) -> str | None:
        """This node's name in the cluster: its address."""
        return self.cluster_address

    def check(self) -> None:
        if not (0 <= self.port <= 65535):
            raise ValueError("port must be 0..65535")
        if self.metrics_port is not None and not (0 <= self.metrics_port <= 65535):
            raise ValueError("metrics_port must be 0..65535")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.keyfile and not self.certfile:
            raise ValueError("--keyfile needs --certfile")
        if self.compression_shutdown_timeout <= 0:
            raise ValueError("compression_shutdown_timeout must be > 0")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be >= 1")
        self.compression.check()
        self._check_cluster()
        if self.gc_thaw_every is not None and self.gc_thaw_every <= 0:
            raise ValueError("gc_thaw_every must be > 0 (or None: off)")
        for name in ("idle_timeout", "ping_interval", "ping_timeout"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"{name} must be > 0")

    def _check_cluster(self) -> None:
        if self.cluster_address is None:
            if self.cluster_leader is not None:
                raise ValueError("--cluster-leader needs --cluster-address (this node's own IP:PORT)")
            return
        if self.cluster_heartbeat <= 0:
            raise ValueError("cluster_heartbeat must be > 0")
        for what, value in (("--cluster-address", self.cluster_address), ("--cluster-leader", self.cluster_leader)):
            if value is None:
                continue
            ip = cluster_ip(value, what)
            if not ip.is_loopback and not self.cluster_allow_network:
                raise ValueError(
                    f"{what} {value}: not a loopback address. Thespian's transport is unauthenticated "
                    f"pickle: whoever reaches that port can run code as this user. Join over a private "
                    f"network only, with --cluster-allow-network (docs/cluster.md)")


def cluster_ip(value: str, what: str = "address") -> "ipaddress.IPv4Address":
    """``IP:PORT`` with an explicit IPv4 address (Thespian conventions are IPv4)."""
    host, sep, port = value.rpartition(":")
    try:
        ip = ipaddress.IPv4Address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"{what} {value!r}: expected IPv4:PORT, e.g. 127.0.0.1:1900") from None
    if not sep or not (1 <= number <= 65535):
        raise ValueError(f"{what} {value!r}: expected IPv4:PORT with a port 1..65535")
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(f"{what} {value!r}: an explicit address of this machine, not {ip}")
    return ip
