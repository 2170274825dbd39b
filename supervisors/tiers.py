"""The seam between OTP's decisions and the Thespian base an actor runs on.

The Supervisor (supervisor.py) decides *what* happens — which children to
restart, when the intensity is exceeded, in which order to stop — the same
way on every base.  *How* a child's death is seen and how a child is killed
depends on where actors live:

* :class:`ProcessTier` (``multiprocTCPBase``): every actor is an OS process.
  Identity is (pid, start time); death is the process gone (ChildActorExited,
  confirmed and backed up by /proc polls, since Thespian loses death notices
  when many children die at once); a kill is SIGKILL through a pidfd;
  children die with their parent (PR_SET_PDEATHSIG).
* :class:`InProcessTier` (``simpleSystemBase``): actors are objects run by one
  thread of one process (a worker).  Identity is the worker's pid plus the
  in-process address; ChildActorExited is exact (Thespian sends it when the
  instance is dropped, never loses it), so nothing is polled; a kill is
  Erlang's untrappable exit: the actor and its subtree are dropped without
  ``terminate`` (they handle nothing more) and the supervisor sees ``killed``.
  Whatever the runtime holds for a dropped actor (sockets, compression
  contexts on record) is released by its death hooks, as Erlang closes a dead
  process's ports.

The tier is chosen from the actor's system base; actor code never asks.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

from thespian.actors import ActorAddress, ActorExitRequest, InvalidActorAddress
from thespian.system.simpleSystemBase import PendingSend

from . import _platform
from . import log as _log


class ProcessTier:
    name = "process"
    polls_liveness = True
    exit_ends_actor_only = False   # an exit fault ends the process
    # A child process writes actor.started itself: its own pid, from its own process.
    children_report_start = True
    exact_delivery = False         # a message can be lost with its process (transmit failures)

    def identity(self, actor: Any) -> tuple[int, int | None, str]:
        pid = os.getpid()
        return pid, _platform.process_start_time(pid), str(pid)

    def setup_actor(self, log_config: Any, identity: dict) -> None:
        _log.configure(log_config)
        _platform.install_parent_death_signal()
        _platform.ignore_stop_signals()
        # Every record this process writes carries who wrote it, even from
        # code that logs with a bare get_logger() (e.g. fault points), in any thread.
        _log.set_process_context(**identity)

    def died(self, actor: Any, killed: bool) -> None:
        """Nothing to release for a process: the kernel does it."""

    def fast_send(self, actor: Any) -> None:
        """None: a process actor sends with Thespian's Actor.send."""
        return None

    def gone(self, child: Any) -> bool:
        """After a ChildActorExited: is the child really gone?  Thespian sends
        it when the child says goodbye, a few ms before the process is gone;
        OTP's EXIT means gone."""
        return child.pid is None or not _platform.process_alive(child.pid, child.start_time)

    def alive(self, child: Any) -> bool:
        return child.pid is None or _platform.process_alive(child.pid, child.start_time)

    def end_reported(self, sup: Any, child: Any) -> bool:
        """End a child that has reported its exit and waits to be ended: a
        signal (its process is ours), not a Thespian message (a transmit each,
        retried when the child is already gone).  False without a pid."""
        if child.pid is None or child.start_time is None:
            return False
        _platform.signal_process(child.pid, child.start_time, signal.SIGKILL)
        return True

    def kill(self, sup: Any, child: Any) -> None:
        if child.pid is None:
            pid = self._unacked_child_pid(sup)
            if pid is not None:
                child.pid, child.start_time = pid, _platform.process_start_time(pid)
        if child.pid is not None:
            # through a pidfd, checked against the start time: never a reused pid
            # (a start time of None: already gone, or a zombie waiting to be reaped)
            if child.start_time is not None:
                _platform.signal_process(child.pid, child.start_time, signal.SIGKILL)
        else:
            sup.send(child.address, ActorExitRequest(recursive=False))

    @staticmethod
    def _unacked_child_pid(sup: Any) -> int | None:
        """A child killed before it acknowledged has not told us its pid; it is
        the one process of ours no other child claims (starts are serial)."""
        known = {c.pid for c in sup._by_incarnation.values() if c.pid}
        candidates = [p for p in _platform.children_of(os.getpid())
                      if p not in known and _platform.process_start_time(p) is not None]
        return candidates[0] if len(candidates) == 1 else None


DeathHook = Callable[[str, bool], None]


class InProcessTier:
    """One per in-process actor system (see :func:`supervisors.inprocess.start_system`)."""

    name = "in_process"
    polls_liveness = False
    exit_ends_actor_only = True    # an exit fault ends this actor alone
    # A child's start is recorded once, by its supervisor's supervisor.child.started (same
    # process and thread, written as the InitAck arrives; OTP's progress report): one record
    # fewer per actor, two per connection.
    children_report_start = False
    # Delivery between the actors of one system is a function call: nothing is lost, and an
    # actor's supervisor outlives it (a kill drops the subtree).
    exact_delivery = True

    def __init__(self, system_base: Any) -> None:
        self.base = system_base
        self.pid = os.getpid()
        self._death_hooks: list[DeathHook] = []
        self.kills = 0

    # -- identity -----------------------------------------------------------

    def actor_id(self, address: Any) -> str:
        return f"{self.pid}{address.actorAddressString}"

    def identity(self, actor: Any) -> tuple[int, int | None, str]:
        return self.pid, None, self.actor_id(actor.myAddress)

    def setup_actor(self, log_config: Any, identity: dict) -> None:
        """Nothing process-wide: the worker configured logging and signals,
        and many actors share this process."""

    def fast_send(self, actor: Any) -> Callable[[Any, Any], None]:
        """``actor.send`` for an actor of this system: what Actor.send and
        ActorRef.actor_send do (check the address, queue a PendingSend), with
        the queue and the sender's address looked up once instead of
        at every send (four sends per compressed echo).  Holds no reference to
        the actor (no cycle: a dropped actor is freed at once)."""
        append, me = self.base._pendingSends.append, actor._myRef._addr   # a deque: no lock

        def send(to: Any, msg: Any) -> None:
            if to.__class__ is not ActorAddress and not isinstance(to, ActorAddress):
                raise InvalidActorAddress(to, "not a valid ActorAddress for sending messages to")
            append(PendingSend(me, msg, to))
        return send

    # -- deaths -------------------------------------------------------------

    def on_death(self, hook: DeathHook) -> None:
        """``hook(actor_id, killed)`` runs when an actor of this system is
        dropped, after its terminate if it had one (Erlang: a monitor)."""
        self._death_hooks.append(hook)

    def died(self, actor: Any, killed: bool) -> None:
        actor_id = actor.actor_id or self.actor_id(actor.myAddress)
        for hook in self._death_hooks:
            hook(actor_id, killed)
        # Thespian drops the instance after this message; what it references would
        # otherwise wait for the cycle collector (an actor and its state are full of
        # cycles: ~58 objects per connection, and full collections that scan every
        # connection's objects).  Freed now, by reference counting.
        actor._sup_forget()

    def gone(self, child: Any) -> bool:
        return True   # ChildActorExited comes when the instance is dropped

    def alive(self, child: Any) -> bool:
        return self._ref(child.address) is not None

    def end_reported(self, sup: Any, child: Any) -> bool:
        sup.send(child.address, ActorExitRequest(recursive=False))
        return True

    def kill(self, sup: Any, child: Any) -> None:
        self.kill_address(child.address, sender=sup)

    def kill_address(self, address: Any, sender: Any = None) -> bool:
        """Drop an actor and its subtree without terminate (Erlang's
        ``exit(Pid, kill)``).  Its parent gets ChildActorExited; the death
        hooks run for each actor dropped.  False if it was not alive."""
        ref = self._ref(address)
        if ref is None:
            return False
        self._mark_killed(ref)
        self.kills += 1
        if sender is not None:
            sender.send(address, ActorExitRequest(recursive=False))
        else:
            self.base.actor_send(self.base.system.systemAddress, address, ActorExitRequest(recursive=False))
        return True

    def _mark_killed(self, ref: Any) -> None:
        inst = ref.instance
        if inst is None or getattr(inst, "_sup_killed", False):
            return
        inst._sup_killed, inst._sup_fast = True, False
        for child_addr in list(ref._yung):
            child = self._ref(child_addr)
            if child is not None:
                self._mark_killed(child)

    def _ref(self, address: Any) -> Any:
        if address is None:
            return None
        ref = self.base.actorRegistry.get(address.actorAddressString)
        return ref if ref is not None and ref.instance is not None else None

    def instance(self, address: Any) -> Any:
        """The live actor object at ``address`` (tests, introspection)."""
        ref = self._ref(address)
        return ref.instance if ref is not None else None


_PROCESS = ProcessTier()


def tier_of(actor: Any) -> Any:
    """The tier of a running Thespian actor."""
    ref = getattr(actor, "_myRef", None)
    system = getattr(ref, "_system", None)
    base = getattr(system, "_systemBase", None)
    tier = getattr(base, "_supervisors_tier", None)
    if tier is not None:
        return tier
    if type(ref).__module__ == "thespian.system.simpleSystemBase":
        # a simpleSystemBase system not made by inprocess.start_system: adopt it
        from .inprocess import adopt
        return adopt(base)
    return _PROCESS
