"""The protocol between supervisors, their children and their clients.

All messages are small picklable dataclasses (Thespian pickles every message
on the TCP base).

Start:     supervisor --Init--> child;  child --InitAck | InitFailed--> supervisor
Stop:      supervisor --ShutdownRequest--> child --Exiting(reason)--> supervisor
           supervisor --ActorExitRequest--> child (the process exits)
Crash/exit on its own: child --Exiting(reason)--> supervisor --ActorExitRequest--> child

Children are told apart by ``token`` (their incarnation number, given in
Init and echoed back), not by address: a dead child's TCP port may be reused
by its successor before the death is handled.

A child never exits before its supervisor has its reason: it reports, then
waits to be told to exit (it drops every other message meanwhile).  So the
reason always arrives before Thespian's ChildActorExited, and a death without
a report means the child was killed.

Operations (OTP's supervisor API) are requests answered with OTP-shaped
results: ``("ok", value)`` or ``("error", reason)``; ``"ok"`` alone where OTP
answers ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

from .log import LogConfig


@dataclass
class Init:
    child_id: Hashable
    args: tuple
    kwargs: dict
    log: LogConfig
    supervisor_name: str
    supervisor_pid: int
    log_context: dict = field(default_factory=dict)
    token: int = 0       # this incarnation's number; echoed in everything the child sends back
    report_start: bool = True   # False: the supervisor's supervisor.child.started is the start's only record
    # True: the supervisor runs in this thread (in-process tier): a report to it cannot be lost and
    # it cannot be gone while we live, so reports are not resent and no self-exit timer is armed
    exact_delivery: bool = False


@dataclass
class InitAck:
    pid: int
    start_time: int | None
    token: int = 0
    actor_id: str | None = None    # unique in the server (supervisors.tiers)


@dataclass
class InitFailed:
    pid: int
    reason: Any
    token: int = 0


@dataclass
class ShutdownRequest:
    """Stop now: run terminate("shutdown") and report."""


@dataclass
class Exiting:
    reason: Any
    details: Any = None      # SupervisedActor.exit_details(), for the supervisor's hook
    token: int = 0


@dataclass
class ChildNotice:
    """A child tells its supervisor something (SupervisedActor.notify_supervisor);
    handled by Supervisor.handle_child_notice."""
    payload: Any
    token: int = 0


@dataclass
class NoticeReply:
    """The supervisor's answer to a ChildNotice (what handle_child_notice
    returned, when not None); reaches the child's handle_message."""
    payload: Any


@dataclass
class _Request:
    ref: int = 0


@dataclass
class WhichChildren(_Request):
    """-> [(id, ChildRef | "restarting" | "undefined", type, [module])]"""


@dataclass
class CountChildren(_Request):
    """-> {"specs", "active", "supervisors", "workers"}"""


@dataclass
class StartChild(_Request):
    """A ChildSpec (static supervisors; Elixir DynamicSupervisor style too), or
    a tuple of extra arguments appended to a simple_one_for_one template."""
    spec_or_args: Any = None


@dataclass
class TerminateChild(_Request):
    """By child id; by pid (an int) or ChildRef on a simple_one_for_one."""
    child: Any = None


@dataclass
class RestartChild(_Request):
    child_id: Any = None


@dataclass
class DeleteChild(_Request):
    child_id: Any = None


@dataclass
class GetChildspec(_Request):
    child: Any = None


@dataclass
class Reply:
    ref: int
    result: Any


@dataclass(frozen=True)
class ChildRef:
    """A running child: its OS pid, its Thespian address (to message it) and
    its actor id (unique in the server: in-process actors share a pid)."""
    pid: int
    address: Any = field(compare=False, repr=False)
    actor_id: str | None = None

    def __str__(self) -> str:
        return f"<{self.actor_id or self.pid}>"
