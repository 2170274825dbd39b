"""ConnectionSupervisor: one per connection, over that connection's actors.

Children: the ConnectionActor (temporary and significant: a dead connection
is not re-dialled, and when it ends the whole subtree ends with it,
``auto_shutdown=any_significant``), and, for a compressed connection, the
CompressionActor that owns its zlib contexts (added after the handshake).
"""

from __future__ import annotations

from typing import Any

from actors.connection import ConnectionActor
from supervisors import ANY_SIGNIFICANT, ONE_FOR_ONE, TEMPORARY, ChildSpec, SupFlags, Supervisor
from wsup.config import ServerConfig


def connection_shutdown_ms(config: ServerConfig) -> int:
    """A connection gets its graceful-close time, then a little, then SIGKILL."""
    return int((config.shutdown_timeout + 1.0) * 1000)


class ConnectionSupervisor(Supervisor):
    def configure(self, config: ServerConfig, connection_id: str, peer: Any):
        flags = SupFlags(strategy=ONE_FOR_ONE, intensity=3, period=5.0,
                         auto_shutdown=ANY_SIGNIFICANT, name=f"connection-{connection_id}")
        ws = ChildSpec("connection", (ConnectionActor, (config, connection_id, peer)),
                       restart=TEMPORARY, significant=True, shutdown=connection_shutdown_ms(config),
                       log_context={"connection_id": connection_id})
        return flags, [ws]
