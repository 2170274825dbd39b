"""Exit reasons, as in OTP.

Thespian tells a parent only *that* a child exited; the supervisors library
carries *why*: a supervised actor reports its reason to its supervisor before
it exits (see :mod:`supervisors.actor`).  A child that dies without reporting
(SIGKILL, a segfault, ``os._exit``) exited with :data:`KILLED`, which is
abnormal.

Reasons are plain picklable values:

* ``"normal"``                         normal exit
* ``"shutdown"``                       stopped by its supervisor (or asked to stop)
* ``("shutdown", term)``               a shutdown with extra information
* :class:`Error`                       an exception escaped the actor
* ``"killed"``                         died without a report
* any other value                      an abnormal exit with that reason
"""

from __future__ import annotations

import traceback as _tb
from dataclasses import dataclass
from typing import Any

NORMAL = "normal"
SHUTDOWN = "shutdown"
KILLED = "killed"


@dataclass(frozen=True)
class Error:
    """An abnormal exit caused by an exception (OTP: ``{Class, Reason, Stacktrace}``)."""

    type: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> "Error":
        return cls(
            type=f"{type(exc).__module__}.{type(exc).__qualname__}"
            if type(exc).__module__ != "builtins" else type(exc).__qualname__,
            message=str(exc),
            traceback="".join(_tb.format_exception(type(exc), exc, exc.__traceback__)),
        )


def shutdown_with(term: Any) -> tuple:
    return (SHUTDOWN, term)


def is_normal(reason: Any) -> bool:
    """True for the reasons after which a transient child is not restarted and
    that OTP does not report: normal, shutdown, (shutdown, Term)."""
    if reason in (NORMAL, SHUTDOWN):
        return True
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == SHUTDOWN


def to_json(reason: Any) -> Any:
    """A JSON-friendly rendering of a reason for the structured log."""
    if isinstance(reason, Error):
        return {"error": reason.type, "message": reason.message, "traceback": reason.traceback}
    if isinstance(reason, tuple):
        return [to_json(r) for r in reason]
    if isinstance(reason, (str, int, float, bool)) or reason is None:
        return reason
    return repr(reason)
