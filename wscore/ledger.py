"""The compression context ledger: the one writer of context records.

``compression.context.opened`` and ``compression.context.released`` come
from here and nowhere else, so the log proves each context was released
exactly once.  A ledger outlives what it records: one per worker process
(it outlives every actor of the worker, and a kill of any of them — a
CompressionActor, its ConnectionSupervisor, the whole connections tree —
ends in :meth:`owner_died`; a worker ending with contexts still open, after
a crash of its loop, ends in :meth:`process_ending`).

Opening is write-ahead: :meth:`opened` is called (and answered) before the
zlib objects exist, so a context its owner dies holding is always on record.
Every release after the first is a no-op here as in the contexts themselves
(Bandit #478's second close).  Plain class: no processes, no actors.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

Log = Callable[..., None]


class ContextLedger:
    def __init__(self, log: Log) -> None:
        self._log = log                       # log(event, **fields)
        self._open: dict[str, Any] = {}       # context id -> owner
        self._fields: dict[str, dict] = {}    # context id -> fields for its records (connection_id)
        self.opened_total = 0
        self.released_total = 0
        self.released_by_cause: dict[str, int] = {}    # close | shutdown | error | owner_died

    def opened(self, contexts: Iterable[dict], owner_pid: int, owner: Any = None, **fields: Any) -> tuple[str, ...]:
        """Record contexts about to be made (each: context_id, direction,
        window_bits, primed_bytes) by the CompressionActor ``owner`` (its
        actor id; its pid if None) in process ``owner_pid``; returns their ids.
        ``fields`` (e.g. connection_id) go into this context's records."""
        owner = owner_pid if owner is None else owner
        ids = []
        for ctx in contexts:
            cid = ctx["context_id"]
            if cid in self._open:
                continue
            self._open[cid] = owner
            if fields:
                self._fields[cid] = fields
            self.opened_total += 1
            ids.append(cid)
            extra = {} if owner == owner_pid else {"owner_actor_id": owner}
            self._log("compression.context.opened", child_id="compression", context_id=cid,
                      direction=ctx["direction"], window_bits=ctx["window_bits"], owner_pid=owner_pid,
                      owner_actor="CompressionActor", primed_bytes=ctx.get("primed_bytes", 0), **extra,
                      **fields)
        return tuple(ids)

    def released(self, context_id: str, cause: str, by: Any) -> bool:
        """Record a release; False (nothing written) if it is not open."""
        if self._open.pop(context_id, None) is None:
            return False
        self.released_total += 1
        self.released_by_cause[cause] = self.released_by_cause.get(cause, 0) + 1
        self._log("compression.context.released", child_id="compression", context_id=context_id,
                  cause=cause, by=by, **self._fields.pop(context_id, {}))
        return True

    def owner_died(self, owner: Any, by: Any) -> list[str]:
        """The owner is gone without releasing (killed): its contexts went with it."""
        gone = [cid for cid, o in self._open.items() if o == owner]
        for cid in gone:
            self.released(cid, "owner_died", by)
        return gone

    def process_ending(self, by: Any) -> list[str]:
        """The process is ending with contexts still open (its actors were not
        stopped: a crash): every one goes with it, recorded as owner_died."""
        gone = list(self._open)
        for cid in gone:
            self.released(cid, "owner_died", by)
        return gone

    def open_contexts(self, owner: Any = None) -> list[str]:
        return [cid for cid, o in self._open.items() if owner is None or o == owner]


_WORKER_LEDGER: ContextLedger | None = None


def worker_ledger() -> ContextLedger:
    """This worker process's ledger (one per process: the in-process tier's
    actors share it; it outlives all of them)."""
    global _WORKER_LEDGER
    if _WORKER_LEDGER is None:
        from supervisors import get_logger
        log = get_logger(actor="ContextLedger")
        _WORKER_LEDGER = ContextLedger(lambda event, **kw: log.info(event, **kw))
    return _WORKER_LEDGER
