"""supervisors: Erlang/OTP supervision for Thespian actors.

A reusable library (it knows nothing of WebSockets): child specs as data,
one_for_one / one_for_all / rest_for_one / simple_one_for_one strategies,
restart types and intensity as in OTP, exit reasons carried from child to
supervisor, let-it-crash actors, ordered shutdown, OTP-shaped structlog
reports.  See docs/supervisors.md.
"""

from . import _platform  # noqa: F401  (loopback-only Thespian sockets, before anything else)
from .actor import SupervisedActor
from .application import ApplicationExit
from .log import LogConfig, get_logger
from .messages import ChildRef, NoticeReply
from .reasons import KILLED, NORMAL, SHUTDOWN, Error, is_normal, shutdown_with
from .runtime import Runtime, StartError
from .spec import (ALL_SIGNIFICANT, ANY_SIGNIFICANT, BRUTAL_KILL, INFINITY, NEVER,
                   ONE_FOR_ALL, ONE_FOR_ONE, PERMANENT, REST_FOR_ONE, SIMPLE_ONE_FOR_ONE,
                   SUPERVISOR, TEMPORARY, TRANSIENT, WORKER, ChildSpec, SupFlags,
                   supervisor_spec)
from .supervisor import Supervisor
from .partition import PartitionSupervisor  # noqa: E402

__all__ = [
    "SupervisedActor", "Supervisor", "PartitionSupervisor", "Runtime", "StartError", "ApplicationExit",
    "ChildSpec", "SupFlags", "supervisor_spec", "ChildRef", "NoticeReply", "LogConfig", "get_logger",
    "Error", "NORMAL", "SHUTDOWN", "KILLED", "is_normal", "shutdown_with",
    "PERMANENT", "TRANSIENT", "TEMPORARY", "BRUTAL_KILL", "INFINITY", "WORKER", "SUPERVISOR",
    "ONE_FOR_ONE", "ONE_FOR_ALL", "REST_FOR_ONE", "SIMPLE_ONE_FOR_ONE",
    "NEVER", "ANY_SIGNIFICANT", "ALL_SIGNIFICANT",
]
