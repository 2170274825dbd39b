"""Pub/sub between nodes, sans-I/O: the peer table of one node's ClusterActor.

A node is one ``wsup serve`` whose actor system is a member of a Thespian
convention (docs/cluster.md).  Each node has one hub (actors/cluster.py); the
hubs know each other by node name and address, and carry each node's
publishes to the others as batches.  This class decides *what* to send and
to whom; the actor only sends it.

Flow control, the reason this is more than a dict: Thespian blocks *every*
outgoing message of an actor once more than 20 of its transmits are pending
(THESPIAN_MAX_PENDING_TRANSMITS) — for up to five minutes, when a peer has
stalled.  A hub also hands batches to its own workers, so a stalled peer must
not stall them.  Each peer therefore has at most :attr:`window` batches in
flight (sent, not yet acknowledged); while the window is full, publishes for
that peer wait in a queue (merged into one batch when an acknowledgement
comes) of at most :attr:`max_queued` items, beyond which the oldest are
dropped and counted — at-most-once delivery, as Phoenix.PubSub between nodes.
A peer that leaves (the convention leader saw it die, or it left) takes its
queue with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Peer:
    node: str
    hub: Any                  # its ClusterActor's address
    inflight: int = 0         # batches sent, not yet acknowledged
    queue: list = field(default_factory=list)   # items waiting for the window
    sent: int = 0             # batches
    dropped: int = 0          # items dropped: queue full, or the batch came back undeliverable


class Peers:
    """``send(hub, items)`` transmits one batch (the actor's send)."""

    def __init__(self, me: str, send, window: int = 4, max_queued: int = 10_000) -> None:
        self.me = me
        self._send = send
        self.window = window
        self.max_queued = max_queued
        self.peers: dict[str, Peer] = {}
        self.received = 0          # batches from other nodes
        self.joined = 0            # peer_up events
        self.left = 0              # peer_down events

    # -- membership ----------------------------------------------------------------

    def up(self, node: str, hub: Any) -> bool:
        """``node``'s hub is at ``hub``.  True if that is news (a new node,
        or a node whose hub is new: it restarted, and what was in flight to
        the old one is gone)."""
        if node == self.me:
            return False
        old = self.peers.get(node)
        if old is not None and old.hub == hub:
            return False
        self.peers[node] = Peer(node, hub)
        self.joined += 1
        return True

    def down(self, node: str) -> Peer | None:
        peer = self.peers.pop(node, None)
        if peer is not None:
            self.left += 1
        return peer

    def node_of(self, hub: Any) -> str | None:
        return next((p.node for p in self.peers.values() if p.hub == hub), None)

    def table(self) -> dict[str, Any]:
        """{node: hub} of every known node, this one excluded."""
        return {p.node: p.hub for p in self.peers.values()}

    # -- traffic -------------------------------------------------------------------

    def publish(self, items: list) -> None:
        """This node's publishes (already delivered here) to every peer."""
        for peer in self.peers.values():
            if peer.inflight < self.window:
                self._transmit(peer, items)
            else:
                peer.queue.extend(items)
                over = len(peer.queue) - self.max_queued
                if over > 0:
                    del peer.queue[:over]
                    peer.dropped += over

    def acked(self, node: str) -> None:
        """``node`` has taken one batch: send what waited, as one batch."""
        peer = self.peers.get(node)
        if peer is None:
            return
        peer.inflight = max(0, peer.inflight - 1)
        if peer.queue and peer.inflight < self.window:
            items, peer.queue = peer.queue, []
            self._transmit(peer, items)

    def undeliverable(self, hub: Any, items: list) -> None:
        """A batch came back (the peer's hub is gone): it counts as dropped."""
        node = self.node_of(hub)
        if node is not None:
            self.peers[node].dropped += len(items)
            self.acked(node)

    def _transmit(self, peer: Peer, items: list) -> None:
        peer.inflight += 1
        peer.sent += 1
        self._send(peer.hub, items)

    def stats(self) -> dict:
        return {"per_peer": {p.node: {"inflight": p.inflight, "queued": len(p.queue), "batches_out": p.sent,
                                   "dropped": p.dropped} for p in self.peers.values()},
                "batches_in": self.received, "joined": self.joined, "left": self.left}
