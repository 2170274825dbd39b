"""Messages between the process-tier actors of wsup (pickled: they cross
processes, and between nodes of a cluster, machines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PublishBatch:
    """Publishes made in one worker, for the others (and, through the node's
    ClusterActor, other nodes): one Thespian message per destination per
    turn, however many subscribers."""
    items: list          # [(topic, message, publisher connection id or None)]
    origin: Any = None   # the worker (or hub) that sent them


@dataclass
class ClusterHello:
    """Hub to hub: node ``node``'s hub is ``hub``.  ``reply``: answer with
    your own Hello (the first contact goes both ways)."""
    node: str
    hub: Any
    reply: bool = False


@dataclass
class ClusterPeers:
    """From the convention leader's hub to every member's: every node's hub
    (members of a Thespian convention learn only of the leader)."""
    table: dict          # {node: hub address}


@dataclass
class ClusterBatch:
    """Publishes of node ``node``, for the receiving node's workers."""
    node: str
    items: list


@dataclass
class ClusterAck:
    """A ClusterBatch of ``node``'s peer was handed to its workers."""
    node: str


@dataclass
class ClusterStats:
    """From the node's ClusterActor to its workers, every second: its counts
    (wscore.cluster.Peers.stats), which the workers report with their own
    (the observer's /metrics)."""
    stats: dict
