"""Lifecycle events of this process's supervisors, for whoever watches them.

OTP supervisors send their reports to the logger's handlers and to
``sys`` debug hooks; these are the same reports as plain calls, in the
process (or in-process actor system) where the supervisor runs, for code
that counts or shows them (metrics, a live view) without reading the log
and whatever the log level:

    supervisors.events.add_handler(fn)    # fn(event, supervisor, child_id, **fields)

Events: ``child.started`` (every start, restarts included), ``child.terminated``
(a child ended abnormally: ``reason`` is ``error``, ``killed``, ``shutdown`` or
``other``), ``child.restarted`` and ``supervisor.shutdown`` (restart intensity
reached).  ``supervisor`` is the supervisor's name, ``kind`` its class name.
A handler that raises is dropped from nothing: it crashes the supervisor,
as any bug in it would.  With no handler an event costs one truth test.
"""

from __future__ import annotations

from typing import Any, Callable

from . import reasons

Handler = Callable[..., None]

HANDLERS: list[Handler] = []


def add_handler(fn: Handler) -> None:
    if fn not in HANDLERS:
        HANDLERS.append(fn)


def remove_handler(fn: Handler) -> None:
    if fn in HANDLERS:
        HANDLERS.remove(fn)


def reason_kind(reason: Any) -> str:
    """A bounded name for an exit reason (a label, not the reason itself)."""
    if isinstance(reason, reasons.Error):
        return "error"
    if reason == reasons.KILLED:
        return "killed"
    if reasons.is_normal(reason):
        return "shutdown"
    return "other"


def emit(event: str, supervisor: str, kind: str, child_id: Any, **fields: Any) -> None:
    for fn in HANDLERS:
        fn(event, supervisor=supervisor, kind=kind, child_id=child_id, **fields)
