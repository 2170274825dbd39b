"""Application: the top of a Runtime's tree, parent of the root supervisor.

OTP starts a top supervisor under an application master; when a *permanent*
application's top supervisor terminates, the node stops.  This actor plays
that part: it supervises the root supervisor (never restarting it), keeps its
exit reason, and tells the Runtime (the process that owns the actor system)
when the root has exited and why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from thespian.actors import WakeupMessage

from .messages import Reply, _Request
from .spec import ANY_SIGNIFICANT, ONE_FOR_ONE, TEMPORARY, ChildSpec, SupFlags
from .supervisor import Supervisor


@dataclass
class AwaitExit(_Request):
    """Answered when the root supervisor has exited (the reply may come much later)."""


@dataclass
class StopApplication(_Request):
    """Stop the root supervisor in order; answered when it is gone."""


@dataclass
class ApplicationExit:
    root_reason: Any
    requested: bool      # True if the Runtime asked for the stop


class Application(Supervisor):
    def configure(self, root: ChildSpec) -> tuple[SupFlags, list[ChildSpec]]:
        flags = SupFlags(strategy=ONE_FOR_ONE, intensity=0, period=1.0,
                         auto_shutdown=ANY_SIGNIFICANT, name="application")
        return flags, [replace(root, restart=TEMPORARY, significant=True)]

    def init(self, *args: Any, **kwargs: Any) -> None:
        super().init(*args, **kwargs)
        self._waiters: list[tuple[Any, int]] = []
        self._root_reason: Any = None
        self._stop_requested = False
        self._result: ApplicationExit | None = None

    def receiveMessage(self, message: Any, sender: Any) -> Any:
        if self.exiting:
            # Stay to answer the Runtime until it ends the actor system.
            if isinstance(message, (AwaitExit, StopApplication)):
                self.send(sender, Reply(message.ref, self._result))
            if isinstance(message, (AwaitExit, StopApplication, WakeupMessage)):
                return None
        return super().receiveMessage(message, sender)

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, AwaitExit):
            self._waiters.append((sender, message.ref))
            self._answer_waiters()
        elif isinstance(message, StopApplication):
            self._waiters.append((sender, message.ref))
            if not self._stop_requested and self._result is None:
                self._stop_requested = True
                self._on_shutdown_request()
            self._answer_waiters()
        else:
            super().handle_message(message, sender)

    def _op_child_exited(self, child: Any, incarnation: int):
        if child.incarnation == incarnation and child.alive:
            self._root_reason = child.reason
        yield from super()._op_child_exited(child, incarnation)

    def _terminate(self, child: Any):
        reason = yield from super()._terminate(child)
        if reason is not None:
            self._root_reason = reason
        return reason

    def _report_exit(self, reason: Any) -> None:
        self._result = ApplicationExit(self._root_reason, self._stop_requested)
        self._answer_waiters()

    def _answer_waiters(self) -> None:
        if self._result is None:
            return
        for sender, ref in self._waiters:
            self.send(sender, Reply(ref, self._result))
        self._waiters.clear()
