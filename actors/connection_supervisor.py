"""ConnectionSupervisor: one per connection, over that connection's actors.

Children: the ConnectionActor (temporary and significant: a dead connection
is not re-dialled, and when it ends the whole subtree ends with it,
``auto_shutdown=any_significant``), and, for a compressed connection, the
CompressionActor that owns its zlib contexts (transient: restarted after a
crash; started by the ConnectionActor's request once the handshake agreed on
permessage-deflate).

This supervisor also holds the connection's compression context ledger
(wsup.ledger), the single writer of ``compression.context.opened`` and
``compression.context.released``: from its CompressionActor's notices and
exit report, or — when that actor died without a report (SIGKILL) — from the
death itself, with cause ``owner_died``.  One writer with one table: each
context is recorded released exactly once.

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
from wsup.ledger import ContextLedger

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
        self.ledger = ContextLedger(lambda event, **kw: self._rlog.info(event, **kw))

    def shutdown_order(self, children: list) -> list:
        first = [c for c in children if c.spec.id == CONNECTION]
        return first + [c for c in reversed(children) if c.spec.id != CONNECTION]

    def handle_child_notice(self, spec: ChildSpec, pid: int | None, payload: Any) -> Any:
        kind, items = payload
        if kind == "compression.opened":
            # write-ahead: on record before the CompressionActor makes them (it waits for the answer)
            for ctx in items:
                self.ledger.opened([ctx], ctx["owner"])
            return ("compression.recorded", tuple(ctx["context_id"] for ctx in items))
        elif kind == "compression.released":
            for context_id, cause, by in items:
                self.ledger.released(context_id, cause, by)

    def handle_child_exit(self, spec: ChildSpec, pid: int | None, reason: Any, details: Any,
                          reported: bool) -> None:
        if isinstance(details, dict):
            for context_id, cause, by in details.get("released", ()):
                self.ledger.released(context_id, cause, by)
        if pid is not None:   # its process is gone, and the contexts with it
            self.ledger.owner_died(pid, os.getpid())
