"""The observer's view of the server: its workers, their health, rates and events.

Plain class, no I/O: the ObserverActor feeds it what the workers' control
sockets say (linked, stats, tree, events, unlinked) and asks it for the
health and readiness answers, the page's summary and what to expose."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

RATE_KEYS = ("accepted", "upgraded", "messages_in", "messages_out", "wire_bytes_in", "wire_bytes_out",
             "payload_bytes_in", "payload_bytes_out")


def closed_total(counters: dict) -> int:
    return sum(row[-1] for row in counters.get("closed", ()))


class WorkerView:
    def __init__(self, index: int) -> None:
        self.index = index
        self.linked = False
        self.pid: int | None = None
        self.stopping = False
        self.stats: dict | None = None      # the last stats answer
        self.tree: dict | None = None       # the last tree answer
        self.restarts = 0                   # seen: a new pid after the link was lost
        self.rates: dict[str, float] = {}
        self._last: tuple[float, dict] | None = None

    def update_rates(self, stats: dict) -> None:
        now, counters = stats["t"], dict(stats["counters"], closed=closed_total(stats["counters"]))
        last = self._last
        if last is not None and now > last[0] and stats.get("pid") == self.pid:
            dt = now - last[0]
            self.rates = {k: max(0.0, (counters[k] - last[1][k]) / dt) for k in (*RATE_KEYS, "closed")}
        self._last = (now, counters)


class ObserverState:
    def __init__(self, workers: int, pid: int) -> None:
        self.pid = pid
        self.started_at = time.time()
        self.workers = {i: WorkerView(i) for i in range(1, workers + 1)}
        self.stopping = False
        self.events: deque = deque(maxlen=200)

    # -- what the workers say -------------------------------------------------------

    def linked(self, index: int, answer: dict) -> bool:
        """A link to worker ``index`` is up (its watch answer).  True if it is a
        new worker process in that place: a restart."""
        w = self.workers[index]
        pid = answer.get("pid")
        restarted = w.pid is not None and pid != w.pid
        if restarted:
            w.restarts += 1
            w._last, w.rates = None, {}
        w.linked, w.pid, w.stopping = True, pid, bool(answer.get("stopping"))
        for e in answer.get("events", ()):
            if e not in self.events:
                self.events.append(e)
        self.stats(index, answer)
        return restarted

    def unlinked(self, index: int) -> None:
        w = self.workers[index]
        w.linked, w.stats, w.tree = False, None, None

    def stats(self, index: int, stats: dict) -> None:
        w = self.workers[index]
        if "counters" in stats:
            w.stats = stats
            w.update_rates(stats)

    def tree(self, index: int, tree: dict) -> None:
        self.workers[index].tree = tree

    def event(self, record: dict) -> None:
        if record.get("event") == "worker.stopping":
            self.workers[record["worker"]].stopping = True
        self.events.append(record)

    # -- answers --------------------------------------------------------------------

    def health(self) -> tuple[int, dict]:
        """/healthz: 200 while every worker is up."""
        up = {f"worker-{i}": w.linked for i, w in self.workers.items()}
        return (200 if all(up.values()) else 503), {"status": "ok" if all(up.values()) else "unhealthy",
                                                      "workers": up}

    def readiness(self) -> tuple[int, dict]:
        """/readyz: 503 while starting (a worker not up yet) and while shutting down."""
        if self.stopping or any(w.stopping for w in self.workers.values()):
            return 503, {"status": "shutting down"}
        if not all(w.linked for w in self.workers.values()):
            waiting = [f"worker-{i}" for i, w in self.workers.items() if not w.linked]
            return 503, {"status": "starting" if not any(w.pid for w in self.workers.values()) else "degraded",
                         "waiting_for": waiting}
        return 200, {"status": "ready"}

    def summary(self) -> dict:
        """What the live page draws (pushed every second)."""
        workers = []
        for i, w in self.workers.items():
            s = w.stats or {}
            t = w.tree or {}
            workers.append({"index": i, "up": w.linked, "pid": w.pid, "stopping": w.stopping,
                            "restarts": w.restarts, "connections_open": s.get("connections_open", 0),
                            "pending_handshakes": s.get("pending_handshakes", 0),
                            "contexts_open": s.get("contexts_open", 0), "rates": w.rates,
                            "connections": t.get("connections", [])})
        rates = {k: sum(w.rates.get(k, 0.0) for w in self.workers.values()) for k in (*RATE_KEYS, "closed")}
        health, _ = self.health()
        ready, why = self.readiness()
        return {"type": "summary", "t": time.time(), "observer_pid": self.pid, "healthy": health == 200,
                "ready": ready == 200, "status": why["status"], "workers": workers, "rates": rates,
                "connections_open": sum(w["connections_open"] for w in workers)}

    def snapshots(self) -> dict[int, dict]:
        return {i: w.stats for i, w in self.workers.items() if w.linked and w.stats is not None}

    def worker_restarts(self) -> dict[int, int]:
        return {i: w.restarts for i, w in self.workers.items()}

    def pids(self) -> dict[str, Any]:
        out = {"observer": self.pid}
        out.update({f"worker-{i}": w.pid for i, w in self.workers.items() if w.linked})
        return out
