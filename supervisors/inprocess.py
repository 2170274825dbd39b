"""In-process actor systems: Thespian's ``simpleSystemBase`` as a supervision tier.

``start_system()`` makes a private simpleSystemBase system (one per worker
thread that drives it) and attaches an :class:`~supervisors.tiers.InProcessTier`
to it.  Actors in it are ordinary Thespian actors; the Supervisor runs there
unchanged (see tiers.py for what differs).

Two costs of simpleSystemBase grow with the number of actors, measured with
thousands of connection subtrees in one system, and are replaced here by
equivalent data structures (same methods, same behaviour):

* its wakeups are a list scanned in full on *every* send (``_realizeWakeups``
  partitions the whole list): with 10,000 pending timers each delivery cost
  milliseconds.  Here: a heap, O(log n) to add, O(1) to check.
* its pending sends are a list popped from the front (O(n) per delivery when
  10,000 shutdown requests are queued at once).  Here: a deque.

And a leak: stock removes a dead actor's registry entry by setting it to
None, so the registry grows by one entry per actor ever made (three per
connection, for the life of the worker); here the entry is deleted.

And constant costs: the stock delivery loop makes an ExpirationTimer per
``tell``, scans the wakeups before every delivery and runs five type checks
and an address comparison on every message; here the common message (to a
live actor, none of Thespian's own kinds) goes straight to the actor, and
every other one takes the stock path (:func:`_fast_sends`).  Every delivery
also calls ``logging.getLogger('Thespian')
.debug(...)`` (1.4 of 6.2 us per delivery, measured); actors made after
:func:`adopt` receive without it (the module's ``actor_base_receive`` is
replaced once for the process: in-process systems only).

``run_due(system)`` delivers what is due (expired wakeups and queued sends)
without blocking; ``next_wakeup_in(system)`` says when to call it again: an
I/O loop that owns the thread drives the system with these two.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
from collections import deque
from datetime import timedelta
from typing import Any

import thespian.system.simpleSystemBase as _simple
from thespian.actors import ActorSystem, WakeupMessage
from thespian.system.timing import ExpirationTimer, currentTime

from .tiers import InProcessTier


class _SendQueue(deque):
    """A deque that answers simpleSystemBase's ``pop(0)``.

    Its append and popleft are atomic (one C call under the GIL), so the fast
    paths here append and pop without simpleSystemBase's lock, which guarded
    a list's two-step ``pop(0)`` (two of its acquire/release pairs per
    delivery, ten per compressed echo).  The stock paths still take it."""

    def pop(self, index: int = -1) -> Any:   # type: ignore[override]
        return self.popleft() if index == 0 else deque.pop(self)


class _HeapWakeups:
    """simpleSystemBase's WakeupManager methods over a heap.

    An entry is (due, seq, address, period, payload): no ExpirationTimer is
    made per wakeupAfter (its construction and views were ~10% of a worker's
    CPU per connection: every supervised start and exit arms one); the few
    callers that want one (_next_wakeup, status) get it made on demand.  A
    wakeup whose actor is gone when it is due is dropped here, where stock
    would queue it for the dead-letter path (every connection leaves a few:
    a start timeout or a report resend armed by an actor that ended first)."""

    def __init__(self, base: Any) -> None:
        self.heap: list = []
        self.seq = itertools.count()
        self.base = base
        # keep whatever was already scheduled
        for addr, timer, payload in base._wakeUps:
            self.add_timer(addr, timer, payload)
        base._wakeUps = []

    def add_timer(self, addr: Any, timer: ExpirationTimer, payload: Any) -> None:
        due = currentTime() + timer.view().remaining().total_seconds()
        heapq.heappush(self.heap, (due, next(self.seq), addr, timer.duration, payload))

    def _add_wakeup(self, from_actor: Any, time_period: Any, payload: Any) -> None:
        seconds = time_period.total_seconds() if isinstance(time_period, timedelta) else time_period
        heapq.heappush(self.heap, (currentTime() + seconds, next(self.seq), from_actor, time_period, payload))

    def wakeup_after(self, from_actor: Any, time_period: Any, payload: Any) -> None:
        """ActorSystemBase.wakeupAfter: add, then queue what is due."""
        self._add_wakeup(from_actor, time_period, payload)
        if self.heap[0][0] <= currentTime():
            self.realize()

    def realize(self) -> None:
        """ActorSystemBase._realizeWakeups: queue the due wakeups to live actors."""
        heap = self.heap
        if not heap:
            return
        ct = currentTime()
        if heap[0][0] > ct:
            return
        base = self.base
        registry, pending, lock = base.actorRegistry, base._pendingSends, base._private_lock
        while heap and heap[0][0] <= ct:
            _due, _n, addr, period, payload = heapq.heappop(heap)
            tgt = registry.get(addr.actorAddressString, None)
            if tgt is None or not tgt._inst:
                continue    # its actor is gone: stock would dead-letter it
            with lock:
                pending.append(_simple.PendingSend(addr, WakeupMessage(period, payload), addr))

    def _pop_expired_wakeups(self, ct: float) -> list:
        heap = self.heap
        out = []
        while heap and heap[0][0] <= ct:
            _due, _n, addr, period, payload = heapq.heappop(heap)
            out.append((addr, ExpirationTimer(period), payload))
        return out

    def _timer(self, entry: tuple) -> ExpirationTimer:
        timer = ExpirationTimer(entry[3])
        timer._time_to_quit = entry[0]
        return timer

    def _next_wakeup(self) -> Any:
        return self._timer(self.heap[0]) if self.heap else None

    def next_due(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def add_wakeups_to_status(self, statusmsg: Any) -> Any:
        statusmsg.addWakeups([(e[2], self._timer(e)) for e in self.heap])
        return statusmsg


def _actor_send(ref: Any, to: Any, msg: Any) -> None:
    """ActorRef.actor_send: what ActorSystemBase.actor_send does, one call fewer (every send).
    No lock: the queue is a deque (see _SendQueue)."""
    ref._system._systemBase._pendingSends.append(_simple.PendingSend(ref._addr, msg, to))


def _receive(actor: Any, msg: Any, sender: Any) -> None:
    actor.receiveMessage(msg, sender)


class _InitArgs:
    """Thespian's withPossibleInitArgs, with each class's __init__ parameters
    looked up once: the stock one runs inspect.signature at every
    createActor (~6% of a worker's CPU when connections arrive)."""

    _params: dict[type, tuple[str, ...]] = {}

    def __init__(self, **kw: Any) -> None:
        self.kwargs = kw

    def create(self, klass: type) -> Any:
        names = self._params.get(klass)
        if names is None:
            try:
                names = tuple(inspect.signature(klass.__init__).parameters)
            except (ValueError, TypeError):
                return _StockInitArgs(**self.kwargs).create(klass)
            self._params[klass] = names
        return klass(**{k: self.kwargs[k] for k in names if k in self.kwargs})


_StockInitArgs = _simple.withPossibleInitArgs
_stock_actual_actor_class = _simple.actualActorClass


def _actual_actor_class(actor_class: Any, source_hash_loader: Any = None) -> Any:
    """Thespian's actualActorClass without its isStr, which raises and
    catches a NameError (Python 2's ``unicode``) for every class: ~2% of a
    worker's CPU per connection.  A class is returned as it is."""
    if isinstance(actor_class, type):
        return actor_class
    return _stock_actual_actor_class(actor_class, source_hash_loader)


def adopt(base: Any) -> InProcessTier:
    """Attach a tier (and the scalable queues) to a simpleSystemBase system base."""
    tier = getattr(base, "_supervisors_tier", None)
    if tier is not None:
        return tier
    _simple.actor_base_receive = _receive
    _simple.withPossibleInitArgs = _InitArgs
    _simple.actualActorClass = _actual_actor_class
    _simple.ActorRef.actor_send = _actor_send
    wakeups = _HeapWakeups(base)
    base._supervisors_wakeups = wakeups
    base._add_wakeup = wakeups._add_wakeup
    base._pop_expired_wakeups = wakeups._pop_expired_wakeups
    base._realizeWakeups = wakeups.realize
    base.wakeupAfter = wakeups.wakeup_after
    base._next_wakeup = wakeups._next_wakeup
    base.add_wakeups_to_status = wakeups.add_wakeups_to_status
    base._pendingSends = _SendQueue(base._pendingSends)
    _fast_sends(base, wakeups)
    tier = InProcessTier(base)
    base._supervisors_tier = tier
    return tier


_SLOW_KINDS = (_simple.ActorExitRequest, _simple.ChildActorExited, _simple.ValidatedSource,
               _simple.Thespian_StatusReq, _simple.PoisonMessage)


def _fast_sends(base: Any, wakeups: _HeapWakeups) -> None:
    """simpleSystemBase's tell/_runSends/_runSingleSend with a fast path.

    Same order, same semantics: a message to a live actor that is none of
    Thespian's own kinds is handed to it directly (an exception out of it is
    retried as stock does: attempts += 1, queued again); everything else —
    exits, child exits, sources, status, dead letters, retries, timeouts and
    ``stop_on_available`` (listen/ask) — goes through the stock methods."""
    stock_run_sends, stock_single = base._runSends, base._runSingleSend
    pending, lock, registry = base._pendingSends, base._private_lock, base.actorRegistry
    realize = base._realizeWakeups
    PendingSend = _simple.PendingSend

    slow_class: dict[type, bool] = {}   # message class -> one of Thespian's own kinds?
    ChildActorExited = _simple.ChildActorExited

    def single(ps: Any) -> None:
        msg = ps.msg
        slow = slow_class.get(msg.__class__)
        if slow is None:
            slow = slow_class[msg.__class__] = issubclass(msg.__class__, _SLOW_KINDS)
        if slow or ps.attempts:
            stock_single(ps)
            if msg.__class__ is ChildActorExited:
                # Stock completes a child's removal with actorRegistry[address] = None: an
                # entry per dead actor, forever (three per connection).  A missing entry
                # and a None one are the same to every lookup (.get, then a dead letter).
                key = msg.childAddress.actorAddressString
                if key in registry and registry[key] is None:
                    del registry[key]
            return
        key = ps.toActor._aaddr
        tgt = registry.get(key if key.__class__ is str else str(key), None)
        inst = tgt._inst if tgt else None
        if not inst:
            return stock_single(ps)
        try:
            # what inst._receive does for an actor made after adopt() (_receive)
            inst.receiveMessage(msg, ps.sender)
        except Exception:
            _simple.logging.getLogger("Thespian").warning(
                "Failure of Actor %s during message processing (attempt %s)", tgt.address, ps.attempts,
                exc_info=True)
            ps.attempts += 1
            ps.fail_details = _simple.traceback.format_exc()
            with lock:
                pending.append(ps)

    heap = wakeups.heap
    popleft, append = pending.popleft, pending.append

    def run_sends(timeout: Any = None, stop_on_available: Any = False) -> None:
        # Due wakeups are queued by the callers before (tell, run_due) and here every
        # 64 deliveries (stock: before each one; a clock read per delivery).
        if timeout is not None or stop_on_available:
            return stock_run_sends(timeout, stop_on_available)
        numsends, limit = 0, base.procLimit
        while pending:
            numsends += 1
            if limit and numsends > limit:
                raise RuntimeError("Too many sends")
            if not numsends & 63 and heap and heap[0][0] <= currentTime():
                realize()
            try:
                ps = popleft()
            except IndexError:
                continue
            single(ps)

    external: list = []    # the ExternalRequester's address, looked up once

    def tell(to: Any, msg: Any) -> None:
        if heap and heap[0][0] <= currentTime():
            realize()
        if not external:
            external.append(registry["System:ExternalRequester"].address)
        append(PendingSend(external[0], msg, to))
        run_sends()

    base._runSends, base._runSingleSend, base.tell = run_sends, single, tell


def start_system() -> ActorSystem:
    """A new private in-process actor system with a tier attached."""
    system = ActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)
    adopt(system._systemBase)
    return system


def tier(system: ActorSystem) -> InProcessTier:
    return adopt(system._systemBase)


def run_due(system: ActorSystem) -> None:
    """Deliver every expired wakeup and every queued send, then return."""
    base = system._systemBase
    base._realizeWakeups()
    base._runSends(None)   # None: until nothing is pending, never sleeping


def post_many(system: ActorSystem, addresses: list, msg: Any) -> None:
    """Queue ``msg`` for each of ``addresses`` (one PendingSend each, from the
    system's external requester); delivered by the sends running now (called
    from an actor) or by the next :func:`run_due`.  One message to many
    actors without one ``tell`` — and one run of the queue — per actor."""
    base = system._systemBase
    sender = base.actorRegistry["System:ExternalRequester"].address
    append, PendingSend = base._pendingSends.append, _simple.PendingSend
    for to in addresses:
        append(PendingSend(sender, msg, to))


def next_wakeup_in(system: ActorSystem) -> float | None:
    """Seconds until the next wakeup is due (0 if overdue), None if none."""
    due = system._systemBase._supervisors_wakeups.next_due()
    return None if due is None else max(0.0, due - currentTime())
