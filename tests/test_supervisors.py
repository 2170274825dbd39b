"""The supervisors library against real Thespian actor processes and real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from logutil import Log, wait_until
from sup_actors import NotingSupervisor, Worker

from supervisors import (ALL_SIGNIFICANT, ANY_SIGNIFICANT, BRUTAL_KILL, INFINITY, ONE_FOR_ALL,
                         ONE_FOR_ONE, PERMANENT, REST_FOR_ONE, SIMPLE_ONE_FOR_ONE, TEMPORARY,
                         TRANSIENT, ChildRef, ChildSpec, StartError, SupFlags, supervisor_spec)
from supervisors import _platform

HERE = os.path.dirname(__file__)


def worker(id, restart=PERMANENT, shutdown=None, significant=False, **kwargs):
    return ChildSpec(id, (Worker, (), dict(name=str(id), **kwargs)), restart=restart,
                     shutdown=shutdown, significant=significant)


def start(rt, children, strategy=ONE_FOR_ONE, intensity=10, period=10, **flags):
    return rt.start(supervisor_spec("root", SupFlags(strategy=strategy, intensity=intensity,
                                                     period=period, **flags), children))


def refs(rt, sup=None):
    return {cid: ref for cid, ref, _, _ in rt.which_children(sup)}


def pid_of(rt, cid, sup=None):
    ref = refs(rt, sup)[cid]
    return ref.pid if isinstance(ref, ChildRef) else ref


def wait_new_pid(rt, cid, old, sup=None, timeout=5.0):
    def check():
        ref = refs(rt, sup).get(cid)
        return ref if isinstance(ref, ChildRef) and ref.pid != old else None
    return wait_until(check, timeout, message=f"{cid} restarted").pid


def alive(pid):
    return _platform.process_start_time(pid) is not None


# -- strategies -----------------------------------------------------------------


def test_one_for_one_restarts_only_the_failed_child(runtime, log):
    root = start(runtime, [worker("a"), worker("b"), worker("c")])
    before = {c: pid_of(runtime, c) for c in "abc"}
    runtime.tell(refs(runtime)["b"], "crash")
    new_b = wait_new_pid(runtime, "b", before["b"])
    after = {c: pid_of(runtime, c) for c in "abc"}
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert new_b != before["b"] and not alive(before["b"])
    [t] = log.events("supervisor.child.terminated", child_id="b")
    assert t["reason"]["error"] == "ValueError"
    [r] = log.events("supervisor.child.restarted", child_id="b")
    assert (r["old_pid"], r["child_pid"]) == (before["b"], new_b)
    assert root.pid == runtime.root.pid


def test_one_for_all_restarts_all_in_order(runtime, log):
    start(runtime, [worker("a"), worker("b"), worker("c")], strategy=ONE_FOR_ALL)
    before = {c: pid_of(runtime, c) for c in "abc"}
    mark = len(log.records())
    runtime.tell(refs(runtime)["b"], "crash")
    for c in "abc":
        wait_new_pid(runtime, c, before[c])
    tail = log.records()[mark:]
    stopped = [r["child_id"] for r in tail if r["event"] == "actor.stopped"]
    started = [r["child_id"] for r in tail if r["event"] == "actor.started"]
    assert stopped == ["c", "a"]          # the others, in reverse start order
    assert started == ["a", "b", "c"]     # all, in start order
    assert not any(alive(p) for p in before.values())


def test_rest_for_one_restarts_the_rest(runtime, log):
    start(runtime, [worker("a"), worker("b"), worker("c"), worker("d")], strategy=REST_FOR_ONE)
    before = {c: pid_of(runtime, c) for c in "abcd"}
    mark = len(log.records())
    runtime.tell(refs(runtime)["b"], "crash")
    for c in "bcd":
        wait_new_pid(runtime, c, before[c])
    assert pid_of(runtime, "a") == before["a"]
    tail = log.records()[mark:]
    assert [r["child_id"] for r in tail if r["event"] == "actor.stopped"] == ["d", "c"]
    assert [r["child_id"] for r in tail if r["event"] == "actor.started"] == ["b", "c", "d"]


def test_one_for_all_drops_temporary_siblings(runtime):
    start(runtime, [worker("a"), worker("tmp", restart=TEMPORARY), worker("c")], strategy=ONE_FOR_ALL)
    old_a = pid_of(runtime, "a")
    runtime.tell(refs(runtime)["c"], "crash")
    wait_new_pid(runtime, "a", old_a)
    wait_until(lambda: "tmp" not in refs(runtime) and isinstance(refs(runtime)["c"], ChildRef))
    assert list(refs(runtime)) == ["a", "c"]


# -- restart type x exit reason ------------------------------------------------------

REASONS = {  # command sent to the child (or "kill" for SIGKILL) -> is the exit normal?
    "normal": True, "shutdown": True, "shutdown_term": True,
    "other": False, "crash": False, "kill": False,
}


@pytest.mark.parametrize("restart", [PERMANENT, TRANSIENT, TEMPORARY])
@pytest.mark.parametrize("how", list(REASONS))
def test_restart_type_by_exit_reason(runtime, log, restart, how):
    start(runtime, [worker("x", restart=restart), worker("y")])
    old = pid_of(runtime, "x")
    if how == "kill":
        os.kill(old, signal.SIGKILL)
    else:
        runtime.tell(refs(runtime)["x"], how)
    normal = REASONS[how]
    expect_restart = restart == PERMANENT or (restart == TRANSIENT and not normal)
    if expect_restart:
        wait_new_pid(runtime, "x", old)
    elif restart == TEMPORARY:
        wait_until(lambda: "x" not in refs(runtime), message="temporary child removed")
    else:
        wait_until(lambda: refs(runtime)["x"] == "undefined", message="transient child kept, not running")
    assert not alive(old)
    reports = log.events("supervisor.child.terminated", child_id="x")
    # OTP: a permanent child's exit is always reported, others only when abnormal
    assert len(reports) == (1 if restart == PERMANENT or not normal else 0)
    if reports:
        reason = reports[0]["reason"]
        expected = {"normal": "normal", "shutdown": "shutdown", "shutdown_term": ["shutdown", "bye"],
                    "other": "some_other_reason", "kill": "killed"}.get(how)
        if how == "crash":
            assert reason["error"] == "ValueError" and "crashed on purpose" in reason["message"]
        else:
            assert reason == expected
        assert reports[0]["offender"]["restart_type"] == restart
    assert len(log.events("supervisor.child.restarted", child_id="x")) == (1 if expect_restart else 0)
    assert isinstance(refs(runtime)["y"], ChildRef)


# -- let it crash ----------------------------------------------------------------------


def test_crash_restarts_a_fresh_actor(runtime, log):
    start(runtime, [worker("a")])
    a = refs(runtime)["a"]
    assert runtime.ask(a, "incr") == 1
    assert runtime.ask(a, "incr") == 2
    runtime.tell(a, "crash")
    new = wait_new_pid(runtime, "a", a.pid)
    assert runtime.ask(refs(runtime)["a"], "incr") == 1  # fresh state, from the start arguments
    assert not alive(a.pid)
    [crash] = log.events("actor.crashed", pid=a.pid)
    assert crash["error_type"] == "ValueError"
    assert crash["message"] == "a crashed on purpose"
    assert "Traceback" in crash["traceback"] and "handle_message" in crash["traceback"]
    assert crash["message_type"] == "str"
    assert crash["actor"] == "Worker"
    assert new != a.pid


def test_a_supervisor_answers_a_child_notice(runtime):
    """handle_child_notice's result goes back to the child as NoticeReply
    (a child that must not act before its supervisor took note waits for it)."""
    runtime.start(supervisor_spec("root", SupFlags(strategy=ONE_FOR_ONE), [worker("a")],
                                  actor_class=NotingSupervisor))
    a = refs(runtime)["a"]
    assert runtime.ask(a, ("note", {"k": 1}), timeout=5) == ("answered", ("noted", "a", a.pid, {"k": 1}), True)
    assert runtime.ask(a, ("note", "quiet"), timeout=1) is None   # None: no answer is sent


# -- restart intensity -------------------------------------------------------------------


def _crash_at(rt, times, t0):
    """Crash child "x" at the given offsets (seconds after t0), each time
    waiting for the restart first."""
    for at in times:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the scenario is a schedule in time
        ref = wait_until(lambda: isinstance(refs(rt)["x"], ChildRef) and refs(rt)["x"])
        rt.tell(ref, "crash")
        wait_until(lambda: refs(rt)["x"] != ref, message="crash handled")


def test_intensity_window_slides(runtime, log):
    # intensity 2 in 2 s.  Restarts at 0, 1.4, 2.4, 3.8: at 2.4 the window
    # (0.4, 2.4] holds 1.4 and 2.4; at 3.8, (1.8, 3.8] holds 2.4 and 3.8.
    start(runtime, [worker("x")], intensity=2, period=2.0)
    _crash_at(runtime, [0, 1.4, 2.4, 3.8], time.monotonic())
    wait_until(lambda: isinstance(refs(runtime)["x"], ChildRef))
    assert len(log.events("supervisor.child.restarted", child_id="x")) == 4
    assert not log.events("supervisor.shutdown")
    assert runtime.wait(timeout=0.2) is None  # root still running


def test_intensity_exceeded_within_sliding_window(runtime, log):
    # Restarts at 0, 1.4, 2.4, 3.0: at 3.0 the window (1.0, 3.0] holds three.
    # (A window reset at 2.4, "fixed" after the first 2 s, would hold two.)
    start(runtime, [worker("x")], intensity=2, period=2.0)
    t0 = time.monotonic()
    _crash_at(runtime, [0, 1.4, 2.4], t0)
    time.sleep(max(0, t0 + 3.0 - time.monotonic()))
    runtime.tell(refs(runtime)["x"], "crash")
    exit = runtime.wait(timeout=10)
    assert exit is not None and exit.requested is False and exit.root_reason == "shutdown"
    [sd] = log.events("supervisor.shutdown", supervisor="root")
    assert sd["reason"] == "reached_max_restart_intensity"
    assert len(log.events("supervisor.child.restarted", child_id="x")) == 3
    assert runtime.exit_status == 1


def test_escalation_through_two_levels(runtime, log):
    mid = supervisor_spec("mid", SupFlags(intensity=1, period=30), [worker("w")])
    start(runtime, [worker("a"), mid], intensity=1, period=30)
    a_pid = pid_of(runtime, "a")

    def mid_ref():
        return wait_until(lambda: isinstance(refs(runtime).get("mid"), ChildRef) and refs(runtime)["mid"])

    def crash_w_twice(n):
        m = mid_ref()
        w = wait_until(lambda: isinstance(refs(runtime, m).get("w"), ChildRef) and refs(runtime, m)["w"])
        runtime.tell(w, "crash")
        w2 = wait_new_pid(runtime, "w", w.pid, sup=m)
        runtime.tell(refs(runtime, m)["w"], "crash")   # 2nd restart within 30 s: mid gives up
        log.wait_for("supervisor.shutdown", count=n, supervisor="mid")
        return m, w2

    m1, _ = crash_w_twice(1)      # mid exits with reason shutdown
    m2 = wait_new_pid(runtime, "mid", m1.pid)  # root restarts mid (its 1st restart)
    assert pid_of(runtime, "a") == a_pid
    crash_w_twice(2)              # again -> root's 2nd restart exceeds -> root exits
    exit = runtime.wait(timeout=15)
    assert exit is not None and not exit.requested
    shutdowns = [(r["supervisor"], r["reason"]) for r in log.events("supervisor.shutdown")]
    assert shutdowns == [("mid", "reached_max_restart_intensity")] * 2 + [
        ("root", "reached_max_restart_intensity")]
    [t1, t2] = log.events("supervisor.child.terminated", child_id="mid")
    assert t1["reason"] == "shutdown" and t1["offender"]["child_type"] == "supervisor"
    assert not alive(m1.pid) and not alive(m2) and not alive(a_pid)


def test_root_intensity_exceeded_exits_nonzero_with_nothing_left(tmp_path):
    path = tmp_path / "crashloop.jsonl"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "programs", "crashloop.py"), str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        pgid = int(re.match(r"pgid (\d+)", line).group(1))
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _platform.live_group_members(pgid) == []
    log = Log(path)
    [sd] = log.events("supervisor.shutdown", supervisor="root")
    assert sd["reason"] == "reached_max_restart_intensity"
    [final] = log.events("runtime.stopped")
    assert final["status"] == 1 and final["requested"] is False and final["level"] == "error"


# -- shutdown ----------------------------------------------------------------------------


def test_shutdown_stops_children_in_reverse_start_order(runtime, log):
    inner = supervisor_spec("inner", SupFlags(), [worker("x"), worker("y")])
    start(runtime, [worker("a"), inner, worker("b")])
    pids = [p for p in runtime.processes()]
    runtime.stop(timeout=30)
    stopped = [(r["actor"], r.get("child_id")) for r in log.events("actor.stopped")]
    assert stopped == [("Worker", "b"), ("Worker", "y"), ("Worker", "x"), ("Supervisor", "inner"),
                       ("Worker", "a"), ("Supervisor", "root"), ("Application", "application")]
    assert all(r["reason"] == "shutdown" for r in log.events("actor.stopped"))
    assert not log.events("supervisor.shutdown_error")
    runtime.shutdown()
    assert not [p for p in pids if alive(p)]


def test_shutdown_timeout_then_kill(runtime, log):
    start(runtime, [worker("a"), worker("slow", shutdown=300, stop_delay=60)])
    slow = pid_of(runtime, "slow")
    t = time.monotonic()
    runtime.stop(timeout=30)
    took = time.monotonic() - t
    assert 0.3 <= took < 5
    assert not alive(slow)
    [err] = log.events("supervisor.shutdown_error", child_id="slow")
    assert err["reason"] == "killed" and err["offender"]["shutdown"] == 300
    assert not log.events("actor.stopped", child_id="slow")  # it never finished terminate
    assert log.events("actor.stopped", child_id="a")          # the next one was still stopped


def test_shutdown_infinity_waits(runtime, log):
    start(runtime, [worker("patient", shutdown=INFINITY, stop_delay=1.5)])
    t = time.monotonic()
    runtime.stop(timeout=30)
    assert time.monotonic() - t >= 1.5
    [stopped] = log.events("actor.stopped", child_id="patient")
    assert stopped["reason"] == "shutdown"
    assert not log.events("supervisor.shutdown_error")


def test_shutdown_brutal_kill(runtime, log):
    start(runtime, [worker("victim", shutdown=BRUTAL_KILL, stop_delay=60)])
    victim = pid_of(runtime, "victim")
    t = time.monotonic()
    runtime.stop(timeout=30)
    assert time.monotonic() - t < 3
    assert not alive(victim)
    assert not log.events("actor.stopped", child_id="victim")
    assert not log.events("supervisor.shutdown_error")  # killed is the expected reason


# -- SIGKILL detection -------------------------------------------------------------------


def test_sigkilled_child_detected_and_restarted_within_one_second(runtime, log):
    start(runtime, [worker("a"), worker("b")])
    old = pid_of(runtime, "b")
    t = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait_new_pid(runtime, "b", old, timeout=5, )
    took = time.monotonic() - t
    assert took < 1.0, f"restart took {took:.3f}s"
    [rep] = log.events("supervisor.child.terminated", child_id="b")
    assert rep["reason"] == "killed"


def test_many_children_sigkilled_at_once_all_detected(runtime, log):
    tmpl = ChildSpec("w", (Worker, ()), restart=PERMANENT)
    root = start(runtime, [tmpl], strategy=SIMPLE_ONE_FOR_ONE, intensity=100, period=10)
    for i in range(20):
        assert runtime.start_child(root, (f"w{i}",))[0] == "ok"
    pids = [ref.pid for _, ref, _, _ in runtime.which_children(root)]
    t = time.monotonic()
    for p in pids:
        os.kill(p, signal.SIGKILL)
    log.wait_for("supervisor.child.restarted", count=20, timeout=10)
    took = time.monotonic() - t
    assert len(log.events("supervisor.child.terminated", reason="killed")) == 20
    now = [ref.pid for _, ref, _, _ in runtime.which_children(root)]
    assert len(now) == 20 and not set(now) & set(pids)
    assert took < 5, took


# -- dynamic supervisor, max_children --------------------------------------------------


def test_max_children_is_an_error_result(runtime):
    tmpl = ChildSpec("conn", (Worker, ()), restart=TEMPORARY)
    root = start(runtime, [tmpl], strategy=SIMPLE_ONE_FOR_ONE, max_children=2)
    ok1 = runtime.start_child(root, ("c1",))
    ok2 = runtime.start_child(root, ("c2",))
    assert ok1[0] == "ok" and ok2[0] == "ok"
    assert runtime.start_child(root, ("c3",)) == ("error", "max_children")
    assert runtime.count_children(root)["active"] == 2
    assert runtime.terminate_child(root, ok1[1].pid) == "ok"
    assert runtime.start_child(root, ("c3",))[0] == "ok"


def test_dynamic_supervisor_operations(runtime, log):
    tmpl = ChildSpec("conn", (Worker, ("base",)), restart=TRANSIENT)
    root = start(runtime, [tmpl], strategy=SIMPLE_ONE_FOR_ONE)
    ok, ref = runtime.start_child(root, ())
    assert ok == "ok" and isinstance(ref, ChildRef)
    assert runtime.ask(ref, "incr") == 1
    # extra args are appended to the template's (OTP: A ++ ExtraArgs)
    [started] = log.events("supervisor.child.started", child_pid=ref.pid)
    assert started["started"]["start"] == "sup_actors.Worker('base')"
    ok, ref2 = runtime.start_child(root, (False, 0.0))
    assert ok == "ok"
    [ids] = [{cid for cid, _, _, _ in runtime.which_children(root)}]
    assert ids == {"undefined"}
    assert runtime.count_children(root) == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
    assert runtime.restart_child(root, "conn") == ("error", "simple_one_for_one")
    assert runtime.delete_child(root, "conn") == ("error", "simple_one_for_one")
    assert runtime.terminate_child(root, "conn") == ("error", "simple_one_for_one")
    assert runtime.terminate_child(root, 999999) == ("error", "not_found")
    assert runtime.terminate_child(root, ref) == "ok"
    assert not alive(ref.pid)
    assert runtime.count_children(root)["active"] == 1
    # a transient dynamic child exiting normally is removed, not restarted
    runtime.tell(ref2, "normal")
    wait_until(lambda: runtime.count_children(root)["specs"] == 0)
    # a failing start is an error result, the supervisor carries on
    bad = ChildSpec("bad", (Worker, (), {"fail_init": True}))
    result = runtime.start_child(root, bad)
    assert result[0] == "error" and result[1].type == "RuntimeError"
    assert runtime.count_children(root)["specs"] == 0


def test_static_supervisor_operations(runtime, log):
    root = start(runtime, [worker("a"), worker("b", restart=TRANSIENT)])
    assert runtime.count_children() == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
    ok, spec = runtime.get_childspec(root, "a")
    assert ok == "ok" and spec.id == "a"
    assert runtime.get_childspec(root, "zz") == ("error", "not_found")
    # start_child
    ok, ref = runtime.start_child(root, worker("c"))
    assert ok == "ok" and alive(ref.pid)
    err, detail = runtime.start_child(root, worker("c"))
    assert (err, detail[0]) == ("error", "already_started") and detail[1].pid == ref.pid
    assert runtime.start_child(root, "junk")[0] == "error"
    bad = runtime.start_child(root, ChildSpec("d", (Worker, ()), restart="sometimes"))
    assert bad[0] == "error" and bad[1][0] == "invalid_child_spec"
    # terminate_child keeps the spec; restart_child starts it again
    assert runtime.terminate_child(root, "c") == "ok"
    assert not alive(ref.pid)
    assert refs(runtime)["c"] == "undefined"
    assert runtime.start_child(root, worker("c")) == ("error", "already_present")
    assert runtime.restart_child(root, "a") == ("error", "running")
    assert runtime.delete_child(root, "a") == ("error", "running")
    assert runtime.restart_child(root, "zz") == ("error", "not_found")
    assert runtime.delete_child(root, "zz") == ("error", "not_found")
    assert runtime.terminate_child(root, "zz") == ("error", "not_found")
    ok, ref2 = runtime.restart_child(root, "c")
    assert ok == "ok" and ref2.pid != ref.pid
    assert runtime.terminate_child(root, "c") == "ok"
    assert runtime.delete_child(root, "c") == "ok"
    assert "c" not in refs(runtime)
    # a temporary child's spec is dropped when it is terminated
    assert runtime.start_child(root, worker("t", restart=TEMPORARY))[0] == "ok"
    assert runtime.terminate_child(root, "t") == "ok"
    assert "t" not in refs(runtime)
    assert runtime.count_children() == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
    assert [e["child_id"] for e in log.events("actor.stopped")] == ["c", "c", "t"]


# -- start failures ----------------------------------------------------------------------


def test_failed_start_stops_started_children_and_reports(runtime, log):
    with pytest.raises(StartError) as info:
        start(runtime, [worker("a"), worker("b", fail_init=True), worker("c")])
    reason = info.value.reason
    assert reason[0] == "shutdown" and reason[1][:2] == ("failed_to_start_child", "root")
    inner = reason[1][2]
    assert inner[0] == "shutdown" and inner[1][:2] == ("failed_to_start_child", "b")
    assert inner[1][2].type == "RuntimeError"
    assert [r["child_id"] for r in log.events("actor.stopped")] == ["a"]
    assert not log.events("actor.started", child_id="c")
    [err] = log.events("supervisor.start_error", supervisor="root")
    assert err["child_id"] == "b" and err["reason"]["error"] == "RuntimeError"
    [crash] = log.events("actor.crashed", child_id="b")
    assert crash["message_type"] == "Init"


def test_failing_restarts_count_towards_intensity(runtime, log, tmp_path):
    flag = tmp_path / "fail"
    start(runtime, [worker("x", fail_if_exists=str(flag))], intensity=3, period=30)
    flag.write_text("")
    runtime.tell(refs(runtime)["x"], "crash")
    exit = runtime.wait(timeout=15)
    assert exit is not None and not exit.requested
    assert len(log.events("supervisor.start_error", child_id="x")) == 3
    [sd] = log.events("supervisor.shutdown")
    assert sd["reason"] == "reached_max_restart_intensity"


def test_start_timeout(runtime, log):
    tmpl = ChildSpec("slow", (Worker, (), {"init_delay": 60}), restart=TEMPORARY, start_timeout=0.5)
    root = start(runtime, [worker("a")], strategy=ONE_FOR_ONE)
    before = set(runtime.processes())
    t = time.monotonic()
    assert runtime.start_child(root, tmpl) == ("error", "timeout")
    assert time.monotonic() - t < 5
    assert set(runtime.processes()) == before  # the hung child was killed
    [err] = log.events("supervisor.start_error", child_id="slow")
    assert err["reason"] == "timeout"


# -- significant children, auto_shutdown -------------------------------------------------


def test_any_significant_child_exit_shuts_the_supervisor_down(runtime, log):
    start(runtime, [worker("a"), worker("sig", restart=TRANSIENT, significant=True)],
          auto_shutdown=ANY_SIGNIFICANT)
    a = pid_of(runtime, "a")
    runtime.tell(refs(runtime)["sig"], "normal")
    exit = runtime.wait(timeout=10)
    assert exit is not None and exit.root_reason == "shutdown"
    assert not alive(a)
    assert not log.events("supervisor.shutdown")  # not an intensity shutdown


def test_all_significant_waits_for_the_last(runtime):
    start(runtime, [worker("s1", restart=TEMPORARY, significant=True),
                    worker("s2", restart=TEMPORARY, significant=True)], auto_shutdown=ALL_SIGNIFICANT)
    runtime.tell(refs(runtime)["s1"], "normal")
    wait_until(lambda: "s1" not in refs(runtime))
    assert runtime.wait(timeout=0.3) is None
    runtime.tell(refs(runtime)["s2"], "normal")
    assert runtime.wait(timeout=10) is not None


# -- reports -----------------------------------------------------------------------------

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_report_fields(runtime, log):
    start(runtime, [worker("a"), worker("b", shutdown=200, stop_delay=30)])
    a = pid_of(runtime, "a")
    runtime.tell(refs(runtime)["a"], "crash")
    wait_new_pid(runtime, "a", a)
    runtime.stop(timeout=30)
    records = log.records(strict=True)
    for r in records:
        assert {"event", "timestamp", "level", "pid"} <= r.keys(), r
        assert ISO_UTC.match(r["timestamp"]), r["timestamp"]
        if r["event"].startswith(("actor.", "supervisor.")):
            assert "actor" in r, r
    assert len({r["pid"] for r in records}) >= 4  # one file, many processes
    [started] = log.events("supervisor.child.started", child_id="b")
    assert started["supervisor"] == "root"
    assert {"pid", "id", "actor", "restart_type", "shutdown", "child_type"} <= started["started"].keys()
    assert started["started"]["actor"] == "Worker" and started["started"]["restart_type"] == "permanent"
    [term] = log.events("supervisor.child.terminated")
    assert {"pid", "id", "start", "restart_type", "shutdown", "child_type"} <= term["offender"].keys()
    assert term["offender"]["pid"] == a and term["level"] == "error"
    assert {"error", "message", "traceback"} <= term["reason"].keys()
    [rs] = log.events("supervisor.child.restarted")
    assert rs["old_pid"] == a and rs["supervisor"] == "root"
    [se] = log.events("supervisor.shutdown_error")
    assert se["reason"] == "killed" and se["offender"]["id"] == "b"
    [crash] = log.events("actor.crashed")
    assert {"error_type", "message", "traceback", "message_type", "pid", "actor"} <= crash.keys()
    for ev in ("actor.started", "actor.stopped"):
        for r in log.events(ev):
            assert r["pid"] and r["actor"]
    assert {r["reason"] for r in log.events("actor.stopped")} == {"shutdown"}


# -- PartitionSupervisor --------------------------------------------------------------------


@pytest.mark.parametrize("cls_name", ["PartitionSupervisor", "Supervisor"])
def test_a_partition_supervisor_stops_its_partitions_together(runtime, log, cls_name):
    """Each partition's worker takes 1.5 s to stop: a PartitionSupervisor's
    shutdown asks both at once; a plain Supervisor (the control) one after
    the other."""
    import datetime

    import supervisors
    parts = [supervisor_spec(p, SupFlags(), [worker(w, shutdown=INFINITY, stop_delay=1.5)])
             for p, w in (("p1", "x"), ("p2", "y"))]
    runtime.start(supervisor_spec("root", SupFlags(strategy=ONE_FOR_ALL, intensity=0), parts,
                                  actor_class=getattr(supervisors, cls_name)))
    runtime.stop(timeout=30)
    at = {r["child_id"]: datetime.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
          for r in log.events("actor.stopped") if r.get("child_id") in ("x", "y")}
    gap = abs((at["x"] - at["y"]).total_seconds())
    if cls_name == "PartitionSupervisor":
        assert gap < 1.0
    else:
        assert gap >= 1.5
    assert not log.events("supervisor.shutdown_error")
