"""Reaching a running server's workers and their in-process actors from a test.

The connections' actors live inside the worker processes (in-process tier):
a test reaches them through the WorkerActor's requests — KillInProcess (an
untrappable in-process kill) and WorkerInfo (what the worker holds)."""

from __future__ import annotations

from actors.worker import KillInProcess
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
