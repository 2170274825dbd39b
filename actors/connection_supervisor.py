"""ConnectionSupervisor (in-process): one per connection, over its actors.

The ConnectionActor is temporary and significant (a dead connection is not
re-dialled; when it ends the subtree ends, ``auto_shutdown=any_significant``);
the CompressionActor, started on the ConnectionActor's request, is transient.
The context records are the worker's ledger's (wscore.ledger.worker_ledger):
it outlives this supervisor too.  Shutdown stops the ConnectionActor first
(1001 and its closing handshake, compression still there), then the rest.
"""

from __future__ import annotations

from typing import Any

from actors.connection import ConnectionActor
from actors.messages import CompressionLost
from supervisors import ANY_SIGNIFICANT, ONE_FOR_ONE, TEMPORARY, ChildSpec, SupFlags, Supervisor
from wscore.config import ServerConfig

CONNECTION = "connection"


def connection_shutdown_ms(config: ServerConfig) -> int:
    return int((config.shutdown_timeout + 1.0) * 1000)


class ConnectionSupervisor(Supervisor):
    def configure(self, config: ServerConfig, connection_id: str, peer: Any):
        self.connection_id = connection_id
        self.add_log_context(connection_id=connection_id)
        flags = SupFlags(strategy=ONE_FOR_ONE, intensity=3, period=5.0,
                         auto_shutdown=ANY_SIGNIFICANT, name=f"connection-{connection_id}")
        ws = ChildSpec(CONNECTION, (ConnectionActor, (config, connection_id, peer)),
                       restart=TEMPORARY, significant=True, shutdown=connection_shutdown_ms(config),
                       log_context={"connection_id": connection_id})
        return flags, [ws]

    def shutdown_order(self, children: list) -> list:
        first = [c for c in children if c.spec.id == CONNECTION]
        return first + [c for c in reversed(children) if c.spec.id != CONNECTION]

    def handle_child_exit(self, spec: ChildSpec, pid: int | None, reason: Any, details: Any,
                          reported: bool) -> None:
        # The CompressionActor is restarted (transient) after this; the
        # ConnectionActor drops its requests until the successor says it started.
        if spec.id == "compression" and not self._shutting_down:
            for c in self.children:
                if c.spec.id == CONNECTION and c.alive:
                    self.send(c.address, CompressionLost(reason))
