"""A worker's counters: plain integers in the process, no library on the hot path.

Every worker process counts what happens to its connections here (one
module-level :data:`METRICS`, written by the worker's loop thread only) and
hands a JSON snapshot to whoever asks on its control socket; the
ObserverActor turns the snapshots of all workers into Prometheus metrics
(observe.exposition).  An increment is an attribute add (~30 ns); the
alternative, prometheus_client's multiprocess mode, costs a lock and an
mmap write per increment and a file per process to merge at every scrape
(measured in docs/observability.md).

Label values are bounded: close codes outside RFC 6455's registry are
counted as ``3xxx``/``4xxx``; supervisors named after a connection count
as ``connection``; never a connection id.
"""

from __future__ import annotations

import bisect
from typing import Any

HANDSHAKE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def code_label(code: int | None) -> str:
    if code is None:
        return "none"
    if code < 3000:
        return str(code)
    if code < 4000:
        return "3xxx"
    if code < 5000:
        return "4xxx"
    return "other"


def limit_kind(code: int | None, reason: str) -> str | None:
    """Which limit a close enforced (1009), from its reason."""
    if code != 1009:
        return None
    if "inflate ratio" in reason:
        return "inflate_ratio"
    if "inflates to" in reason:
        return "inflated_size"
    if reason.startswith("frame"):
        return "frame_size"
    return "message_size"


def supervisor_label(name: str) -> str:
    """A connection's supervisor is named connection-<id>: one label for all."""
    return "connection" if name.startswith("connection-") else name


def _bump(d: dict, key: Any, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


class WorkerMetrics:
    def __init__(self) -> None:
        self.accepted = 0
        self.upgraded = 0
        self.rejected: dict[str, int] = {}                  # HTTP status ("none": dropped unanswered)
        self.closed: dict[tuple[str, str], int] = {}        # (code, initiator)
        self.limit_closes: dict[str, int] = {}              # limit
        self.handshake_buckets = [0] * (len(HANDSHAKE_BUCKETS) + 1)   # the last one: +Inf
        self.handshake_sum = 0.0
        self.messages_in = 0
        self.messages_out = 0
        self.payload_bytes_in = 0       # uncompressed message payloads
        self.payload_bytes_out = 0
        self.wire_bytes_in = 0          # bytes of the socket after the upgrade request (frames, as sent)
        self.wire_bytes_out = 0
        self.compression_recoveries = 0
        self.started: dict[tuple[str, str], int] = {}       # (supervisor, child_id)
        self.terminated: dict[tuple[str, str, str], int] = {}   # (supervisor, child_id, reason)
        self.restarted: dict[tuple[str, str], int] = {}
        self.intensity_shutdowns: dict[str, int] = {}       # supervisor

    # -- what the worker and its connections call -----------------------------------

    def handshake_done(self, seconds: float) -> None:
        self.upgraded += 1
        self.handshake_buckets[bisect.bisect_left(HANDSHAKE_BUCKETS, seconds)] += 1
        self.handshake_sum += seconds

    def rejected_with(self, status: int | None) -> None:
        _bump(self.rejected, "none" if status is None else str(status))

    def connection_closed(self, code: int | None, initiator: str | None, reason: str) -> None:
        _bump(self.closed, (code_label(code), initiator or "none"))
        limit = limit_kind(code, reason or "")
        if limit is not None:
            _bump(self.limit_closes, limit)

    def supervision_event(self, event: str, supervisor: str, kind: str, child_id: Any, **fields: Any) -> None:
        """A supervisors.events handler."""
        sup, child = supervisor_label(supervisor), str(child_id)
        if event == "child.started":
            _bump(self.started, (sup, child))
        elif event == "child.terminated":
            _bump(self.terminated, (sup, child, fields.get("reason", "other")))
        elif event == "child.restarted":
            _bump(self.restarted, (sup, child))
        elif event == "supervisor.shutdown":
            _bump(self.intensity_shutdowns, sup)

    # -- out ----------------------------------------------------------------------

    def snapshot(self) -> dict:
        """JSON-able: tuple keys become lists of [key..., value]."""
        return {
            "accepted": self.accepted, "upgraded": self.upgraded,
            "rejected": sorted(self.rejected.items()),
            "closed": [[*k, v] for k, v in sorted(self.closed.items())],
            "limit_closes": sorted(self.limit_closes.items()),
            "handshake_buckets": list(self.handshake_buckets), "handshake_sum": self.handshake_sum,
            "messages_in": self.messages_in, "messages_out": self.messages_out,
            "payload_bytes_in": self.payload_bytes_in, "payload_bytes_out": self.payload_bytes_out,
            "wire_bytes_in": self.wire_bytes_in, "wire_bytes_out": self.wire_bytes_out,
            "compression_recoveries": self.compression_recoveries,
            "started": [[*k, v] for k, v in sorted(self.started.items())],
            "terminated": [[*k, v] for k, v in sorted(self.terminated.items())],
            "restarted": [[*k, v] for k, v in sorted(self.restarted.items())],
            "intensity_shutdowns": sorted(self.intensity_shutdowns.items()),
        }


METRICS = WorkerMetrics()
