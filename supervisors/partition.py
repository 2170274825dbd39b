"""PartitionSupervisor: a supervisor over partitions that are stopped together.

Elixir's PartitionSupervisor starts K copies of one child so that callers can
spread work over them (routing is up to the caller: ``which_children`` gives
the partitions' addresses).  This one supervises whatever partitions it is
given, with the usual flags and strategies; the one difference from a plain
Supervisor is its own shutdown, which stops every partition at once (each
still as its spec's ``shutdown`` says) instead of one after the other:
partitions are peers, and stopping them in turn would add their shutdown
times up.  Restarts are unchanged (OTP order).
"""

from __future__ import annotations

from .supervisor import Supervisor


class PartitionSupervisor(Supervisor):
    def _terminate_all(self):
        yield from self._terminate_many(list(self.children))
