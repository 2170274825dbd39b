"""A supervisor for benchmarks that run a CompressionActor without a connection."""

from __future__ import annotations

from typing import Any

from supervisors import ChildSpec, Supervisor


class RecordingSupervisor(Supervisor):
    """Answers a CompressionActor's write-ahead open as the ConnectionSupervisor does
    ("on record, go on"), without writing records: the actor waits for that answer before
    it makes its zlib contexts (docs/compression.md)."""

    def handle_child_notice(self, spec: ChildSpec, pid: int | None, payload: Any) -> Any:
        kind, items = payload
        if kind == "compression.opened":
            return ("compression.recorded", tuple(ctx["context_id"] for ctx in items))
        return None
