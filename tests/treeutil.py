"""Reaching a running server's workers and their in-process actors from a test.

The connections' actors live inside the worker processes (in-process tier):
a test reaches them through the WorkerActor's requests — KillInProcess (an
untrappable in-process kill) and WorkerInfo (what the worker holds)."""

from __future__ import annotations

from logutil import wait_until

from actors.worker import KillInProcess, WorkerInfo
from supervisors import ChildRef


def workers(server) -> dict[str, ChildRef]:
    """The running workers: {"worker-1": ChildRef, ...}."""
    return server.workers()


def worker_of(server, connection_id: str) -> ChildRef:
    """The worker holding a connection (ids are <worker index>-<random>)."""
    return workers(server)[f"worker-{connection_id.split('-')[0]}"]


def kill_in_process(server, kind: str, connection_id: str) -> list[str]:
    """Kill the actor of class ``kind`` of that connection: the actor ids killed."""
    return server.runtime.call(worker_of(server, connection_id),
                               KillInProcess(kind=kind, connection_id=connection_id))


def worker_info(server) -> dict[str, dict]:
    return {wid: server.runtime.call(ref, WorkerInfo()) for wid, ref in workers(server).items()}


def wait_connections(server, n: int, timeout: float = 10.0) -> None:
    """Until the workers hold ``n`` ConnectionActors in all."""
    wait_until(lambda: sum(i["connections"] for i in worker_info(server).values()) == n, timeout=timeout,
               message=f"{n} connections held")


def running_children(rt, sup, count: int | None = None, timeout: float = 10.0) -> list[tuple]:
    """which_children of a process-tier supervisor once every child (and
    ``count`` of them, if given) is running: [(id, ChildRef, type, modules)]."""
    def ready():
        kids = rt.which_children(sup)
        if count is not None and len(kids) != count:
            return None
        if all(isinstance(ref, ChildRef) for _, ref, _, _ in kids):
            return kids
        return None
    return wait_until(ready, timeout=timeout, message=f"children of {sup} running")
