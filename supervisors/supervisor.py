"""The Supervisor actor: OTP's supervisor behaviour on Thespian.

One class serves every strategy (one_for_one, one_for_all, rest_for_one and
simple_one_for_one, the dynamic supervisor), as one behaviour does in OTP.

Thespian is asynchronous, OTP's supervisor is written synchronously (start a
child and wait for it; stop a child and wait for it).  To keep the OTP shape,
every piece of supervisor work is an *operation*: a generator that yields
:class:`_Wait` conditions ("this child has acknowledged", "this child is
dead", with an optional timeout) and is resumed when the condition holds.
Operations run one at a time, in arrival order, like the calls and EXIT
messages in an OTP supervisor's mailbox.  Read-only queries (which_children,
count_children, get_childspec) are answered at once.

How a death is noticed: Thespian's ChildActorExited (SIGCHLD, ~4-7 ms), and,
because that is lost when many children die at once (measured: 6 to 50 of 50
simultaneous SIGKILLs reported, median 35), a liveness check of every child's
pid (/proc, with the start time against pid reuse): soon after any sign that a
child is going (a ChildActorExited — which Thespian sends a few ms *before*
the process is gone —, an exit report, a SIGKILL we sent), backing off from
10 ms to 1 s while that child lingers, and otherwise every
``SupFlags.liveness_poll`` seconds (default 2) as a safety net.  A death
without an exit report waits ``REPORT_GRACE`` seconds for a late report, then
counts as ``killed``.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Callable

from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage

from . import events as _events
from . import faults
from . import log as _log
from .actor import RUNNING, SupervisedActor
from .intensity import RestartIntensity
from .messages import (ChildNotice, ChildRef, CountChildren, DeleteChild, Exiting, GetChildspec, Init,
                       InitAck, InitFailed, NoticeReply, Reply, RestartChild, ShutdownRequest, StartChild,
                       TerminateChild, WhichChildren, _Request)
from .reasons import KILLED, NORMAL, SHUTDOWN, Error, is_normal, to_json
from .spec import (ALL_SIGNIFICANT, ANY_SIGNIFICANT, BRUTAL_KILL, INFINITY, NEVER, ONE_FOR_ALL,
                   PERMANENT, REST_FOR_ONE, SIMPLE_ONE_FOR_ONE, SUPERVISOR, TEMPORARY,
                   TRANSIENT, ChildSpec, SupFlags)

REPORT_GRACE = 0.1
EXIT_RESEND = 3.0      # tell a reporting child to exit again after this (a lost request)
FIRST_CHECK = 0.01     # first liveness check after a sign of death
MAX_CHECK = 1.0

# child states (which_children shows a ChildRef for RUNNING, "restarting" or "undefined")
UNDEFINED, STARTING, RUNNING_, STOPPING, RESTARTING = (
    "undefined", "starting", "running", "stopping", "restarting")

_TIMER = "__supervisor_timer__"


class Child:
    """One child spec and, while it runs, its process."""

    __slots__ = ("spec", "address", "key", "pid", "start_time", "actor_id", "state", "reason", "details",
                 "reported", "dead", "acked", "kill_sent", "grace_over", "incarnation", "going_since",
                 "exit_sent_at")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.incarnation = 0
        self._clear()
        self.state = UNDEFINED

    def _clear(self) -> None:
        self.address = None
        self.key = None
        self.pid = None
        self.start_time = None
        self.actor_id = None
        self.reason = None
        self.details = None
        self.reported = False
        self.dead = False
        self.acked = False
        self.kill_sent = False
        self.grace_over = False
        self.going_since: float | None = None   # when we learnt it is on its way out
        self.exit_sent_at: float | None = None  # when we last told it to exit

    def begin(self, address: Any, incarnation: int) -> None:
        self._clear()
        self.incarnation = incarnation
        self.address = address
        self.key = str(address)
        self.state = STARTING

    @property
    def alive(self) -> bool:
        return self.address is not None

    def death_complete(self) -> bool:
        return self.dead and (self.reported or self.grace_over)

    def ref(self) -> ChildRef | None:
        return (ChildRef(self.pid, self.address, self.actor_id)
                if self.state == RUNNING_ and self.pid else None)


class _Wait:
    """What an operation waits for: ``until()`` to become true, or
    ``timeout`` seconds (None: forever).  The operation is resumed with True,
    or False on timeout."""

    __slots__ = ("until", "timeout", "token", "deadline")

    def __init__(self, until: Callable[[], bool], timeout: float | None = None) -> None:
        self.until = until
        self.timeout = timeout
        self.token = 0
        self.deadline: float | None = None


class Supervisor(SupervisedActor):
    """A supervisor.  Start it with ``(SupFlags, [ChildSpec, ...])``, or
    subclass it and override :meth:`configure` (OTP's ``init/1``)."""

    # -- configuration --------------------------------------------------------

    def configure(self, *args: Any, **kwargs: Any) -> tuple[SupFlags, list[ChildSpec]]:
        flags, children = args
        return flags, list(children)

    def init(self, *args: Any, **kwargs: Any) -> None:
        flags, specs = self.configure(*args, **kwargs)
        flags.check()
        ids = set()
        for spec in specs:
            spec.check()
            if spec.id in ids:
                raise ValueError(f"duplicate child id {spec.id!r}")
            ids.add(spec.id)
        self.flags = flags
        self.dynamic = flags.strategy == SIMPLE_ONE_FOR_ONE
        if self.dynamic and len(specs) != 1:
            raise ValueError("a simple_one_for_one supervisor has exactly one child spec (the template)")
        self.template = specs[0] if self.dynamic else None
        self.children: list[Child] = [] if self.dynamic else [Child(s) for s in specs]
        self.name = flags.name or (str(self.child_id) if self.child_id is not None
                                   else type(self).__name__)
        self.intensity = RestartIntensity(flags.intensity, flags.period)
        self._by_incarnation: dict[int, Child] = {}   # every child process not yet handled
        self._by_key: dict[str, dict[int, Child]] = {}   # the same, by address (see _at_address)
        self._incarnations = 0
        if any(s.significant for s in specs) and flags.auto_shutdown == NEVER:
            raise ValueError("significant children need auto_shutdown any_significant or all_significant")
        self._ops: deque = deque()
        self._op = None
        self._wait: _Wait | None = None
        self._token = 0
        self._shutting_down = False
        self._polls: list[float] = []   # due times of the liveness checks we asked Thespian for
        self._wait_timers: list[float] = []   # due times of the wait timers we asked Thespian for
        self._rlog = _log.get_logger(actor=type(self).__name__, actor_id=self._sup_actor_id,
                                     supervisor=self.name, **self._sup_log_context)

    def _after_init(self) -> None:
        self._enqueue(self._op_start_all)
        self._drive()

    # -- message dispatch -----------------------------------------------------

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, (InitAck, InitFailed, Exiting)):
            child = self._by_incarnation.get(message.token)
            if child is not None:
                if isinstance(message, InitAck):
                    self._rekey(child, str(sender))   # the real address (createActor's is provisional)
                self._on_child_message(child, message)
        elif isinstance(message, ChildNotice):
            child = self._by_incarnation.get(message.token)
            if child is not None and not child.dead:
                answer = self.handle_child_notice(child.spec, child.pid, message.payload)
                if answer is not None:
                    self.send(sender, NoticeReply(answer))
        elif isinstance(message, ChildActorExited):
            for child in self._at_address(message.childAddress):
                if self._sup_tier.gone(child):
                    self._on_death(child)
                else:
                    self._going(child)
            # Simultaneous deaths may have gone unreported: look at everyone soon.
            self._arm_poll(FIRST_CHECK)
        elif isinstance(message, WakeupMessage):
            if isinstance(message.payload, tuple) and message.payload[:1] == (_TIMER,):
                self._on_timer(message.payload[1:])
        elif isinstance(message, _Request):
            self._on_request(message, sender)
        self._check_wait()

    def _at_address(self, address: Any) -> list[Child]:
        """The unhandled child processes at ``address`` (several, if a dead
        child's port was reused by a successor before its death was handled;
        the liveness check tells them apart)."""
        key = str(address)
        found = list(self._by_key.get(key, {}).values())
        if not found:  # still known by the provisional address createActor() returned
            found = [c for c in self._by_incarnation.values() if not c.acked and c.address == address]
        return [c for c in found if not c.dead]

    def _rekey(self, child: Child, key: str | None) -> None:
        """Index the child (not yet handled) under ``key``; None: drop it."""
        same = self._by_key.get(child.key)
        if same is not None:
            same.pop(child.incarnation, None)
            if not same:
                del self._by_key[child.key]
        if key is not None:
            child.key = key
            self._by_key.setdefault(key, {})[child.incarnation] = child

    def _going(self, child: Child) -> None:
        if child.going_since is None:
            child.going_since = time.monotonic()
        self._arm_poll(FIRST_CHECK)

    def _on_child_message(self, child: Child, message: Any) -> None:
        if isinstance(message, InitAck):
            child.pid = message.pid
            child.start_time = message.start_time
            child.actor_id = message.actor_id
            child.acked = True
            return
        # InitFailed or Exiting: the child has said why it exits and waits
        # for us to end its process.  Not recursively: a supervisor reports
        # only once its children are gone, and Thespian's recursive exit
        # waits for children it believes alive — forever, when its record
        # misses a dead one (a late-bound lambda in its _shutdownActor strikes
        # the wrong child off).  (A crashed supervisor's children die with
        # it: PR_SET_PDEATHSIG.)
        if isinstance(message, InitFailed):
            child.pid = child.pid or message.pid
        if not child.reported:
            child.reported = True
            child.reason = message.reason
            child.details = getattr(message, "details", None)
        # End it once, with a signal: it has run terminate and told us why,
        # and its process is ours (forked by us).  A Thespian message per
        # exit (ActorExitRequest) cost a transmit each, retried when the
        # child was already gone; with hundreds exiting at once those
        # transmits kept this supervisor busy for a minute (a 700-connection
        # close made SIGTERM time out).  Without a pid (never acked): the
        # message, again only if the child still reports after a while.
        now = time.monotonic()
        if not child.dead and (child.exit_sent_at is None or now - child.exit_sent_at >= EXIT_RESEND):
            child.exit_sent_at = now
            if not self._end_reported(child):
                self.send(child.address, ActorExitRequest(recursive=False))
        self._going(child)
        if child.dead:
            self._death_complete(child)

    def _on_death(self, child: Child) -> None:
        if child.dead:
            return  # Thespian may report a death twice
        child.dead = True
        if not child.reported:
            # In-process, a death notice comes when the instance is dropped,
            # after any report it sent: no report means killed, at once.
            if child.kill_sent or not self._sup_tier.polls_liveness:
                child.reason = KILLED
                child.grace_over = True
            else:
                self.wakeupAfter(REPORT_GRACE, payload=(_TIMER, "grace", child.incarnation))
                return
        self._death_complete(child)

    def _death_complete(self, child: Child) -> None:
        if child.state == RUNNING_ and not self._shutting_down:
            # Nobody is stopping it: an exit to handle (OTP: an 'EXIT' message).
            child.state = STOPPING
            self._enqueue(self._op_child_exited, child, child.incarnation)
        self._drive()

    def _on_timer(self, payload: tuple) -> None:
        kind = payload[0]
        if kind == "poll":
            now = time.monotonic()
            self._polls = [t for t in self._polls if t > now + 0.001]
            self._poll_liveness()
        elif kind == "grace":
            child = self._by_incarnation.get(payload[1])
            if child is not None and not child.reported:
                child.reason = KILLED
                child.grace_over = True
                self._death_complete(child)
        elif kind == "wait":
            self._wait_timers = [t for t in self._wait_timers if t != payload[1]]
            wait = self._wait
            if wait is None or wait.deadline is None:
                return
            if wait.deadline > time.monotonic() + 0.002:
                self._arm_wait_timer(wait.deadline)   # a later wait than the one this timer was for
                return
            self._wait = None
            self._drive(wait.until())

    # -- liveness -------------------------------------------------------------

    def _arm_poll(self, delay: float) -> None:
        """Check the children's liveness in ``delay`` s, unless a check is
        already due by then (checks are coalesced).  Not on a tier whose
        death notices are exact (in-process)."""
        if not self._sup_tier.polls_liveness:
            return
        due = time.monotonic() + delay
        if any(t <= due + 0.005 for t in self._polls):
            return
        self._polls.append(due)
        self.wakeupAfter(delay, payload=(_TIMER, "poll"))

    def _poll_liveness(self) -> None:
        now = time.monotonic()
        soonest = None
        for child in list(self._by_incarnation.values()):
            if child.dead:
                continue
            if not self._sup_tier.alive(child):
                self._on_death(child)
            elif child.going_since is not None:
                # back off while it lingers: 10 ms, then about its age, up to 1 s
                wait = min(MAX_CHECK, max(FIRST_CHECK, now - child.going_since))
                soonest = wait if soonest is None else min(soonest, wait)
        if soonest is not None:
            self._arm_poll(soonest)
        elif self._by_incarnation:
            self._arm_poll(self.flags.liveness_poll)

    # -- the operation queue --------------------------------------------------

    def _enqueue(self, fn: Callable, *args: Any, front: bool = False) -> None:
        (self._ops.appendleft if front else self._ops.append)((fn, args))

    def _drive(self, value: Any = None) -> None:
        """Run operations until one has to wait."""
        if self._wait is not None:
            return
        while self._sup_phase == RUNNING:
            if self._op is None:
                if not self._ops:
                    return
                fn, args = self._ops.popleft()
                self._op = fn(*args)
                value = None
            try:
                wait = self._op.send(value)
            except StopIteration:
                self._op = None
                continue
            if wait.until():
                value = True
                continue
            self._token += 1
            wait.token = self._token
            self._wait = wait
            if wait.timeout is not None:
                wait.deadline = time.monotonic() + max(wait.timeout, 0.0)
                self._arm_wait_timer(wait.deadline)
            return

    def _arm_wait_timer(self, deadline: float) -> None:
        """A timer by ``deadline``, unless one is already due by then: when
        it fires, the wait in progress times out or a timer is armed for its
        own deadline.  One wait at a time, most finished long before their
        timeout: a supervisor starting children one after another keeps one
        timer outstanding, not one per start."""
        if any(t <= deadline + 0.001 for t in self._wait_timers):
            return
        self._wait_timers.append(deadline)
        self.wakeupAfter(max(deadline - time.monotonic(), 0.0), payload=(_TIMER, "wait", deadline))

    def _check_wait(self) -> None:
        if self._wait is not None and self._wait.until():
            self._wait = None
            self._drive(True)

    # -- child primitives (generators) ----------------------------------------

    def _start(self, child: Child):
        """Start one child and wait until its init returned.
        Returns ("ok", ChildRef) or ("error", reason)."""
        spec = child.spec
        try:
            address = self.createActor(spec.actor_class)
        except Exception as exc:
            child.state = UNDEFINED
            return ("error", Error.from_exception(exc))
        self._incarnations += 1
        child.begin(address, self._incarnations)
        self._by_incarnation[child.incarnation] = child
        self._by_key.setdefault(child.key, {})[child.incarnation] = child
        self.send(address, Init(spec.id, spec.args, spec.kwargs, _log.current(), self.name, os.getpid(),
                                spec.log_context, child.incarnation, self._sup_tier.children_report_start,
                                self._sup_tier.exact_delivery))
        self._arm_poll(self.flags.liveness_poll)
        in_time = yield _Wait(lambda: child.acked or child.death_complete(), spec.start_timeout)
        if child.acked and not child.reported and not child.dead:
            child.state = RUNNING_
            self._rlog.info("supervisor.child.started", child_id=_j(spec.id), child_pid=child.pid,
                            child_actor_id=child.actor_id,
                            started={**spec.offender(child.pid), "actor": spec.actor_class.__name__},
                            **spec.log_context)
            if _events.HANDLERS:
                _events.emit("child.started", self.name, type(self).__name__, spec.id,
                             actor=spec.actor_class.__name__, incarnation=child.incarnation, **spec.log_context)
            return ("ok", child.ref())
        if not in_time:
            reason = "timeout"
            self._kill(child)
        else:
            reason = child.reason
        child.state = STOPPING
        yield _Wait(child.death_complete)
        if reason is None:
            reason = child.reason
        self._forget(child)
        return ("error", reason)

    def _end_reported(self, child: Child) -> bool:
        """End a child that has reported its exit and waits to be ended
        (tier-specific); False if that is not possible yet (no pid)."""
        return self._sup_tier.end_reported(self, child)

    def _kill(self, child: Child) -> None:
        """OTP's exit(Child, kill): untrappable, no terminate."""
        if child.dead:
            return
        child.kill_sent = True
        self._sup_tier.kill(self, child)
        self._going(child)

    def _forget(self, child: Child) -> None:
        """The child's process is gone and its death handled."""
        if child.address is not None:
            self.handle_child_exit(child.spec, child.pid, child.reason, child.details, child.reported)
            self._by_incarnation.pop(child.incarnation, None)
            self._rekey(child, None)
        child._clear()
        child.state = UNDEFINED

    def _terminate(self, child: Child):
        """Stop one child as its shutdown spec says and wait for it to die.
        Returns its exit reason (None if it was not running)."""
        if not child.alive:
            return None
        pid = child.pid
        shutdown = child.spec.shutdown
        if not child.death_complete():
            child.state = STOPPING
            if shutdown == BRUTAL_KILL:
                self._kill(child)
                yield _Wait(child.death_complete)
            else:
                if not child.reported and not child.dead:
                    self.send(child.address, ShutdownRequest())
                timeout = None if shutdown == INFINITY else shutdown / 1000.0
                if not (yield _Wait(child.death_complete, timeout)):
                    self._kill(child)
                    yield _Wait(child.death_complete)
        reason = child.reason
        self._report_shutdown_error(child, reason, pid)
        self._forget(child)
        return reason

    def _terminate_many(self, children: list[Child]):
        """Stop children in parallel (simple_one_for_one shutdown, as OTP),
        each as its own spec says."""
        children = [c for c in children if c.alive]
        pids = {id(c): c.pid for c in children}
        finite = []
        for c in children:
            if c.death_complete():
                continue
            c.state = STOPPING
            sd = c.spec.shutdown
            if sd == BRUTAL_KILL:
                self._kill(c)
            elif not c.reported and not c.dead:
                self.send(c.address, ShutdownRequest())
            if isinstance(sd, int):
                finite.append(sd)
        # Checked after every message while they stop: O(1) amortized, as
        # they die about in the order they were asked (a simple_one_for_one
        # supervisor may stop 10,000 at once; all() over them each time was O(N^2)).
        pending = list(reversed(children))

        def all_dead() -> bool:
            while pending and pending[-1].death_complete():
                pending.pop()
            return not pending
        forever = any(c.spec.shutdown == INFINITY for c in children)
        timeout = max(finite) / 1000.0 if finite and not forever else None
        if not (yield _Wait(all_dead, timeout)):
            for c in children:
                if not c.death_complete() and c.spec.shutdown != INFINITY:
                    self._kill(c)
            yield _Wait(all_dead)
        for c in children:
            self._report_shutdown_error(c, c.reason, pids[id(c)])
            self._forget(c)

    def _report_shutdown_error(self, child: Child, reason: Any, pid: int | None) -> None:
        expected = KILLED if child.spec.shutdown == BRUTAL_KILL else SHUTDOWN
        if reason == KILLED and expected == KILLED:
            # Not an error (OTP reports nothing), but the child could not say
            # it ended: record its death so the log accounts for every process.
            self._rlog.info("supervisor.child.killed", child_id=_j(child.spec.id), child_pid=pid,
                            child_actor_id=child.actor_id,
                            offender=child.spec.offender(pid), **child.spec.log_context)
            return
        if reason == expected or (reason == NORMAL and child.spec.restart != PERMANENT):
            return
        self._rlog.error("supervisor.shutdown_error", child_id=_j(child.spec.id), child_pid=pid,
                         child_actor_id=child.actor_id,
                         reason=to_json(reason), offender=child.spec.offender(pid),
                         **child.spec.log_context)

    def _terminate_all(self):
        if self.dynamic:
            yield from self._terminate_many(list(self.children))
            self.children.clear()
        else:
            for child in self.shutdown_order(list(self.children)):
                yield from self._terminate(child)

    # -- hooks for subclasses -------------------------------------------------

    def shutdown_order(self, children: list[Child]) -> list[Child]:
        """The order in which this supervisor's own shutdown stops its
        children: reverse start order, as OTP."""
        return list(reversed(children))

    def handle_child_notice(self, spec: ChildSpec, pid: int | None, payload: Any) -> Any:
        """A running child sent ``notify_supervisor(payload)``.  A result other
        than None is sent back to it as ``NoticeReply(result)`` (a child that
        must not act before its supervisor has taken note waits for it)."""

    def handle_child_exit(self, spec: ChildSpec, pid: int | None, reason: Any, details: Any,
                          reported: bool) -> None:
        """Called exactly once per child process that ended, once it is gone:
        ``reported`` is False if it died without telling why (killed)."""

    def _shutdown_self(self, reason: Any):
        """Stop every child (reverse start order) and exit with ``reason``."""
        self._shutting_down = True
        self._ops.clear()
        yield from self._terminate_all()
        self._exit_with(reason)

    # -- operations -----------------------------------------------------------

    def _op_start_all(self):
        started: list[Child] = []
        for child in self.children:
            result = yield from self._start(child)
            if result[0] == "error":
                self._rlog.error("supervisor.start_error", child_id=_j(child.spec.id),
                                 reason=to_json(result[1]), offender=child.spec.offender(None),
                                 **child.spec.log_context)
                self._shutting_down = True
                for c in reversed(started):
                    yield from self._terminate(c)
                self._fail_init((SHUTDOWN, ("failed_to_start_child", child.spec.id, result[1])))
                return
            started.append(child)
        self._ack_init()

    def _on_shutdown_request(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        self._ops.clear()
        self._enqueue(self._shutdown_self, SHUTDOWN)
        self._drive()

    def _op_child_exited(self, child: Child, incarnation: int):
        if child.incarnation != incarnation or not child.alive:
            return  # already handled (e.g. stopped by a sibling's restart)
        yield from ()
        reason, pid, spec, aid = child.reason, child.pid, child.spec, child.actor_id
        self._forget(child)
        restart = spec.restart == PERMANENT or (spec.restart == TRANSIENT and not is_normal(reason))
        if restart or not is_normal(reason):
            self._rlog.error("supervisor.child.terminated", child_id=_j(spec.id), child_pid=pid,
                             child_actor_id=aid, reason=to_json(reason), offender=spec.offender(pid),
                             **spec.log_context)
            if _events.HANDLERS:
                _events.emit("child.terminated", self.name, type(self).__name__, spec.id,
                             reason=_events.reason_kind(reason), **spec.log_context)
        if restart:
            yield from self._restart(child, pid, aid)
            return
        if spec.restart == TEMPORARY or self.dynamic:
            self._remove(child)
        if spec.significant and self._auto_shutdown_due():
            yield from self._shutdown_self(SHUTDOWN)

    def _auto_shutdown_due(self) -> bool:
        mode = self.flags.auto_shutdown
        if mode == ANY_SIGNIFICANT:
            return True
        if mode == ALL_SIGNIFICANT:
            return not any(c.spec.significant and c.alive for c in self.children)
        return False

    def _remove(self, child: Child) -> None:
        try:
            self.children.remove(child)
        except ValueError:
            pass

    def _restart(self, child: Child, old_pid: int | None, old_aid: str | None = None):
        if faults.ACTIVE:
            faults.point("supervisor.restart", child_id=_j(child.spec.id))
        if not self.intensity.add_restart():
            self._rlog.error("supervisor.shutdown", reason="reached_max_restart_intensity",
                             intensity=self.flags.intensity, period=self.flags.period,
                             child_id=_j(child.spec.id), child_pid=old_pid, child_actor_id=old_aid)
            if _events.HANDLERS:
                _events.emit("supervisor.shutdown", self.name, type(self).__name__, child.spec.id,
                             **child.spec.log_context)
            yield from self._shutdown_self(SHUTDOWN)
            return
        strategy = self.flags.strategy
        if strategy == ONE_FOR_ALL:
            group = list(self.children)
        elif strategy == REST_FOR_ONE and child in self.children:
            group = self.children[self.children.index(child):]
        else:
            group = [child]
        old_pids = {id(c): c.pid for c in group}
        old_pids[id(child)] = old_pid
        old_aids = {id(c): c.actor_id for c in group}
        old_aids[id(child)] = old_aid
        for c in reversed(group):
            if c is not child and c.alive:
                yield from self._terminate(c)
        for c in group:
            if c is not child and c.spec.restart == TEMPORARY:
                self._remove(c)  # OTP: temporary siblings are not restarted
        group = [c for c in group if c is child or c.spec.restart != TEMPORARY]
        for c in group:
            c.state = RESTARTING
        for n, c in enumerate(group):
            result = yield from self._start(c)
            if result[0] == "ok":
                self._rlog.info("supervisor.child.restarted", child_id=_j(c.spec.id),
                                old_pid=old_pids.get(id(c)), child_pid=result[1].pid,
                                old_actor_id=old_aids.get(id(c)), child_actor_id=result[1].actor_id,
                                strategy=strategy, **c.spec.log_context)
                if _events.HANDLERS:
                    _events.emit("child.restarted", self.name, type(self).__name__, c.spec.id,
                                 **c.spec.log_context)
                continue
            self._rlog.error("supervisor.start_error", child_id=_j(c.spec.id),
                             reason=to_json(result[1]), offender=c.spec.offender(None),
                             **c.spec.log_context)
            if c.spec.restart == TEMPORARY:
                self._remove(c)
                continue
            for rest in group[n:]:
                rest.state = RESTARTING
            # OTP: try again later; every attempt counts towards the intensity.
            self._enqueue(self._restart, c, old_pids.get(id(c)), old_aids.get(id(c)))
            return

    # -- requests (OTP's supervisor API) --------------------------------------

    def _on_request(self, req: _Request, sender: Any) -> None:
        if isinstance(req, WhichChildren):
            self.send(sender, Reply(req.ref, self._which_children()))
        elif isinstance(req, CountChildren):
            self.send(sender, Reply(req.ref, self._count_children()))
        elif isinstance(req, GetChildspec):
            child = self._find(req.child)
            result = ("ok", child.spec) if child else ("error", "not_found")
            self.send(sender, Reply(req.ref, result))
        elif self._shutting_down:
            self.send(sender, Reply(req.ref, ("error", "shutting_down")))
        else:
            self._enqueue(self._op_request, req, sender)
            self._drive()

    def _op_request(self, req: _Request, sender: Any):
        handler = {StartChild: self._req_start_child, TerminateChild: self._req_terminate_child,
                   RestartChild: self._req_restart_child, DeleteChild: self._req_delete_child}
        result = yield from handler[type(req)](req)
        self.send(sender, Reply(req.ref, result))

    def _req_start_child(self, req: StartChild):
        arg = req.spec_or_args
        if self.dynamic:
            if self.flags.max_children is not None and len(self.children) >= self.flags.max_children:
                return ("error", "max_children")
            spec = arg if isinstance(arg, ChildSpec) else self.template.with_extra_args(tuple(arg or ()))
        else:
            spec = arg
            if not isinstance(spec, ChildSpec):
                return ("error", ("invalid_child_spec", repr(arg)))
        try:
            spec.check()
        except ValueError as exc:
            return ("error", ("invalid_child_spec", str(exc)))
        if not self.dynamic:
            existing = self._find(spec.id)
            if existing is not None:
                if existing.state == RUNNING_:
                    return ("error", ("already_started", existing.ref()))
                return ("error", "already_present")
        child = Child(spec)
        self.children.append(child)
        result = yield from self._start(child)
        if result[0] == "error":
            self._rlog.error("supervisor.start_error", child_id=_j(spec.id), reason=to_json(result[1]),
                             offender=spec.offender(None), **spec.log_context)
            self._remove(child)   # OTP: a child that failed to start is not kept
        return result

    def _req_terminate_child(self, req: TerminateChild):
        child = self._find(req.child)
        if self.dynamic and child is None and not isinstance(req.child, (int, ChildRef)):
            return ("error", "simple_one_for_one")
        if child is None:
            return ("error", "not_found")
        yield from self._terminate(child)
        if self.dynamic or child.spec.restart == TEMPORARY:
            self._remove(child)
        return "ok"

    def _stopped_child(self, child_id: Any) -> tuple[Child | None, Any]:
        """(the child, None) if ``child_id`` names a child that is not
        running, else (None, OTP's error) — for restart_child / delete_child."""
        if self.dynamic:
            return None, ("error", "simple_one_for_one")
        child = self._find(child_id)
        if child is None:
            return None, ("error", "not_found")
        if child.alive:
            return None, ("error", "running")
        if child.state == RESTARTING:
            return None, ("error", "restarting")
        return child, None

    def _req_restart_child(self, req: RestartChild):
        child, error = self._stopped_child(req.child_id)
        if error:
            return error
        result = yield from self._start(child)
        return result

    def _req_delete_child(self, req: DeleteChild):
        yield from ()
        child, error = self._stopped_child(req.child_id)
        if error:
            return error
        self._remove(child)
        return "ok"

    def _find(self, key: Any) -> Child | None:
        by_ref = isinstance(key, ChildRef)
        if by_ref:
            key = key.actor_id if key.actor_id is not None else key.pid
        for child in self.children:
            if self.dynamic:
                if isinstance(key, int) and child.pid == key and self._sup_tier.polls_liveness:
                    return child
                if by_ref and isinstance(key, str) and child.actor_id == key:
                    return child
            elif child.spec.id == key:
                return child
        return None

    def _which_children(self) -> list[tuple]:
        out = []
        for c in self.children:
            if c.state == RUNNING_ and c.pid:
                what: Any = c.ref()
            elif c.state in (RESTARTING, STARTING) or (c.state == STOPPING and c.alive):
                what = "restarting"
            else:
                what = "undefined"
            out.append(("undefined" if self.dynamic else c.spec.id, what, c.spec.type,
                        [f"{c.spec.actor_class.__module__}.{c.spec.actor_class.__qualname__}"]))
        return out

    def _count_children(self) -> dict:
        sups = sum(1 for c in self.children if c.spec.type == SUPERVISOR)
        return {"specs": len(self.children),
                "active": sum(1 for c in self.children if c.state == RUNNING_),
                "supervisors": sups, "workers": len(self.children) - sups}


def _j(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)
