"""Looking up live actors in a running supervision tree from a test.

A child shows as ``"restarting"`` in which_children until its supervisor has
received its init acknowledgement. The client can already be served by then
(the ConnectionActor answers before its per-connection supervisor has acked
to the connections supervisor), so a test that wants refs must wait for them.
"""

from __future__ import annotations

from logutil import wait_until

from supervisors import ChildRef


def running_children(rt, sup, count: int | None = None, timeout: float = 10.0) -> list[tuple]:
    """which_children of ``sup`` once every child (and ``count`` of them, if
    given) is running: [(id, ChildRef, type, modules)]."""
    def ready():
        kids = rt.which_children(sup)
        if count is not None and len(kids) != count:
            return None
        if all(isinstance(ref, ChildRef) for _, ref, _, _ in kids):
            return kids
        return None
    return wait_until(ready, timeout=timeout, message=f"children of {sup} running")


def connection_subtrees(server) -> list[tuple]:
    """which_children of every partition of `connections`, together: one entry
    per connection subtree (its ref is not a ChildRef while it is starting)."""
    return [kid for part in server.partitions() for kid in server.runtime.which_children(part)]


def the_connection_subtree(server, timeout: float = 10.0):
    """The only per-connection supervisor of a server with one connection."""
    def one():
        kids = connection_subtrees(server)
        return kids[0][1] if len(kids) == 1 and isinstance(kids[0][1], ChildRef) else None
    return wait_until(one, timeout=timeout, message="one connection subtree running")


def children_by_id(rt, sup, timeout: float = 10.0) -> dict:
    return {cid: ref for cid, ref, _, _ in running_children(rt, sup, timeout=timeout)}
