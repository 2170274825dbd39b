"""`wsup logs`: filters, --follow, --timeline, --tree, --check.

Most tests run the sans-I/O functions of wsup.tools.logs on small hand-written
record lists shaped like the server's (see `mini_log`); tests/data holds two
real logs; one end-to-end test checks the log of a real server whose
CompressionActor was SIGKILLed."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from logutil import wait_until

from wsup.tools import logs
from wsup.cli import main as cli_main

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
WSUP = [sys.executable, "-m", "wsup.cli"]
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
CONN = "c0ffee000001"


def ts(ms: float) -> str:
    return (T0 + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def offender(pid, cid, restart="permanent", child_type="worker", shutdown=5000):
    return {"pid": pid, "id": cid, "start": f"x.Y({cid!r})", "restart_type": restart,
            "significant": False, "shutdown": shutdown, "child_type": child_type}


class LogBuilder:
    """Records with increasing timestamps (1 ms apart), shaped like the server's."""

    def __init__(self):
        self.records = []

    def add(self, event, pid, level="info", **fields):
        r = {**fields, "event": event, "level": level, "timestamp": ts(len(self.records)), "pid": pid}
        self.records.append(r)
        return r

    def started(self, pid, actor, cid, sup, **ctx):
        return self.add("actor.started", pid, actor=actor, child_id=cid, supervisor=sup, **ctx)

    def stopped(self, pid, actor, cid, sup, reason="shutdown", **ctx):
        return self.add("actor.stopped", pid, actor=actor, child_id=cid, supervisor=sup, reason=reason, **ctx)

    def crashed(self, pid, actor, cid, sup, **ctx):
        return self.add("actor.crashed", pid, level="error", actor=actor, child_id=cid, supervisor=sup,
                        error_type="ValueError", message="boom", traceback="Traceback ...",
                        message_type="str", **ctx)

    def child_started(self, sup_pid, sup_actor, sup_name, cid, pid, actor, restart="permanent",
                      child_type="worker", **ctx):
        return self.add("supervisor.child.started", sup_pid, actor=sup_actor, supervisor=sup_name,
                        child_id=cid, child_pid=pid,
                        started={**offender(pid, cid, restart, child_type), "actor": actor}, **ctx)

    def terminated(self, sup_pid, sup_actor, sup_name, cid, pid, reason="killed", restart="permanent",
                   **ctx):
        return self.add("supervisor.child.terminated", sup_pid, level="error", actor=sup_actor,
                        supervisor=sup_name, child_id=cid, child_pid=pid, reason=reason,
                        offender=offender(pid, cid, restart), **ctx)

    def restarted(self, sup_pid, sup_actor, sup_name, cid, old, new, **ctx):
        return self.add("supervisor.child.restarted", sup_pid, actor=sup_actor, supervisor=sup_name,
                        child_id=cid, old_pid=old, child_pid=new, strategy="one_for_one", **ctx)


# pids of the mini server
APP, ROOT, CONNS, LISTENER, CSUP, CACT, ZACT, ZACT2, MAIN = 10, 11, 12, 13, 20, 21, 22, 23, 1


def mini_log(kill_compression=False, stop=True, close=True, crash=False):
    """A server's log: the tree, one compressed connection (its CompressionActor
    SIGKILLed, or crashed, and restarted if asked), the connection closed, the
    server stopped."""
    b = LogBuilder()
    csup_name = f"connection-{CONN}"
    c = {"connection_id": CONN}
    b.started(CONNS, "Supervisor", "connections", "wsup")
    b.child_started(ROOT, "Supervisor", "wsup", "connections", CONNS, "Supervisor", child_type="supervisor")
    b.started(LISTENER, "ListenerActor", "listener", "wsup")
    b.child_started(ROOT, "Supervisor", "wsup", "listener", LISTENER, "ListenerActor")
    b.started(ROOT, "Supervisor", "wsup", "application")
    b.child_started(APP, "Application", "application", "wsup", ROOT, "Supervisor", restart="temporary",
                    child_type="supervisor")
    b.started(APP, "Application", "application", "runtime")
    b.add("runtime.started", MAIN, actor="Runtime", admin_port=5000, root_pid=ROOT, process_group=9)
    b.add("server.listening", LISTENER, actor="ListenerActor", child_id="listener", supervisor="wsup",
          host="127.0.0.1", port=8765)
    b.add("connection.accepted", LISTENER, actor="ListenerActor", child_id="listener", supervisor="wsup",
          peer="127.0.0.1:40000", **c)
    b.started(CACT, "ConnectionActor", "connection", csup_name, **c)
    b.child_started(CSUP, "ConnectionSupervisor", csup_name, "connection", CACT, "ConnectionActor",
                    restart="temporary", **c)
    b.started(CSUP, "ConnectionSupervisor", "connection", "connections", **c)
    actor = {"actor": "ConnectionActor", "child_id": "connection", "supervisor": csup_name, **c}
    b.add("connection.upgraded", CACT, path="/", subprotocol=None, extensions=["permessage-deflate"],
          deflate_window_bits=12, inflate_window_bits=12, **actor)
    b.child_started(CONNS, "Supervisor", "connections", "connection", CSUP, "ConnectionSupervisor",
                    restart="temporary", child_type="supervisor", **c)
    b.started(ZACT, "CompressionActor", "compression", csup_name, **c)
    b.child_started(CSUP, "ConnectionSupervisor", csup_name, "compression", ZACT, "CompressionActor",
                    restart="transient", **c)
    sup = {"actor": "ConnectionSupervisor", "supervisor": csup_name, "child_id": "connection", **c}

    def opened(ctx, direction, owner):
        b.add("compression.context.opened", CSUP, context_id=ctx, direction=direction, window_bits=12,
              owner_pid=owner, owner_actor="CompressionActor", primed_bytes=0, **sup)

    def released(ctx, cause, by):
        b.add("compression.context.released", CSUP, context_id=ctx, cause=cause, by=by, **sup)

    opened("zd1", "deflate", ZACT)
    opened("zi1", "inflate", ZACT)
    owner = ZACT
    if kill_compression and crash:
        b.crashed(ZACT, "CompressionActor", "compression", csup_name, **c)
        released("zd1", "error", ZACT)
        released("zi1", "error", ZACT)
        b.terminated(CSUP, "ConnectionSupervisor", csup_name, "compression", ZACT, restart="transient",
                     reason={"error": "ValueError", "message": "boom", "traceback": "Traceback ..."}, **c)
    elif kill_compression:
        released("zd1", "owner_died", CSUP)
        released("zi1", "owner_died", CSUP)
        b.terminated(CSUP, "ConnectionSupervisor", csup_name, "compression", ZACT, restart="transient", **c)
    if kill_compression:
        b.started(ZACT2, "CompressionActor", "compression", csup_name, **c)
        b.child_started(CSUP, "ConnectionSupervisor", csup_name, "compression", ZACT2, "CompressionActor",
                        restart="transient", **c)
        b.restarted(CSUP, "ConnectionSupervisor", csup_name, "compression", ZACT, ZACT2, **c)
        b.add("compression.recovered", CACT, replayed_chunks=1, window_bytes=4096,
              context_ids={"deflate": "zd2", "inflate": "zi2"}, **actor)
        opened("zd2", "deflate", ZACT2)
        opened("zi2", "inflate", ZACT2)
        owner = ZACT2
    if close:
        b.add("connection.closed", CACT, code=1000, reason="", initiator="client", clean=True, **actor)
        b.stopped(CACT, "ConnectionActor", "connection", csup_name, reason="normal", **c)
        for ctx in ("zd2", "zi2") if kill_compression else ("zd1", "zi1"):
            released(ctx, "close", owner)
        b.stopped(owner, "CompressionActor", "compression", csup_name, **c)
        b.stopped(CSUP, "ConnectionSupervisor", "connection", "connections", **c)
    if stop:
        b.add("server.stopping", MAIN, actor="Runtime")
        b.stopped(LISTENER, "ListenerActor", "listener", "wsup")
        b.stopped(CONNS, "Supervisor", "connections", "wsup")
        b.stopped(ROOT, "Supervisor", "wsup", "application")
        b.stopped(APP, "Application", "application", "runtime")
        b.add("runtime.stopped", MAIN, actor="Runtime", status=0, root_reason="shutdown", requested=True)
        b.add("server.stopped", MAIN, actor="Runtime", status=0)
    return b.records


def violations(records, bad=()):
    return logs.check(records, bad=bad).violations


def kinds(records, bad=()):
    return [v.invariant for v in violations(records, bad)]


def drop(records, **match):
    """records without the ones matching every key=value."""
    out = [r for r in records if not all(r.get(k) == v for k, v in match.items())]
    assert len(out) < len(records), f"nothing matched {match}"
    return out


def index(records, **match):
    return next(i for i, r in enumerate(records) if all(r.get(k) == v for k, v in match.items()))


# -- clean logs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kill, crash", [(False, False), (True, False), (True, True)])
def test_clean_logs_pass(kill, crash):
    result = logs.check(mini_log(kill_compression=kill, crash=crash))
    assert result.ok, [str(v) for v in result.violations]
    assert result.counts["crashes"] == int(crash) and result.counts["kills"] == int(kill and not crash)
    assert result.counts["contexts"] == (4 if kill else 2)
    assert result.counts["restarts"] == (1 if kill else 0)
    assert result.summary().startswith("ok: ")


def test_real_log_of_a_sigkilled_compression_actor_passes():
    log = logs.read_log(os.path.join(DATA, "compression_sigkill.jsonl"))
    result = logs.check(log.records, log.lines, log.bad)
    assert result.ok, [str(v) for v in result.violations]
    assert result.counts == {"records": 44, "connections": 1, "actors_started": 8, "crashes": 0,
                             "kills": 1, "restarts": 1, "contexts": 4, "stopped": 1}


# -- invariant 1: compression contexts ----------------------------------------------------------


def test_context_released_twice():
    records = mini_log()
    records.insert(-3, copy.deepcopy(records[index(records, event="compression.context.released")]))
    [v] = violations(records)
    assert v.invariant == 1 and "released again" in v.message and "zd1" in v.message


def test_context_released_but_never_opened():
    records = drop(mini_log(), event="compression.context.opened", context_id="zi1")
    [v] = violations(records)
    assert v.invariant == 1 and "zi1 released but never opened" in v.message


def test_context_never_released_once_the_server_stopped():
    records = drop(mini_log(), event="compression.context.released", context_id="zd1")
    [v] = violations(records)
    assert v.invariant == 1 and "zd1" in v.message and "never released" in v.message
    assert v.line == index(records, event="compression.context.opened", context_id="zd1") + 1


def test_context_opened_twice():
    records = mini_log()
    i = index(records, event="compression.context.opened", context_id="zd1")
    records.insert(i + 1, copy.deepcopy(records[i]))
    assert [v.message for v in violations(records)] == [
        f"context zd1 opened again (first opened at line {i + 1})"]


def test_open_contexts_of_a_running_server_are_not_violations():
    records = mini_log(close=False, stop=False)
    assert logs.check(records).ok


# -- invariant 2: every started actor ended -----------------------------------------------------


def test_actor_that_never_stopped():
    records = drop(mini_log(), event="actor.stopped", actor="ConnectionActor")
    [v] = violations(records)
    assert v.invariant == 2
    assert f"ConnectionActor pid {CACT}" in v.message and CONN in v.message
    assert v.line == index(records, event="actor.started", actor="ConnectionActor") + 1


def test_an_actor_whose_death_a_supervisor_recorded_is_accounted_for():
    records = mini_log(kill_compression=True)
    assert not any(r for r in records if r["event"] in ("actor.stopped", "actor.crashed") and r["pid"] == ZACT)
    assert logs.check(records).ok


def test_shutdown_error_counts_as_a_recorded_death():
    b = mini_log()
    records = drop(b, event="actor.stopped", actor="ListenerActor")
    i = index(records, event="actor.stopped", actor="Supervisor", child_id="connections")
    records.insert(i, {"actor": "Supervisor", "supervisor": "wsup", "child_id": "listener",
                       "child_pid": LISTENER, "reason": "killed", "offender": offender(LISTENER, "listener"),
                       "event": "supervisor.shutdown_error", "level": "error", "timestamp": ts(i),
                       "pid": ROOT})
    assert logs.check(records).ok


def test_descendants_of_a_killed_supervisor_are_accounted_for():
    # SIGKILL the ConnectionSupervisor: its children die with it (PDEATHSIG), unrecorded.
    records = mini_log(close=False)
    i = index(records, event="server.stopping")
    records.insert(i, {"actor": "Supervisor", "supervisor": "connections", "child_id": "connection",
                       "child_pid": CSUP, "reason": "killed", "connection_id": CONN,
                       "offender": offender(CSUP, "connection", "temporary", "supervisor", "infinity"),
                       "event": "supervisor.child.terminated", "level": "error", "timestamp": ts(i),
                       "pid": CONNS})
    # the contexts are never recorded released then: only invariant 1 is violated
    assert kinds(records) == [1, 1]


def test_descendant_found_by_supervisor_name_when_no_child_started_edge():
    records = mini_log(close=False)
    records = drop(records, event="supervisor.child.started", child_pid=ZACT)
    records = drop(records, event="compression.context.opened")
    i = index(records, event="server.stopping")
    records.insert(i, {"actor": "Supervisor", "supervisor": "connections", "child_id": "connection",
                       "child_pid": CSUP, "reason": "killed", "connection_id": CONN,
                       "offender": offender(CSUP, "connection", "temporary", "supervisor", "infinity"),
                       "event": "supervisor.child.terminated", "level": "error", "timestamp": ts(i),
                       "pid": CONNS})
    procs = logs.Processes(records)
    [z] = [p for p in procs.procs if p.pid == ZACT]
    assert z.parent is not None and z.parent.pid == CSUP      # connection-<id> -> pid 20, by name
    assert logs.check(records).ok


def test_leftover_killed_by_the_runtime_is_a_violation():
    records = drop(mini_log(), event="actor.stopped", actor="ListenerActor")
    i = index(records, event="runtime.stopped")
    records.insert(i, {"actor": "Runtime", "pids": [LISTENER], "event": "runtime.leftover_killed",
                       "level": "error", "timestamp": ts(i), "pid": MAIN})
    [v] = violations(records)
    assert v.invariant == 2 and "leftover" in v.message


def test_invariant_2_skipped_while_the_server_runs():
    records = drop(mini_log(stop=False), event="actor.stopped", actor="ConnectionActor")
    assert logs.check(records).ok
    # ... and actors started after the last stop (a second run appended to the file) too
    second = [dict(r, pid=r["pid"] + 1000, timestamp=ts(100 + n)) for n, r in
              enumerate(mini_log(stop=False, close=False))]
    for r in second:
        if "context_id" in r:
            r["context_id"] += "-second-run"
    assert logs.check(mini_log() + second).ok


def test_pid_reuse_is_a_new_process():
    records = mini_log()
    # a later run reuses the ConnectionActor's pid for an actor that never stops
    records.append({"actor": "W", "child_id": "w", "supervisor": "other", "event": "actor.started",
                    "level": "info", "timestamp": ts(len(records)), "pid": CACT})
    records.append({"actor": "Runtime", "status": 0, "event": "server.stopped", "level": "info",
                    "timestamp": ts(len(records)), "pid": MAIN})
    [v] = violations(records)
    assert v.invariant == 2 and f"W pid {CACT}" in v.message and v.line == len(records) - 1


# -- invariant 3: restarts ----------------------------------------------------------------------


def test_terminated_transient_child_not_restarted():
    records = mini_log(kill_compression=True, close=False, stop=False)
    records = drop(records, event="supervisor.child.restarted")
    [v] = violations(records)
    assert v.invariant == 3 and f"child compression pid {ZACT}" in v.message


def test_restarted_with_another_old_pid_does_not_count():
    records = mini_log(kill_compression=True, close=False, stop=False)
    records[index(records, event="supervisor.child.restarted")]["old_pid"] = 999
    assert kinds(records) == [3]


def test_supervisor_giving_up_or_ending_counts():
    base = drop(mini_log(kill_compression=True, close=False, stop=False), event="supervisor.child.restarted")
    gave_up = base + [{"actor": "ConnectionSupervisor", "supervisor": f"connection-{CONN}",
                       "reason": "reached_max_restart_intensity", "intensity": 3, "period": 5.0,
                       "child_id": "compression", "child_pid": ZACT, "connection_id": CONN,
                       "event": "supervisor.shutdown", "level": "error", "timestamp": ts(len(base)),
                       "pid": CSUP}]
    assert logs.check(gave_up).ok
    ended = base + [{"actor": "ConnectionSupervisor", "child_id": "connection", "supervisor": "connections",
                     "connection_id": CONN, "reason": "shutdown", "event": "actor.stopped", "level": "info",
                     "timestamp": ts(len(base)), "pid": CSUP}]
    assert logs.check(ended).ok


def test_temporary_children_are_not_expected_back():
    records = mini_log(close=False, stop=False)
    records.append({"actor": "ConnectionSupervisor", "supervisor": f"connection-{CONN}", "child_id": "connection",
                    "child_pid": CACT, "reason": "killed", "connection_id": CONN,
                    "offender": offender(CACT, "connection", "temporary"), "event": "supervisor.child.terminated",
                    "level": "error", "timestamp": ts(len(records)), "pid": CSUP})
    assert logs.check(records).ok


def test_restart_after_a_failed_restart_attempt_has_old_pid_null():
    # Supervisor._restart: a failed start is retried with old_pid None
    records = mini_log(kill_compression=True, close=False, stop=False)
    i = index(records, event="supervisor.child.restarted")
    records[i]["old_pid"] = None
    assert kinds(records) == [3]
    records.insert(i, {"actor": "ConnectionSupervisor", "supervisor": f"connection-{CONN}",
                       "child_id": "compression", "reason": "timeout", "connection_id": CONN,
                       "offender": {**offender(None, "compression", "transient")},
                       "event": "supervisor.start_error", "level": "error", "timestamp": ts(i), "pid": CSUP})
    assert logs.check(records).ok


# -- invariant 4: torn records and schema --------------------------------------------------------


def test_torn_last_line():
    text = "".join(json.dumps(r) + "\n" for r in mini_log()) + '{"event":"actor.sto'
    parsed = logs.parse_text(text)
    assert len(parsed.records) == len(mini_log())
    [v] = logs.check(parsed.records, parsed.lines, parsed.bad).violations
    assert v.invariant == 4 and "not terminated" in v.message and v.line == len(mini_log()) + 1
    # while a writer may still be at it (--follow, filters), it is not a record yet, nor an error
    assert logs.parse_text(text, allow_partial_last=True).bad == []


@pytest.mark.parametrize("line, problem", [("{not json", "not JSON"), ("[1, 2]", "not a JSON object"),
                                           ("", "not JSON")])
def test_lines_that_are_not_json_objects(line, problem):
    records = mini_log()
    text = "".join(json.dumps(r) + "\n" for r in records[:3]) + line + "\n" + \
        "".join(json.dumps(r) + "\n" for r in records[3:])
    parsed = logs.parse_text(text)
    assert parsed.lines[3] == 5      # line numbers skip the bad line
    [v] = logs.check(parsed.records, parsed.lines, parsed.bad).violations
    assert v.invariant == 4 and v.line == 4 and problem in v.message


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r.pop("pid"), "missing pid"),
    (lambda r: r.pop("level"), "missing level"),
    (lambda r: r.update(level="loud"), "level='loud' not one of"),
    (lambda r: r.update(pid="12"), "pid='12' is not int"),
    (lambda r: r.update(pid=True), "pid=True is not int"),
    (lambda r: r.update(timestamp="2026-11-26T12:00:00.000001+00:00"), "not ISO 8601 UTC ending in Z"),
    (lambda r: r.update(timestamp="2026-11-26 12:00:00Z"), "not ISO 8601 UTC ending in Z"),
])
def test_common_fields(mutate, expected):
    records = mini_log()
    mutate(records[5])
    [v] = [v for v in violations(records) if v.invariant == 4]
    assert v.line == 6 and expected in v.message


def test_timestamp_without_fraction_is_iso_8601():
    # datetime.isoformat() leaves out a zero microsecond part
    records = mini_log()
    records[5]["timestamp"] = "2026-11-26T12:00:00Z"
    assert logs.check(records).ok


@pytest.mark.parametrize("event, mutate, expected", [
    ("connection.closed", lambda r: r.pop("clean"), "missing clean"),
    ("connection.closed", lambda r: r.pop("connection_id"), "missing connection_id"),
    ("connection.closed", lambda r: r.update(initiator="nobody"), "initiator='nobody' not one of"),
    ("compression.context.released", lambda r: r.pop("by"), "missing by"),
    ("compression.context.released", lambda r: r.update(cause="bored"), "cause='bored' not one of"),
    ("compression.context.opened", lambda r: r.update(direction="sideways"), "direction='sideways'"),
    ("supervisor.child.terminated", lambda r: r["offender"].pop("restart_type"), "missing offender.restart_type"),
    ("supervisor.child.terminated", lambda r: r.pop("reason"), "missing reason"),
    ("supervisor.child.started", lambda r: r["started"].pop("actor"), "missing started.actor"),
    ("supervisor.child.restarted", lambda r: r.update(strategy="none"), "strategy='none'"),
    ("actor.crashed", lambda r: r.pop("message_type"), "missing message_type"),
    ("actor.started", lambda r: r.pop("supervisor"), "missing supervisor"),
    ("runtime.started", lambda r: r.pop("root_pid"), "missing root_pid"),
])
def test_documented_fields(event, mutate, expected):
    records = mini_log(kill_compression=True, crash=True)
    i = index(records, event=event)
    mutate(records[i])
    found = [v for v in violations(records) if v.invariant == 4]
    assert [v.line for v in found] == [i + 1]
    assert expected in found[0].message and repr(event) in found[0].message


def test_unknown_events_need_only_the_common_fields():
    records = mini_log()
    records.insert(3, {"event": "something.new", "timestamp": ts(3), "level": "debug", "pid": 5, "x": 1})
    assert logs.check(records).ok


def test_schema_covers_the_documented_events():
    for event in ("connection.accepted", "connection.rejected", "connection.upgraded", "connection.closed",
                  "actor.started", "actor.stopped", "actor.crashed", "supervisor.child.started",
                  "supervisor.child.terminated", "supervisor.child.restarted", "supervisor.start_error",
                  "supervisor.shutdown_error", "supervisor.shutdown", "server.signal", "server.stopping",
                  "server.stopped", "runtime.started", "runtime.stopped", "compression.negotiated",
                  "compression.context.opened", "compression.context.released",
                  "compression.release.ignored", "compression.recovered"):
        assert event in logs.SCHEMA


def test_check_lists_every_violation_in_order():
    records = drop(mini_log(), event="actor.stopped", actor="ConnectionActor")
    records[0].pop("timestamp")
    records.insert(2, copy.deepcopy(records[index(records, event="compression.context.released")]))
    found = violations(records)
    assert [v.invariant for v in found] == [1, 1, 2, 4]


# -- parsing and following ----------------------------------------------------------------------


def test_line_buffer_keeps_a_partial_line():
    buf = logs.LineBuffer()
    assert buf.feed(b'{"a": 1}\n{"b"') == ['{"a": 1}']
    assert buf.pending == b'{"b"'
    assert buf.feed(b': 2}') == []
    assert buf.feed(b'\n\n') == ['{"b": 2}', ""]
    assert buf.pending == b""


def test_follow_reads_as_the_file_grows(tmp_path):
    path = tmp_path / "live.jsonl"
    records = mini_log()
    path.write_text(json.dumps(records[0]) + "\n")
    got, warnings = [], []
    done = threading.Event()

    def writer():
        with open(path, "a") as f:
            for r in records[1:4]:
                line = json.dumps(r) + "\n"
                f.write(line[:10])        # a partially written line ...
                f.flush()
                time.sleep(0.05)
                f.write(line[10:])        # ... completed later
                f.flush()
            f.write("garbage\n")
            f.flush()
        wait_until(lambda: len(got) == 4, timeout=5)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    logs.follow(str(path), lambda r, text: got.append(r), warnings.append, stop=done.is_set, poll=0.01)
    t.join()
    assert got == records[:4]
    assert len(warnings) == 1 and ":5: skipped, not JSON" in warnings[0]


def test_follow_starts_over_when_the_file_is_truncated(tmp_path):
    path = tmp_path / "live.jsonl"
    records = mini_log()
    path.write_text("".join(json.dumps(r) + "\n" for r in records[:3]))
    got = []

    def writer():
        wait_until(lambda: len(got) == 3, timeout=5)
        path.write_text(json.dumps(records[7]) + "\n")
        wait_until(lambda: len(got) == 4, timeout=5)

    t = threading.Thread(target=writer)
    t.start()
    logs.follow(str(path), lambda r, text: got.append(r), print, stop=lambda: len(got) >= 4, poll=0.01)
    t.join()
    assert got == records[:3] + [records[7]]


def test_follow_command_until_interrupted(tmp_path):
    path = tmp_path / "live.jsonl"
    records = mini_log()
    path.write_text(json.dumps(records[0]) + "\n")
    proc = subprocess.Popen(WSUP + ["logs", str(path), "--follow", "--format", "json",
                                    "--event", "actor.*"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline()) == records[0]
        line = json.dumps(records[2]) + "\n"
        with open(path, "a") as f:
            f.write(json.dumps(records[1]) + "\n" + line[:20])    # records[1] is not actor.*
            f.flush()
            time.sleep(0.5)
            f.write(line[20:])
        assert json.loads(proc.stdout.readline()) == records[2]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# -- filters ------------------------------------------------------------------------------------


def events_of(records):
    return [r["event"] for r in records]


def test_filter_by_connection():
    records = mini_log()
    got = logs.filter_records(records, logs.Filter(connection=CONN))
    assert got and all(r["connection_id"] == CONN for r in got)
    assert len(got) == sum(1 for r in records if r.get("connection_id") == CONN)
    assert logs.filter_records(records, logs.Filter(connection="nope")) == []


def test_filter_by_actor_class():
    got = logs.filter_records(mini_log(), logs.Filter(actor="CompressionActor"))
    assert events_of(got) == ["actor.started", "actor.stopped"]


def test_filter_by_pid_includes_the_supervisors_reports_about_it():
    records = mini_log(kill_compression=True)
    got = logs.filter_records(records, logs.Filter(pid=ZACT))
    assert events_of(got) == ["actor.started", "supervisor.child.started", "supervisor.child.terminated",
                              "supervisor.child.restarted"]


def test_filter_by_event_globs():
    records = mini_log(kill_compression=True)
    got = logs.filter_records(records, logs.Filter(events=["compression.context.*"]))
    assert set(events_of(got)) == {"compression.context.opened", "compression.context.released"}
    got = logs.filter_records(records, logs.Filter(events=["connection.closed", "*.restarted"]))
    assert events_of(got) == ["supervisor.child.restarted", "connection.closed"]


def test_filter_by_minimum_level():
    records = mini_log(kill_compression=True)
    records[3]["level"] = "warning"
    got = logs.filter_records(records, logs.Filter(level="warning"))
    assert [r["level"] for r in got] == ["warning", "error"]
    assert len(logs.filter_records(records, logs.Filter(level="debug"))) == len(records)


def test_filter_by_time_range():
    records = mini_log()
    got = logs.filter_records(records, logs.Filter(since=logs.parse_time(ts(3)), until=logs.parse_time(ts(5))))
    assert got == records[3:6]
    # no zone means UTC; a date alone is midnight
    assert logs.parse_time("2026-11-26T12:00:00.003") == logs.parse_time(ts(3))
    assert logs.parse_time("2026-11-26T13:00:00+01:00") == T0
    assert logs.filter_records(records, logs.Filter(since=logs.parse_time("2026-11-27"))) == []


def test_filters_combine():
    records = mini_log(kill_compression=True)
    got = logs.filter_records(records, logs.Filter(connection=CONN, events=["supervisor.*"], level="error"))
    assert events_of(got) == ["supervisor.child.terminated"]


def test_pretty_line():
    records = mini_log()
    r = records[index(records, event="connection.closed")]
    line = logs.pretty(r)
    assert line.startswith(r["timestamp"] + " info ")
    for part in ("connection.closed", f"ConnectionActor/{CACT}", f"conn={CONN}", "code=1000", 'reason=""',
                 "initiator=client", "clean=true"):
        assert part in line
    crash = logs.pretty({"event": "actor.crashed", "timestamp": ts(0), "level": "error", "pid": 3,
                         "traceback": "Traceback\n  line 1\n"})
    assert "\n" not in crash and 'traceback="Traceback\\n  line 1\\n"' in crash


# -- timeline -----------------------------------------------------------------------------------


def test_timeline_tells_one_connections_life_in_time_order():
    records = mini_log(kill_compression=True)
    # file order is write order; a record written late but stamped early goes in its place
    recovered = records.pop(index(records, event="compression.recovered"))
    records.append(recovered)
    out = logs.timeline(records, CONN)
    assert out[0].startswith(f"connection {CONN}: {sum(1 for r in records if r.get('connection_id') == CONN)} "
                             "records, ")
    body = "\n".join(out[1:])
    steps = ["accepted from 127.0.0.1:40000",
             "upgraded: path /, subprotocol None, extensions: permessage-deflate (deflate window 12 bits", "context zd1 opened: deflate", "context zd1 released: cause owner_died",
             f"child compression pid {ZACT} (transient) terminated: killed",
             f"RESTARTED child compression: pid {ZACT} -> {ZACT2}", "compression recovered",
             "context zd2 opened", 'closed: code 1000 "", initiated by client, clean',
             "ConnectionActor stopped: normal", "context zd2 released: cause close",
             "ConnectionSupervisor stopped: shutdown"]
    positions = [body.index(s) for s in steps]
    assert positions == sorted(positions)
    assert out[1].lstrip().startswith("+0.000s  ListenerActor/13")
    assert logs.timeline(records, "nope") == []


def test_timeline_with_a_filter():
    out = logs.timeline(mini_log(), CONN, logs.Filter(events=["connection.*"]))
    assert len(out) == 4 and "accepted" in out[1] and "upgraded" in out[2] and "closed" in out[3]


# -- tree ---------------------------------------------------------------------------------------


def test_tree_at_the_end_of_a_running_servers_log():
    out = logs.tree(mini_log(kill_compression=True, close=False, stop=False))
    assert out[0].endswith("(end of log)")
    assert out[1:] == [
        "Application  application  pid 10",
        "└── Supervisor  wsup  pid 11",
        "    ├── Supervisor  connections  pid 12",
        f"    │   └── ConnectionSupervisor  connection  pid 20  connection_id={CONN}",
        f"    │       ├── ConnectionActor  connection  pid 21  connection_id={CONN}",
        f"    │       └── CompressionActor  compression  pid 23  connection_id={CONN}  (restarted, was pid 22)",
        "    └── ListenerActor  listener  pid 13",
    ]


def test_tree_at_a_time():
    records = mini_log(kill_compression=True)
    before_kill = logs.parse_time(records[index(records, event="compression.context.opened")]["timestamp"])
    out = logs.tree(records, before_kill)
    assert out[0] == f"supervision tree at {ts(index(records, event='compression.context.opened'))}"
    assert f"CompressionActor  compression  pid {ZACT}  connection_id={CONN}" in out[-2]
    after_close = logs.parse_time(records[index(records, event="server.stopping")]["timestamp"])
    out = logs.tree(records, after_close)
    assert not any("Connection" in line or "Compression" in line for line in out)
    assert out[-1] == "    └── ListenerActor  listener  pid 13"
    # during start-up the supervisors that have not reported yet are shown above their children
    out = logs.tree(records, logs.parse_time(ts(0)))
    assert out[1:] == ["Application  application  pid 10", "└── Supervisor  wsup  pid 11",
                       "    └── Supervisor  connections  pid 12"]
    assert logs.tree(records, T0 - timedelta(seconds=1))[1].startswith("(no process alive")


def test_tree_of_a_stopped_server_is_empty_at_the_end():
    out = logs.tree(mini_log())
    assert out[1] == "(no process alive; the server had stopped: use --at TIME for an earlier moment)"


def test_tree_hides_the_children_of_a_killed_supervisor():
    records = mini_log(close=False, stop=False)
    records.append({"actor": "Supervisor", "supervisor": "connections", "child_id": "connection",
                    "child_pid": CSUP, "reason": "killed", "connection_id": CONN,
                    "offender": offender(CSUP, "connection", "temporary", "supervisor", "infinity"),
                    "event": "supervisor.child.terminated", "level": "error", "timestamp": ts(len(records)),
                    "pid": CONNS})
    assert not any("pid 21" in line or "pid 22" in line for line in logs.tree(records))


# -- the command --------------------------------------------------------------------------------


def write(tmp_path, records, tail=""):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records) + tail)
    return str(path)


def test_command_filter_json_and_pretty(tmp_path, capsys):
    records = mini_log(kill_compression=True)
    path = write(tmp_path, records)
    assert cli_main(["logs", path, "--format", "json", "--event", "supervisor.child.re*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in out] == [r for r in records if r["event"] == "supervisor.child.restarted"]
    assert cli_main(["logs", path, "--connection", CONN, "--level", "error"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "supervisor.child.terminated" in out[0] and "reason=killed" in out[0]
    assert cli_main(["logs", path, "--pid", str(CACT), "--since", ts(0), "--until", ts(1000),
                     "--actor", "ConnectionActor"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5   # the ConnectionActor's records


def test_command_check(tmp_path, capsys):
    path = write(tmp_path, mini_log())
    assert cli_main(["logs", path, "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and out.count("\n") == 1
    records = drop(mini_log(), event="actor.stopped", actor="ConnectionActor")
    path = write(tmp_path, records, tail='{"event":"tor')
    assert cli_main(["logs", path, "--check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("line 11: invariant 2: ConnectionActor pid 21")
    assert out[1].startswith(f"line {len(records) + 1}: invariant 4: torn record")
    assert out[2] == f"2 violation(s) in {len(records)} records"


def test_command_tree_timeline_and_errors(tmp_path, capsys):
    records = mini_log(kill_compression=True)
    path = write(tmp_path, records, tail='{"partial')
    at = records[index(records, event="compression.recovered")]["timestamp"]
    assert cli_main(["logs", path, "--tree", "--at", at]) == 0
    assert "(restarted, was pid 22)" in capsys.readouterr().out
    assert cli_main(["logs", path, "--timeline", CONN]) == 0
    assert "RESTARTED child compression" in capsys.readouterr().out
    assert cli_main(["logs", path, "--timeline", "nope"]) == 1
    assert "no records with connection_id nope" in capsys.readouterr().err
    assert cli_main(["logs", str(tmp_path / "missing.jsonl")]) == 2
    assert cli_main(["logs", path, "--check", "--event", "x"]) == 2
    assert cli_main(["logs", path, "--at", at]) == 2
    assert cli_main(["logs", path, "--tree", "--follow"]) == 2
    with pytest.raises(SystemExit):
        cli_main(["logs", path, "--since", "yesterday"])


def test_real_log_violating_invariant_2():
    """From tests/test_supervisors.py::test_shutdown_brutal_kill: a brutal_kill child
    stopped by its supervisor's shutdown dies with the expected reason, so no record
    of its death is written (no shutdown_error), and it never writes actor.stopped."""
    log = logs.read_log(os.path.join(DATA, "brutal_kill_shutdown.jsonl"))
    [v] = logs.check(log.records, log.lines, log.bad).violations
    assert v.invariant == 2 and v.line == 1 and "Worker pid 10965 (child victim of root)" in v.message


# -- end to end ---------------------------------------------------------------------------------


def test_real_server_log_checks_out(make_server):
    from websockets.sync.client import connect

    from treeutil import kill_in_process

    server = make_server(workers=1)
    with connect(server.url, open_timeout=10) as c:
        for i in range(3):
            c.send(f"message {i} " * 40)
            assert c.recv() == f"message {i} " * 40
        cid = server.log.events("connection.upgraded")[0]["connection_id"]
        [killed] = kill_in_process(server, "CompressionActor", cid)   # in-process: no terminate
        for i in range(3, 6):
            c.send(f"message {i} " * 40)
            assert c.recv() == f"message {i} " * 40
    server.log.wait_for("connection.closed")
    wait_until(lambda: server.log.events("actor.stopped", actor="ConnectionSupervisor"))
    server.stop()
    path = server.log.path
    [accepted] = server.log.events("connection.accepted")
    conn = accepted["connection_id"]
    [restarted] = server.log.events("supervisor.child.restarted")

    run = subprocess.run(WSUP + ["logs", path, "--check"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok: ") and "1 kills, 1 restarts, 4 compression contexts" in run.stdout

    run = subprocess.run(WSUP + ["logs", path, "--tree", "--at", restarted["timestamp"]],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    tree = run.stdout
    pid = restarted["pid"]                    # the worker's: every in-process actor shares it
    old_id, new_id = (restarted[k].partition("/")[2] for k in ("old_actor_id", "child_actor_id"))
    assert killed == restarted["old_actor_id"]
    lines = tree.splitlines()
    # both tiers, one tree: the worker process, and in it the connection's subtree
    for depth, part in enumerate(["Application  application  pid", "Supervisor  wsup", "Supervisor  workers",
                                  f"WorkerActor  worker-1  pid {pid}", f"Application  application  pid {pid} id ",
                                  f"Supervisor  connections  pid {pid} id ",
                                  f"ConnectionSupervisor  connection  pid {pid} id "]):
        line = next(ln for ln in lines if part in ln)
        assert line.index(part) == 4 * depth, tree
    assert f"connection_id={conn}" in next(ln for ln in lines if "ConnectionSupervisor" in ln)
    assert f"CompressionActor  compression  pid {pid} id {new_id}  connection_id={conn}  " \
           f"(restarted, was id {old_id})" in tree, tree
    assert "ConnectionActor  connection" in tree
    run = subprocess.run(WSUP + ["logs", path, "--tree"], capture_output=True, text=True, timeout=60)
    assert "no process alive; the server had stopped" in run.stdout

    run = subprocess.run(WSUP + ["logs", path, "--timeline", conn], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    body = run.stdout
    in_order = ["accepted from 127.0.0.1:", "upgraded: path /", "(deflate window",
                "opened: deflate", "released: cause owner_died",
                f"child compression pid {pid} id {old_id} (transient) terminated: killed", "closed: code 1000",
                "ConnectionSupervisor stopped: shutdown"]
    positions = [body.find(s) for s in in_order]
    assert -1 not in positions and positions == sorted(positions), (in_order, body)
    restart = body.find(f"RESTARTED child compression: pid {pid} id {old_id} -> {pid} id {new_id}")
    assert restart > positions[5]
    assert "compression recovered" in body and "released: cause close" in body


def test_console_format_is_one_short_line_per_event(tmp_path):
    """The console format drops the detail (child specs, tracebacks) that the
    JSON keeps: one short line per event."""
    from supervisors import log as slog
    path = tmp_path / "console.log"
    before = slog.current()
    offender = {"pid": 1, "id": "connection", "start": "actors.connection.ConnectionActor(" + "x" * 500 + ")",
                "restart_type": "temporary", "shutdown": 6000, "child_type": "worker"}
    try:
        for fmt in ("console", "json"):
            slog.configure(slog.LogConfig(path=str(path), format=fmt))
            slog.get_logger(actor="Supervisor", supervisor="connection-c1").info(
                "supervisor.child.started", child_id="connection", started=offender, note="y" * 300)
    finally:
        slog.configure(before)
    console, js = path.read_text().splitlines()
    assert "supervisor.child.started" in console and "child_id" in console
    assert len(console) < 300 and "xxxxx" not in console
    assert json.loads(js)["started"]["start"].endswith("x" * 10 + ")")   # the JSON keeps it all


def test_an_in_process_start_is_its_supervisors_record():
    """On the in-process tier a child writes no actor.started: the supervisor's
    supervisor.child.started is its start, and the check still holds it to an end."""
    W = 4242
    b = LogBuilder()
    b.started(W, "WorkerActor", "worker-1", "workers", actor_id=str(W))
    b.add("supervisor.child.started", W, actor="Supervisor", actor_id=f"{W}/A~a", supervisor="connections",
          child_id="connection", child_pid=W, child_actor_id=f"{W}/A~a~a",
          started={**offender(W, "connection", "temporary", "supervisor"), "actor": "ConnectionSupervisor"})
    b.stopped(W, "ConnectionSupervisor", "connection", "connections", actor_id=f"{W}/A~a~a",
                      reason="shutdown")
    b.stopped(W, "WorkerActor", "worker-1", "workers", actor_id=str(W))
    b.add("server.stopped", 1, actor="Runtime", status=0)
    assert logs.check(b.records).ok
    # neither the worker nor the ConnectionSupervisor ended: both are flagged (the in-process one
    # by its supervisor.child.started, the only record of its start)
    never = [r for r in b.records if r["event"] != "actor.stopped"]
    v = violations(never)
    assert [x.invariant for x in v] == [2, 2], [str(x) for x in v]
    assert "ConnectionSupervisor pid 4242 (child connection of connections)" in str(v[1])
