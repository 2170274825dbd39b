"""ConnectionSupervisor: one per connection, over that connection's actors.

Children: the ConnectionActor (temporary and significant: a dead connection
is not re-dialled, and when it ends the whole subtree ends with it,
``auto_shutdown=any_significant``), and, for a compressed connection, the
CompressionActor that owns its zlib contexts (transient: restarted after a
crash; started by the ConnectionActor's request once the handshake agreed on
permessage-deflate).

This supervisor is also the single writer of the compression context records:
``compression.context.opened`` and ``compression.context.released`` come from
its CompressionActor's notices and exit report, or — when that actor died
without a report (SIGKILL) — from the death itself, with cause
``owner_died``.  One writer with one table: each context is recorded
released exactly once.

Its own shutdown stops the ConnectionActor first (it sends 1001 and finishes
its closing handshake with its compression still available), then the rest in
reverse start order.
"""

from __future__ import annotations

import os
from typing import Any

from actors.connection import ConnectionActor
from supervisors import ANY_SIGNIFICANT, ONE_FOR_ONE, TEMPORARY, ChildSpec, SupFlags, Supervisor
from wsup.config import ServerConfig

CONNECTION = "connection"
COMPRESSION = "compression"


def connection_shutdown_ms(config: ServerConfig) -> int:
    """A connection gets its graceful-close time, then a little, then SIGKILL."""
    return int((config.shutdown_timeout + 1.0) * 1000)


class ConnectionSupervisor(Supervisor):
    def configure(self, config: ServerConfig, connection_id: str, peer: Any):
        flags = SupFlags(strategy=ONE_FOR_ONE, intensity=3, period=5.0,
                         auto_shutdown=ANY_SIGNIFICANT, name=f"connection-{connection_id}")
        ws = ChildSpec(CONNECTION, (ConnectionActor, (config, connection_id, peer)),
                       restart=TEMPORARY, significant=True, shutdown=connection_shutdown_ms(config),
                       log_context={"connection_id": connection_id})
        return flags, [ws]

    def init(self, *args: Any, **kwargs: Any) -> None:
        super().init(*args, **kwargs)
        self._open_contexts: dict[str, int] = {}   # context id -> owner pid

    def shutdown_order(self, children: list) -> list:
        first = [c for c in children if c.spec.id == CONNECTION]
        return first + [c for c in reversed(children) if c.spec.id != CONNECTION]

    def handle_child_notice(self, spec: ChildSpec, pid: int | None, payload: Any) -> Any:
        kind, items = payload
        if kind == "compression.opened":
            # write-ahead: on record before the CompressionActor makes them (it waits for the answer)
            for ctx in items:
                self._open_contexts[ctx["context_id"]] = ctx["owner"]
                self._rlog.info("compression.context.opened", child_id=COMPRESSION, context_id=ctx["context_id"],
                                direction=ctx["direction"], window_bits=ctx["window_bits"],
                                owner_pid=ctx["owner"], owner_actor="CompressionActor",
                                primed_bytes=ctx.get("primed_bytes", 0))
            return ("compression.recorded", tuple(ctx["context_id"] for ctx in items))
        elif kind == "compression.released":
            for context_id, cause, by in items:
                self._record_release(context_id, cause, by)

    def handle_child_exit(self, spec: ChildSpec, pid: int | None, reason: Any, details: Any,
                          reported: bool) -> None:
        if isinstance(details, dict):
            for context_id, cause, by in details.get("released", ()):
                self._record_release(context_id, cause, by)
        for context_id, owner in list(self._open_contexts.items()):
            if owner == pid:  # its process is gone, and the contexts with it
                self._record_release(context_id, "owner_died", os.getpid())

    def _record_release(self, context_id: str, cause: str, by: int) -> None:
        if self._open_contexts.pop(context_id, None) is not None:
            self._rlog.info("compression.context.released", child_id=COMPRESSION, context_id=context_id,
                            cause=cause, by=by)
