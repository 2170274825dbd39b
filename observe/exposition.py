"""The workers' snapshots as Prometheus metrics (text format 0.0.4, via prometheus_client).

Each worker counts in plain integers (wscore.metrics) and answers a snapshot
on its control socket; the observer renders the snapshots of all workers at
once, at scrape time, with a ``worker`` label — the "one collector" way
rather than prometheus_client's multiprocess mode (measured in
docs/observability.md).  Counters of a restarted worker start again from 0
(a counter reset, which rate() handles).  Label sets are bounded (see
wscore.metrics)."""

from __future__ import annotations

from typing import Any, Iterable

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from wscore.metrics import HANDSHAKE_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (name, help, snapshot key) of the plain per-worker counters
_COUNTERS = (
    ("wsup_connections_accepted", "TCP connections accepted", "accepted"),
    ("wsup_connections_upgraded", "Connections upgraded to WebSocket (handshake accepted)", "upgraded"),
    ("wsup_messages_received", "WebSocket messages received from clients", "messages_in"),
    ("wsup_messages_sent", "WebSocket messages sent by the application", "messages_out"),
    ("wsup_payload_received_bytes", "Message payload bytes received, uncompressed", "payload_bytes_in"),
    ("wsup_payload_sent_bytes", "Message payload bytes sent, uncompressed", "payload_bytes_out"),
    ("wsup_wire_received_bytes", "Bytes read from upgraded connections (frames as on the wire)", "wire_bytes_in"),
    ("wsup_wire_sent_bytes", "Bytes written to upgraded connections (the 101 response and frames)",
     "wire_bytes_out"),
    ("wsup_compression_recoveries", "CompressionActors restarted in place after a crash or kill (the client "
                                    "saw nothing)", "compression_recoveries"),
)


def _counter(name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]) -> Metric:
    m = CounterMetricFamily(name, doc, labels=labels)
    for values, v in rows:
        m.add_metric(values, v)
    return m


def _gauge(name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]) -> Metric:
    m = GaugeMetricFamily(name, doc, labels=labels)
    for values, v in rows:
        m.add_metric(values, v)
    return m


def worker_families(snapshots: dict[int, dict], worker_restarts: dict[int, int], workers_up: dict[int, bool],
                    ready: bool) -> list[Metric]:
    W = ["worker"]
    items = sorted(snapshots.items())
    c = {i: s["counters"] for i, s in items}
    out: list[Metric] = [
        _gauge("wsup_worker_up", "1 while the worker process is up (its control socket answers)", W,
               [([str(i)], 1.0 if up else 0.0) for i, up in sorted(workers_up.items())]),
        _gauge("wsup_ready", "1 while the server accepts connections (what /readyz says)", [], [([], float(ready))]),
        _counter("wsup_worker_restarts", "Worker processes restarted by the workers supervisor (a new pid seen)",
                 W, [([str(i)], n) for i, n in sorted(worker_restarts.items())]),
        _gauge("wsup_connections_open", "WebSocket connections open (upgraded, not yet ended)", W,
               [([str(i)], s["connections_open"]) for i, s in items]),
        _gauge("wsup_handshakes_pending", "Accepted connections whose upgrade request is not read yet", W,
               [([str(i)], s["pending_handshakes"]) for i, s in items]),
        _gauge("wsup_compression_contexts_open", "zlib contexts held by CompressionActors", W,
               [([str(i)], s["contexts_open"]) for i, s in items]),
        _counter("wsup_compression_contexts_opened", "zlib contexts opened (a deflate and an inflate per "
                 "CompressionActor start)", W, [([str(i)], s["contexts_opened"]) for i, s in items]),
        _counter("wsup_compression_contexts_released", "zlib contexts released, by cause (close, shutdown, "
                 "error, owner_died); each exactly once", W + ["cause"],
                 [([str(i), cause], n) for i, s in items for cause, n in s["contexts_released"]]),
    ]
    for name, doc, key in _COUNTERS:
        out.append(_counter(name, doc, W, [([str(i)], c[i][key]) for i in c]))
    out += [
        _counter("wsup_connections_rejected", "Connections refused before the upgrade, by HTTP status "
                 "(none: closed unanswered, too many pending handshakes)", W + ["status"],
                 [([str(i), st], n) for i in c for st, n in c[i]["rejected"]]),
        _counter("wsup_connections_closed", "WebSocket connections ended, by close code (1006: no close frame; "
                 "3xxx/4xxx: application codes) and by who started the close", W + ["code", "initiator"],
                 [([str(i), code, who], n) for i in c for code, who, n in c[i]["closed"]]),
        _counter("wsup_limit_closes", "Connections closed 1009 by a limit: frame_size, message_size, "
                 "inflated_size or inflate_ratio (a deflate bomb)", W + ["limit"],
                 [([str(i), lim], n) for i in c for lim, n in c[i]["limit_closes"]]),
        _counter("wsup_actor_starts", "In-process actors started by their supervisor (restarts included)",
                 W + ["supervisor", "child_id"],
                 [([str(i), sup, cid], n) for i in c for sup, cid, n in c[i]["started"]]),
        _counter("wsup_actor_crashes", "In-process actors that ended abnormally (reason: error, killed, other)",
                 W + ["supervisor", "child_id", "reason"],
                 [([str(i), sup, cid, r], n) for i in c for sup, cid, r, n in c[i]["terminated"]]),
        _counter("wsup_actor_restarts", "In-process actors restarted by their supervisor",
                 W + ["supervisor", "child_id"],
                 [([str(i), sup, cid], n) for i in c for sup, cid, n in c[i]["restarted"]]),
        _counter("wsup_supervisor_intensity_shutdowns", "Supervisors that gave up: restart intensity reached",
                 W + ["supervisor"], [([str(i), sup], n) for i in c for sup, n in c[i]["intensity_shutdowns"]]),
    ]
    ps = {i: s.get("pubsub", {}) for i, s in items}
    out += [
        _gauge("wsup_pubsub_subscriptions", "Subscriptions of this worker's connections and listeners", W,
               [([str(i)], p.get("subscriptions", 0)) for i, p in ps.items()]),
        _gauge("wsup_pubsub_topics", "Topics with a subscriber in this worker", W,
               [([str(i)], p.get("topics", 0)) for i, p in ps.items()]),
        _counter("wsup_pubsub_published", "Messages published in this worker (by its connections, code or "
                 "from outside)", W, [([str(i)], p.get("published", 0)) for i, p in ps.items()]),
        _counter("wsup_pubsub_delivered", "Published messages delivered to this worker's subscribers, from "
                 "anywhere", W, [([str(i)], p.get("delivered", 0)) for i, p in ps.items()]),
        _counter("wsup_pubsub_batches", "Batches of publishes between workers (out: sent to each other worker, "
                 "in: received)", W + ["direction"],
                 [([str(i), d], p.get(f"batches_{d}", 0)) for i, p in ps.items() for d in ("out", "in")]),
    ]
    out += cluster_families(next((s["cluster"] for _i, s in items if s.get("cluster")), None))
    h = HistogramMetricFamily("wsup_handshake_duration_seconds", "From TCP accept to the 101 response",
                              labels=W)
    for i in c:
        counts, cum, buckets = c[i]["handshake_buckets"], 0, []
        for le, n in zip([*map(str, HANDSHAKE_BUCKETS), "+Inf"], counts):
            cum += n
            buckets.append((le, cum))
        h.add_metric([str(i)], buckets, c[i]["handshake_sum"])
    out.append(h)
    return out


def cluster_families(cl: dict | None) -> list[Metric]:
    """The node's ClusterActor counts (--cluster-address; as last reported to a worker, <= 1 s old).
    Nothing without a cluster.  They restart from zero with the hub."""
    if not cl:
        return []
    peers = cl.get("per_peer", {})
    return [
        _gauge("wsup_cluster_peers", "Other nodes this node delivers publishes to", [], [([], len(peers))]),
        _counter("wsup_cluster_batches", "Batches of publishes between nodes (out: to each peer, in: from any)",
                 ["direction"], [(["out"], sum(p["batches_out"] for p in peers.values())),
                                 (["in"], cl.get("batches_in", 0))]),
        _gauge("wsup_cluster_inflight", "Batches sent to a peer and not yet acknowledged (at most 4)", ["peer"],
               [([n], p["inflight"]) for n, p in peers.items()]),
        _gauge("wsup_cluster_queued", "Publishes waiting for a peer's window", ["peer"],
               [([n], p["queued"]) for n, p in peers.items()]),
        _counter("wsup_cluster_dropped", "Publishes not delivered to a peer (its queue full, or it was gone)",
                 ["peer"], [([n], p["dropped"]) for n, p in peers.items()]),
    ]


def process_families(pids: dict[str, Any]) -> list[Metric]:
    """prometheus_client's process metrics (from /proc) for each process, labelled ``process``."""
    merged: dict[str, Metric] = {}
    for label, pid in sorted(pids.items()):
        if not pid:
            continue
        for fam in ProcessCollector(namespace="", pid=lambda pid=pid: pid, registry=None).collect():
            m = merged.get(fam.name)
            if m is None:
                m = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for s in fam.samples:
                m.add_sample(s.name, {**s.labels, "process": label}, s.value)
    return list(merged.values())


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
