"""SupervisedActor: the base class of every actor a supervisor starts.

It gives a Thespian actor OTP's process semantics:

* **start**: the supervisor sends :class:`~supervisors.messages.Init`; the
  actor calls ``init(*args, **kwargs)`` and acknowledges (OTP ``init/1``).
  If ``init`` raises, the start failed.
* **let it crash**: an exception escaping ``handle_message`` crashes the
  actor: a crash report is logged, ``terminate(reason)`` runs, the reason is
  reported to the supervisor and the process exits; the supervisor starts a
  *fresh* actor.  (Thespian's own behaviour — retry the message, then send a
  PoisonMessage and keep the actor alive with its state — never happens.)
* **exit reasons**: ``stop(reason)`` exits with ``normal``, ``shutdown``,
  ``("shutdown", term)`` or anything else; the reason reaches the supervisor
  before the process exits.
* **reports**: ``actor.started``, ``actor.stopped`` (reason) and
  ``actor.crashed`` (exception type, message, traceback, message type).

Subclasses override ``init``, ``handle_message``, ``terminate`` and, to watch
file descriptors (ThespianWatch, TCP base only), ``watched_fds``.
"""

from __future__ import annotations

from typing import Any

from thespian.actors import (Actor, ActorExitRequest, ThespianWatch, WakeupMessage)

from . import faults
from . import log as _log
from . import reasons
from .messages import ChildNotice, Exiting, Init, InitAck, InitFailed, ShutdownRequest
from .tiers import tier_of

# If the supervisor does not end us within this many seconds after our exit
# report (it died, or is stuck), we exit by ourselves.
SELF_EXIT_AFTER = 10.0
# The report is sent again until the supervisor answers, after 1, 2, 4, 8 s:
# under overload Thespian can drop a message (seen with ~900 connections
# closing at once), and a lost report would make a clean exit look like a
# kill.  Backing off matters: a supervisor busy with hundreds of exits must
# not be flooded with copies (each one it answers is a send that Thespian
# retries once the child is gone).
REPORT_RESEND = 1.0
_SELF_EXIT = "__supervisors_self_exit__"

NEW, RUNNING, EXITING = "new", "running", "exiting"


# Messages _sup_receive handles itself (or that need its phase checks); every
# other class goes straight to handle_message while the actor runs.
_CONTROL = (ActorExitRequest, Init, ShutdownRequest)

class SupervisedActor(Actor):
    """Base class for supervised actors (workers and supervisors)."""

    # -- hooks for subclasses -------------------------------------------------

    def init(self, *args: Any, **kwargs: Any) -> None:
        """Called once, in the new process, with the child spec's arguments."""

    def handle_message(self, message: Any, sender: Any) -> None:
        """Called for every message that is not part of the supervision
        protocol (including Thespian's WakeupMessage and WatchMessage)."""

    def terminate(self, reason: Any) -> None:
        """Called once before the actor exits (normal stop, shutdown or
        crash), not when it is killed.  Release what the actor owns here."""

    def watched_fds(self) -> list[int]:
        """File descriptors to watch for readability (ThespianWatch)."""
        return []

    def exit_details(self) -> Any:
        """Sent to the supervisor with the exit reason, after ``terminate``
        (e.g. which resources were released); see Supervisor.handle_child_exit."""
        return None

    # -- API for subclasses ---------------------------------------------------

    def stop(self, reason: Any = reasons.NORMAL) -> None:
        """Exit with ``reason`` once the current message has been handled."""
        if self._sup_phase == RUNNING:
            self._exit_with(reason)

    def notify_supervisor(self, payload: Any) -> None:
        """Tell the supervisor something (Supervisor.handle_child_notice)."""
        if self._sup_parent is not None:
            self.send(self._sup_parent, ChildNotice(payload, self._sup_token))

    @property
    def log(self) -> Any:
        return self._sup_log

    @property
    def supervisor(self) -> Any:
        """The supervisor's Thespian address."""
        return self._sup_parent

    @property
    def child_id(self) -> Any:
        return self._sup_child_id

    @property
    def exiting(self) -> bool:
        return self._sup_phase == EXITING

    @property
    def actor_id(self) -> str | None:
        """Unique in the server: the pid, qualified by the in-process address
        for an actor that shares its process (see supervisors.tiers)."""
        return self._sup_actor_id

    def add_log_context(self, **fields: Any) -> None:
        """Fields every later record of this actor carries (e.g. the
        connection it serves, when its start arguments say so)."""
        self._sup_log_context = {**self._sup_log_context, **fields}
        if self._sup_log is not None:
            self._sup_log = self._sup_log.bind(**fields)

    @property
    def tier(self) -> Any:
        """The supervision tier this actor runs on (supervisors.tiers)."""
        if self._sup_tier is None:
            self._sup_tier = tier_of(self)
        return self._sup_tier

    # -- machinery ------------------------------------------------------------

    _sup_phase = NEW
    _sup_parent = None
    _sup_child_id = None
    _sup_log: Any = None
    _sup_current_message = None
    _sup_log_context: dict = {}
    _sup_token = 0
    _sup_report_start = True
    _sup_exact = False
    _sup_report: Any = None
    _sup_tier: Any = None
    _sup_actor_id: str | None = None
    _sup_pid = 0
    _sup_start_time: int | None = None
    _sup_killed = False     # set by an in-process kill: dropped without terminate
    _sup_fast = False       # RUNNING and not killed: receiveMessage's short path to _handle
    _sup_gone = False

    def receiveMessage(self, message: Any, sender: Any) -> Any:
        if self._sup_fast and not isinstance(message, _CONTROL) and not faults.ACTIVE:
            return self._handle(message, sender)   # the common case: a running actor, an ordinary message
        if not faults.ACTIVE:
            return self._sup_receive(message, sender)
        faults.exit_ends_actor_only(self.tier.exit_ends_actor_only)
        try:
            return self._sup_receive(message, sender)
        except faults.FaultExit:
            # An exit fault on the in-process tier: the untrappable kill of this actor.
            if isinstance(message, ActorExitRequest):
                self._sup_killed, self._sup_fast = True, False
                self._dropped(killed=True)   # Thespian removes us after this message
            else:
                self.tier.kill_address(self.myAddress)
            return None

    def _sup_receive(self, message: Any, sender: Any) -> Any:
        if self._sup_phase == RUNNING and not self._sup_killed and not isinstance(message, _CONTROL):
            return self._handle(message, sender)   # the common case: a running actor, an ordinary message
        if self._sup_killed:
            if isinstance(message, ActorExitRequest):
                self._dropped(killed=True)
            return None   # a killed actor handles nothing, not even its exit
        phase = self._sup_phase
        if isinstance(message, ActorExitRequest):
            if phase == RUNNING:
                # Not asked by our supervisor after a report: Thespian's
                # system shutdown, a signal, or a stranger.  Treat as shutdown.
                self._exit_with(reasons.SHUTDOWN)
            self._dropped(killed=False)
            return None
        if phase == NEW:
            if isinstance(message, Init):
                self._on_init(message, sender)
                return self._watch()
            return None  # nothing is handled before Init
        if phase == EXITING:
            if (isinstance(message, WakeupMessage) and isinstance(message.payload, tuple)
                    and message.payload[:1] == (_SELF_EXIT,)):
                self._waiting_to_exit(message.payload[1])
            return None  # a dead actor walking handles nothing
        if isinstance(message, ShutdownRequest) and sender == self._sup_parent:
            self._on_shutdown_request()
            return self._watch()
        return self._handle(message, sender)

    def _handle(self, message: Any, sender: Any) -> Any:
        self._sup_current_message = message
        try:
            self.handle_message(message, sender)
        except Exception as exc:  # let it crash: report and exit
            self._crash(exc, message)
        finally:
            self._sup_current_message = None
        return self._watch() if self._sup_watches else None

    def _sup_forget(self) -> None:
        """The tier has dropped this actor (after terminate, or killed): let go of
        everything it references, so none of it waits for the cycle collector.
        Subclasses that own a graph with cycles of its own break them, then call this."""
        self.__dict__.clear()

    def _dropped(self, killed: bool) -> None:
        """Thespian removes this actor after this message: tell the tier
        (in-process: its death hooks release what the runtime holds for it)."""
        if not self._sup_gone:
            self._sup_gone = True
            self.tier.died(self, killed)

    # Whether to ask Thespian to watch watched_fds() (multiprocTCPBase's
    # ThespianWatch): not on the in-process tier, whose loop owns readiness.
    _sup_watches = True

    def _watch(self) -> Any:
        if self._sup_phase != RUNNING:
            return None
        fds = self.watched_fds()
        return ThespianWatch(list(fds)) if fds else None

    def _on_init(self, msg: Init, sender: Any) -> None:
        tier = self.tier
        self._sup_watches = tier.name == "process"
        self._sup_pid, self._sup_start_time, self._sup_actor_id = tier.identity(self)
        self._sup_parent = sender
        self._sup_child_id = msg.child_id
        self._sup_token = msg.token
        self._sup_report_start = msg.report_start
        self._sup_exact = msg.exact_delivery
        self._sup_log_context = dict(msg.log_context)
        identity = dict(actor=type(self).__name__, actor_id=self._sup_actor_id,
                        child_id=_jsonable(msg.child_id), supervisor=msg.supervisor_name,
                        **self._sup_log_context)
        tier.setup_actor(msg.log, identity)
        self._sup_log = _log.get_logger(**identity)
        send = tier.fast_send(self)
        if send is not None:
            self.send = send      # type: ignore[method-assign]
        self._sup_phase, self._sup_fast = RUNNING, True
        try:
            self.init(*msg.args, **msg.kwargs)
        except Exception as exc:
            reason = reasons.Error.from_exception(exc)
            self._log_crash(reason, "Init")
            self._fail_init(reason)
            return
        if self._sup_phase == RUNNING:
            self._after_init()

    def _after_init(self) -> None:
        """Acknowledge the start.  Supervisors override this to start their
        children first (OTP: init/1 returns only when all are started)."""
        self._ack_init()

    def _ack_init(self) -> None:
        if self._sup_report_start:
            self._sup_log.info("actor.started")
        self.send(self._sup_parent, InitAck(self._sup_pid, self._sup_start_time, self._sup_token,
                                           self._sup_actor_id))

    def _fail_init(self, reason: Any) -> None:
        self._sup_phase, self._sup_fast = EXITING, False
        self._sup_report = InitFailed(self._sup_pid, reason, self._sup_token)
        self.send(self._sup_parent, self._sup_report)
        self._arm_resend()

    def _arm_resend(self) -> None:
        """Resend the report until the supervisor ends us (a report can be
        lost with a transmit), and give up after SELF_EXIT_AFTER (the
        supervisor is gone or stuck).  Neither can happen under a
        supervisor in this thread: no timer then (every connection's actors
        armed one each)."""
        if not self._sup_exact:
            self.wakeupAfter(REPORT_RESEND, payload=(_SELF_EXIT, REPORT_RESEND))

    def _waiting_to_exit(self, waited: float) -> None:
        """Reported ``waited`` s ago, not yet ended by the supervisor: report
        again (doubling the wait), and after SELF_EXIT_AFTER give up waiting
        (the supervisor is gone or stuck)."""
        if waited >= SELF_EXIT_AFTER - 1e-6:
            self.send(self.myAddress, ActorExitRequest(recursive=False))
            return
        if self._sup_report is not None and self._sup_parent is not None:
            self.send(self._sup_parent, self._sup_report)
        delay = min(waited, SELF_EXIT_AFTER - waited)
        self.wakeupAfter(delay, payload=(_SELF_EXIT, waited + delay))

    def _on_shutdown_request(self) -> None:
        """Workers stop at once; supervisors override this to stop their
        children first."""
        self._exit_with(reasons.SHUTDOWN)

    def _crash(self, exc: BaseException, message: Any) -> None:
        reason = reasons.Error.from_exception(exc)
        self._log_crash(reason, type(message).__name__)
        self._exit_with(reason, crashed=True)

    def _log_crash(self, reason: reasons.Error, message_type: str) -> None:
        self._sup_log.error("actor.crashed", error_type=reason.type, message=reason.message,
                            traceback=reason.traceback, message_type=message_type)

    def _exit_with(self, reason: Any, crashed: bool = False) -> None:
        """The one place an actor ends: terminate hook, report, then wait for
        the supervisor to end the process."""
        if self._sup_phase == EXITING:
            return
        self._sup_phase, self._sup_fast = EXITING, False
        try:
            self.terminate(reason)
        except Exception as exc:
            # OTP: an exception in terminate/2 replaces the exit reason.
            reason = reasons.Error.from_exception(exc)
            self._log_crash(reason, "terminate")
            crashed = True
        if not crashed:
            self._sup_log.info("actor.stopped", reason=reasons.to_json(reason))
        self._report_exit(reason)
        self._arm_resend()

    def _report_exit(self, reason: Any) -> None:
        if self._sup_parent is not None:
            self._sup_report = Exiting(reason, self.exit_details(), self._sup_token)
            self.send(self._sup_parent, self._sup_report)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)
