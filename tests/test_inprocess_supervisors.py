"""The same Supervisor on Thespian's in-process base (simpleSystemBase).

OTP's decisions (strategies, restart types, intensity, shutdown order and
timeouts, escalation) are written once in supervisors/supervisor.py; these
tests run them where every actor is an object in this process, and check
what the in-process tier does differently: identity (actor ids, one pid),
exact death notices (no polling), and Erlang's untrappable kill (no
terminate, reason ``killed``, the subtree dropped, death hooks run).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from thespian.actors import WakeupMessage

from supervisors import (ONE_FOR_ALL, ONE_FOR_ONE, PERMANENT, REST_FOR_ONE, SIMPLE_ONE_FOR_ONE,
                         TEMPORARY, TRANSIENT, ChildRef, ChildSpec, LogConfig, Runtime,
                         SupervisedActor, SupFlags, supervisor_spec)
from supervisors import inprocess
from supervisors.runtime import IN_PROCESS_BASE

EVENTS: list[tuple] = []   # what the actors did (they run in this process)


class Recorder(SupervisedActor):
    def init(self, name: str = "w", stubborn: bool = False) -> None:
        self.name = name
        self.count = 0
        self.stubborn = stubborn
        EVENTS.append(("init", name, self.actor_id))

    def handle_message(self, msg, sender):
        if msg == "incr":
            self.count += 1
            self.send(sender, self.count)
        elif msg == "id":
            self.send(sender, (os.getpid(), self.actor_id))
        elif msg == "crash":
            raise ValueError(f"{self.name} crashed on purpose")
        elif msg == "normal":
            self.stop("normal")

    def _on_shutdown_request(self):
        if not self.stubborn:   # a stubborn child ignores the request: it has to be killed
            super()._on_shutdown_request()

    def terminate(self, reason):
        EVENTS.append(("terminate", self.name, self.actor_id, reason))


def w(id, restart=PERMANENT, shutdown=None, **kwargs):
    kw = dict(name=id, **kwargs)
    return ChildSpec(id, (Recorder, (), kw), restart=restart, shutdown=shutdown)


@pytest.fixture
def rt(log_path):
    EVENTS.clear()
    runtime = Runtime(log=LogConfig(path=str(log_path), level="debug"), base=IN_PROCESS_BASE)
    yield runtime
    runtime.shutdown()


def start(rt, children, strategy=ONE_FOR_ONE, intensity=10, period=10):
    return rt.start(supervisor_spec("root", SupFlags(strategy=strategy, intensity=intensity,
                                                     period=period, name="root"), children))


def ref_of(rt, cid, sup=None):
    return {c[0]: c[1] for c in rt.which_children(sup)}[cid]


def until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def new_ref(rt, cid, old, sup=None):
    def check():
        ref = ref_of(rt, cid, sup)
        return ref if isinstance(ref, ChildRef) and ref.actor_id != old.actor_id else None
    return until(check)


def test_identity_is_the_pid_and_the_in_process_address(rt):
    root = start(rt, [w("a"), w("b")])
    a, b = ref_of(rt, "a"), ref_of(rt, "b")
    assert a.pid == b.pid == root.pid == os.getpid()   # one process
    assert len({a.actor_id, b.actor_id, root.actor_id}) == 3
    assert a.actor_id.startswith(f"{os.getpid()}/")
    assert rt.ask(a, "id") == (os.getpid(), a.actor_id)
    assert rt.system._systemBase._supervisors_tier.name == "in_process"


def test_one_for_one_restarts_a_fresh_actor(rt, log):
    start(rt, [w("a"), w("b")])
    a, b = ref_of(rt, "a"), ref_of(rt, "b")
    assert rt.ask(a, "incr") == 1 and rt.ask(a, "incr") == 2
    rt.tell(a, "crash")
    a2 = new_ref(rt, "a", a)
    assert rt.ask(a2, "incr") == 1                       # fresh state
    assert ref_of(rt, "b") == b                          # sibling untouched
    assert ("terminate", "a", a.actor_id, ) == EVENTS[[e[:3] for e in EVENTS].index(
        ("terminate", "a", a.actor_id))][:3]             # a crash runs terminate
    [crash] = log.events("actor.crashed")
    assert crash["actor_id"] == a.actor_id
    [restarted] = log.events("supervisor.child.restarted")
    assert restarted["child_id"] == "a"


@pytest.mark.parametrize("strategy, expect", [(ONE_FOR_ALL, ["a", "b", "c"]),
                                               (REST_FOR_ONE, ["b", "c"])])
def test_group_strategies_restart_in_start_order(rt, log, strategy, expect):
    start(rt, [w("a"), w("b"), w("c")], strategy=strategy)
    b = ref_of(rt, "b")
    EVENTS.clear()
    rt.tell(b, "crash")
    new_ref(rt, "b", b)
    until(lambda: [e[1] for e in EVENTS if e[0] == "init"] == expect)
    stopped = [e[1] for e in EVENTS if e[0] == "terminate"]
    assert stopped[0] == "b" and stopped[1:] == list(reversed([x for x in expect if x != "b"]))


def test_restart_types(rt):
    start(rt, [w("p"), w("t", restart=TRANSIENT), w("tmp", restart=TEMPORARY)])
    for cid in ("t", "tmp"):
        rt.tell(ref_of(rt, cid), "normal")
    until(lambda: ref_of(rt, "t") == "undefined")
    assert "tmp" not in {c[0] for c in rt.which_children()}
    p = ref_of(rt, "p")
    rt.tell(p, "normal")
    new_ref(rt, "p", p)                                  # permanent: restarted even after normal


def test_intensity_exceeded_shuts_the_tree_down(rt, log):
    start(rt, [w("a")], intensity=2, period=10)
    a = ref_of(rt, "a")
    for _ in range(2):
        rt.tell(a, "crash")
        a = new_ref(rt, "a", a)
    rt.tell(a, "crash")        # the third restart in 10 s is one too many
    exit = rt.wait(timeout=5)
    assert exit is not None and not exit.requested
    [down] = log.events("supervisor.shutdown")
    assert down["reason"] == "reached_max_restart_intensity"


def test_kill_is_untrappable_and_reported_killed(rt, log):
    start(rt, [w("a")])
    a = ref_of(rt, "a")
    tier = inprocess.tier(rt.system)
    deaths = []
    tier.on_death(lambda actor_id, killed: deaths.append((actor_id, killed)))
    EVENTS.clear()
    assert tier.kill_address(a.address)
    a2 = new_ref(rt, "a", a)
    assert not any(e[0] == "terminate" for e in EVENTS)   # no terminate
    assert deaths == [(a.actor_id, True)]
    [term] = log.events("supervisor.child.terminated")
    assert term["reason"] == "killed" and term["child_id"] == "a"
    assert tier.instance(a.address) is None and tier.instance(a2.address) is not None


def test_killing_a_supervisor_drops_its_subtree_without_terminate(rt, log):
    mid = supervisor_spec("mid", SupFlags(strategy=ONE_FOR_ONE, intensity=5, period=5, name="mid"),
                          [w("x"), w("y")])
    start(rt, [mid])
    m = ref_of(rt, "mid")
    x, y = ref_of(rt, "x", m), ref_of(rt, "y", m)
    tier = inprocess.tier(rt.system)
    deaths = []
    tier.on_death(lambda actor_id, killed: deaths.append((actor_id, killed)))
    EVENTS.clear()
    tier.kill_address(m.address)
    m2 = new_ref(rt, "mid", m)
    until(lambda: isinstance(ref_of(rt, "y", m2), ChildRef))
    assert not any(e[0] == "terminate" for e in EVENTS)
    assert sorted(deaths) == sorted([(m.actor_id, True), (x.actor_id, True), (y.actor_id, True)])
    for old in (m, x, y):
        assert tier.instance(old.address) is None
    assert [e[1] for e in EVENTS if e[0] == "init"] == ["x", "y"]   # the new subtree
    [term] = log.events("supervisor.child.terminated", child_id="mid")
    assert term["reason"] == "killed"


def test_shutdown_order_and_timeout_then_kill(rt, log):
    start(rt, [w("a"), w("b", shutdown=200, stubborn=True), w("c")])
    t0 = time.monotonic()
    exit = rt.stop(timeout=10)
    took = time.monotonic() - t0
    assert exit is not None and exit.requested
    assert [e[1] for e in EVENTS if e[0] == "terminate"] == ["c", "a"]   # b was killed
    assert 0.2 <= took < 2.0
    [killed] = log.events("supervisor.shutdown_error")
    assert killed["child_id"] == "b" and killed["reason"] == "killed"


def test_dynamic_supervisor_terminates_by_ref(rt):
    root = rt.start(supervisor_spec("conns", SupFlags(strategy=SIMPLE_ONE_FOR_ONE, intensity=10, period=1,
                                                      name="conns", max_children=3),
                                    [ChildSpec("c", (Recorder, ()), restart=TEMPORARY)]))
    refs = [rt.start_child(root, ())[1] for _ in range(3)]
    assert rt.start_child(root, ()) == ("error", "max_children")
    assert len({r.actor_id for r in refs}) == 3
    assert rt.terminate_child(root, refs[1]) == "ok"
    assert rt.count_children(root)["active"] == 2
    assert rt.terminate_child(root, refs[1]) == ("error", "not_found")


def test_wakeups_scale_with_thousands_of_timers(rt):
    """simpleSystemBase scans its wakeup list on every send; the in-process
    tier replaces it with a heap: a delivery costs the same with 20,000
    timers pending as with none."""
    start(rt, [w("a")])
    a = ref_of(rt, "a")

    def per_delivery():
        n = 300
        t0 = time.perf_counter()
        for _ in range(n):
            rt.ask(a, "incr")
        return (time.perf_counter() - t0) / n

    base = per_delivery()
    sysbase = rt.system._systemBase
    for i in range(20000):
        sysbase.wakeupAfter(a, 3600 + i, ("far", i))
    loaded = per_delivery()
    assert loaded < base * 3 + 50e-6, (base, loaded)
    assert len(sysbase._supervisors_wakeups.heap) >= 20000


class NeverAcks(SupervisedActor):
    """Its init returns but it never acknowledges the start (as a supervisor
    whose children do not start would): only the start timeout ends it."""

    def init(self) -> None:
        EVENTS.append(("init", "never", self.actor_id))

    def _after_init(self) -> None:
        pass


class Timed(SupervisedActor):
    def init(self) -> None:
        pass

    def handle_message(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "after":
            self.wakeupAfter(msg[1], payload=("tick", msg[2]))
        elif isinstance(msg, WakeupMessage):
            EVENTS.append(("wakeup", msg.payload, msg.delayPeriod))


def test_start_timeouts_with_one_wait_timer_outstanding(rt, log):
    """A supervisor keeps one wait timer outstanding (the earliest deadline):
    a short start timeout after a long one still times out on time, and a
    hung in-process child is killed."""
    root = start(rt, [w("a")])
    assert rt.start_child(root, ChildSpec("slowly", (Recorder, (), dict(name="slowly")), restart=TEMPORARY,
                                          start_timeout=60))[0] == "ok"
    t = time.monotonic()
    spec = ChildSpec("never", (NeverAcks, ()), restart=TEMPORARY, start_timeout=0.3)
    assert rt.start_child(root, spec) == ("error", "timeout")
    assert 0.25 < time.monotonic() - t < 3
    [err] = log.events("supervisor.start_error", child_id="never")
    assert err["reason"] == "timeout"
    assert {c[0] for c in rt.which_children(root)} == {"a", "slowly"}
    # and again, now that a timer for the 60 s wait's deadline may still be outstanding
    t = time.monotonic()
    assert rt.start_child(root, spec) == ("error", "timeout")
    assert time.monotonic() - t < 3


def drive_until(rt, cond, timeout=5.0):
    """Run the in-process system (it runs only inside tell/ask/listen) until cond()."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        rt.system.listen(0.02)


def test_wakeups_reach_live_actors_and_are_dropped_for_dead_ones(rt):
    root = start(rt, [ChildSpec("t", (Timed, ()), restart=TEMPORARY)])
    t = ref_of(rt, "t")
    rt.tell(t, ("after", 0.05, 1))
    rt.tell(t, ("after", timedelta(milliseconds=80), 2))
    drive_until(rt, lambda: len([e for e in EVENTS if e[0] == "wakeup"]) == 2)
    got = [e[1:] for e in EVENTS if e[0] == "wakeup"]
    assert got == [(("tick", 1), 0.05), (("tick", 2), timedelta(milliseconds=80))]
    rt.tell(t, ("after", 0.05, 3))
    assert rt.terminate_child(root, "t") == "ok"
    heap = rt.system._systemBase._supervisors_wakeups.heap
    drive_until(rt, lambda: not any(e[4] == ("tick", 3) for e in heap))   # due, and dropped: its actor is gone
    assert len([e for e in EVENTS if e[0] == "wakeup"]) == 2


def test_dead_actors_leave_no_registry_entries(rt):
    """simpleSystemBase ends a dead actor's registry entry as None, never deleted: a worker
    would keep one per actor it ever ran.  The tier deletes it."""
    root = start(rt, [ChildSpec("t", (Timed, ()), restart=TEMPORARY)])
    registry = rt.system._systemBase.actorRegistry
    before = len(registry)
    for _ in range(200):
        assert rt.terminate_child(root, "t") == "ok"
        assert rt.start_child(root, ChildSpec("t", (Timed, ()), restart=TEMPORARY))[0] == "ok"
    drive_until(rt, lambda: len(registry) <= before)
    assert None not in registry.values()
