"""ClusterActor: this node's hub for pub/sub between nodes (``--cluster-address``).

A node is one ``wsup serve``; its process-tier actor system joins a Thespian
*convention* (Thespian's own multi-host engine: a leader, members that
register with it and re-register every ``--cluster-heartbeat`` seconds).
This actor is the node's only link to the others:

    workers (one_for_one)
    ├── cluster (ClusterActor)        <- PublishBatch from this node's workers
    └── worker-1 .. worker-K             -> ClusterBatch to every other node's hub
                                         <- ClusterBatch from them -> PublishBatch to the workers

Finding each other: the hub publishes its address as the system capability
``wsup.cluster.hub`` *before* the system joins the convention (the leader
is told of a member once, with the capabilities it has then), and asks
Thespian for convention updates: a hub hears of every node that joins or
leaves the leader, a member's hub of the leader only, so the leader's hub
sends every member the table of all hubs (ClusterPeers) whenever it changes.
A node that dies is dropped when the leader misses three heartbeats; a node
that comes back registers again and is picked up.

Flow control and counts live in wscore.cluster.Peers (sans-I/O): at most a
few batches in flight per peer, so a stalled node cannot stall this actor's
sends to its own workers; what cannot go is dropped and counted.

Let it crash: a crash restarts the hub (its supervisor is ``workers``); the
new one publishes its new address, hears the current members again from
Thespian and says Hello to each.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from thespian.actors import ActorSystemConventionUpdate, PoisonMessage, WakeupMessage

from actors.tier_messages import ClusterAck, ClusterBatch, ClusterHello, ClusterPeers, ClusterStats, PublishBatch
from supervisors import SupervisedActor
from supervisors.messages import Reply, WhichChildren
from wscore.cluster import Peers
from wscore.config import ServerConfig

HUB_CAPABILITY = "wsup.cluster.hub"
NODE_CAPABILITY = "wsup.cluster.node"
CONVENTION_CAPABILITY = "Convention Address.IPv4"
WORKERS_FRESH = 1.0     # seconds a cached list of this node's workers is trusted
STATS_EVERY = timedelta(seconds=1)   # the counts to the workers (for /metrics)


class ClusterActor(SupervisedActor):
    def init(self, config: ServerConfig) -> None:
        self.node = config.cluster_node
        self.leader = config.cluster_leader        # None: this node leads the convention
        self.peers = Peers(self.node, lambda hub, items: self.send(hub, ClusterBatch(self.node, items)))
        self._workers: list = []                   # this node's workers' addresses
        self._workers_at = -1.0
        self._workers_ref: int | None = None
        self._waiting: list = []                   # batches for the workers, before their addresses
        self._refs = 0
        self.add_log_context(node=self.node)
        # the hub's address first, then the convention: the leader hears of us with it
        self.updateCapability(HUB_CAPABILITY, self.myAddress)
        self.updateCapability(NODE_CAPABILITY, self.node)
        if self.leader is not None:
            self.updateCapability(CONVENTION_CAPABILITY, self.leader)
        self.notifyOnSystemRegistrationChanges(True)
        self._expected = min(config.workers, config.max_connections)   # as server.worker_limits
        self.wakeupAfter(STATS_EVERY, payload="stats")
        self.log.info("cluster.started", leader=self.leader or self.node, role="member" if self.leader else "leader")

    # -- membership --------------------------------------------------------------------

    def _convention_update(self, update: ActorSystemConventionUpdate) -> None:
        caps = update.remoteCapabilities or {}
        node, hub = caps.get(NODE_CAPABILITY), caps.get(HUB_CAPABILITY)
        if update.remoteAdded:
            if node and hub is not None:
                self._up(node, hub)
                self.send(hub, ClusterHello(self.node, self.myAddress, reply=True))
            return
        if node is None:
            return
        if self.peers.down(node) is not None:
            self.log.info("cluster.peer_down", peer=node, peers=len(self.peers.peers))
            self._tell_members()

    def _up(self, node: str, hub: Any) -> None:
        if self.peers.up(node, hub):
            self.log.info("cluster.peer_up", peer=node, peers=len(self.peers.peers))
            self._tell_members()

    def _tell_members(self) -> None:
        """The leader's hub: every member's hub gets the table of all hubs."""
        if self.leader is not None:
            return
        table = {self.node: self.myAddress, **self.peers.table()}
        for hub in self.peers.table().values():
            self.send(hub, ClusterPeers(table))

    def _members(self, table: dict) -> None:
        for node, hub in table.items():
            if node != self.node and self.peers.up(node, hub):
                self.log.info("cluster.peer_up", peer=node, peers=len(self.peers.peers))
        for node in [n for n in self.peers.peers if n not in table]:
            self.peers.down(node)
            self.log.info("cluster.peer_down", peer=node, peers=len(self.peers.peers))

    # -- this node's workers -----------------------------------------------------------

    def _ask_workers(self) -> None:
        if self._workers_ref is None:
            self._refs += 1
            self._workers_ref = self._refs
            self.send(self.supervisor, WhichChildren(ref=self._workers_ref))

    def _got_workers(self, children: list) -> None:
        self._workers = [ref.address for cid, ref, _t, _m in children
                         if isinstance(cid, str) and cid.startswith("worker-") and hasattr(ref, "address")]
        # asked while the workers were still starting (this actor starts first): ask again
        self._workers_at = time.monotonic() if len(self._workers) >= self._expected else 0.0
        waiting, self._waiting = self._waiting, []
        for items in waiting:
            self._to_workers(items)

    def _to_workers(self, items: list) -> None:
        if time.monotonic() - self._workers_at > WORKERS_FRESH:
            self._ask_workers()       # a restarted worker has a new address
        if self._workers_at < 0 or (not self._workers and self._workers_ref is not None):
            self._waiting.append(items)
            return
        batch = PublishBatch(items, self.myAddress)
        for address in self._workers:
            self.send(address, batch)

    # -- messages ----------------------------------------------------------------------

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, PublishBatch):            # from a worker of this node
            self.peers.publish(message.items)
        elif isinstance(message, ClusterBatch):          # from another node's hub
            self.peers.received += 1
            self._to_workers(message.items)
            self.send(sender, ClusterAck(self.node))
        elif isinstance(message, ClusterAck):
            self.peers.acked(message.node)
        elif isinstance(message, ClusterHello):
            self._up(message.node, message.hub)
            if message.reply:
                self.send(message.hub, ClusterHello(self.node, self.myAddress))
        elif isinstance(message, ClusterPeers):
            if self.leader is not None:
                self._members(message.table)
        elif isinstance(message, ActorSystemConventionUpdate):
            self._convention_update(message)
        elif isinstance(message, Reply) and message.ref == self._workers_ref:
            self._workers_ref = None
            self._got_workers(message.result)
        elif isinstance(message, WakeupMessage) and message.payload == "stats":
            if self._workers:
                stats = ClusterStats(self.peers.stats())
                for address in self._workers:
                    self.send(address, stats)
            else:
                self._ask_workers()
            self.wakeupAfter(STATS_EVERY, payload="stats")
        elif isinstance(message, PoisonMessage) and isinstance(message.poisonMessage, ClusterBatch):
            self.peers.undeliverable(sender, message.poisonMessage.items)

    def terminate(self, reason: Any) -> None:
        self.log.info("cluster.stopped", **self.peers.stats())
