"""``wsup logs``: read, filter, follow and check the lifecycle log.

The analysis is sans-I/O: every function below the CLI section takes a list
of records (the parsed JSON objects, in file order) and returns data or text;
only :func:`run` and :func:`follow` touch files.  See docs/logs.md.

Modes (one per invocation):

* filter (default): the records matching ``--connection``, ``--actor``,
  ``--pid``, ``--event``, ``--level``, ``--since``/``--until``, as JSON lines
  or one readable line each; ``--follow`` keeps reading as the file grows;
* ``--timeline ID``: one connection's life, in time order;
* ``--tree [--at TIME]``: the supervision tree, rebuilt from the records;
* ``--check``: the log's invariants (exit 1 and one line per violation).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Sequence

# -- the schema ---------------------------------------------------------------------------------
#
# A field spec is one of:
#   ANY                      present, any value (null included)
#   a tuple of types         isinstance (bool is not an int here; NoneType allows null)
#   a frozenset of values    one of these values
#   a dict                   a JSON object with (at least) these fields, each with its spec


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()
NULL = type(None)
INT = (int,)
STR = (str,)
BOOL = (bool,)
NUM = (int, float)
OPT_INT = (int, NULL)
OPT_STR = (str, NULL)

LEVELS = ("debug", "info", "warning", "error", "critical")
LEVEL_RANK = {name: n for n, name in enumerate(LEVELS)}

# ISO 8601, UTC, ending in Z.  structlog writes microseconds, except when they
# are 0: datetime.isoformat() then leaves the fraction out ("...:35Z").
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")

RESTART_TYPES = frozenset({"permanent", "transient", "temporary"})
CHILD_TYPES = frozenset({"worker", "supervisor"})
STRATEGIES = frozenset({"one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"})

COMMON: dict[str, Any] = {"event": STR, "timestamp": STR, "level": frozenset(LEVELS), "pid": INT}

OFFENDER: dict[str, Any] = {"pid": OPT_INT, "id": (str, int), "start": STR,
                            "restart_type": RESTART_TYPES, "significant": BOOL,
                            "shutdown": (int, str), "child_type": CHILD_TYPES}

# Records of a supervised actor about itself (supervisors/actor.py).
_ACTOR = {"actor": STR, "child_id": ANY, "supervisor": STR}
# A supervisor's reports (supervisors/supervisor.py): its class and its own name.
_SUP = {"actor": STR, "supervisor": STR, "child_id": ANY}
_CONN = {"connection_id": STR}

SCHEMA: dict[str, dict[str, Any]] = {
    # supervisors/actor.py
    "actor.started": {**_ACTOR},
    "actor.stopped": {**_ACTOR, "reason": ANY},
    "actor.crashed": {**_ACTOR, "error_type": STR, "message": STR, "traceback": STR,
                      "message_type": STR},
    # supervisors/supervisor.py
    "supervisor.child.started": {**_SUP, "child_pid": INT,
                                 "started": {**OFFENDER, "pid": INT, "actor": STR}},
    "supervisor.child.terminated": {**_SUP, "child_pid": OPT_INT, "reason": ANY, "offender": OFFENDER},
    "supervisor.child.restarted": {**_SUP, "old_pid": OPT_INT, "child_pid": INT, "strategy": STRATEGIES},
    "supervisor.start_error": {**_SUP, "reason": ANY, "offender": {**OFFENDER, "pid": (NULL,)}},
    "supervisor.shutdown_error": {**_SUP, "child_pid": OPT_INT, "reason": ANY, "offender": OFFENDER},
    "supervisor.child.killed": {**_SUP, "child_pid": OPT_INT, "offender": OFFENDER},
    "supervisor.shutdown": {**_SUP, "reason": frozenset({"reached_max_restart_intensity"}),
                            "intensity": INT, "period": NUM, "child_pid": OPT_INT},
    # supervisors/runtime.py, supervisors/faults.py
    "runtime.started": {"admin_port": INT, "root_pid": INT, "process_group": INT},
    "runtime.stopped": {"status": INT, "root_reason": ANY, "requested": (bool, NULL)},
    "runtime.leftover_killed": {"pids": (list,)},
    "runtime.start_failed": {"reason": ANY},
    "runtime.signal": {"signal": STR},
    "fault.injected": {"point": STR, "action": STR, "spec": STR},
    # wsup/server.py
    "server.start_failed": {"reason": ANY},
    "server.stopping": {},
    "server.stopped": {"status": INT},
    "server.signal": {"signal": STR},
    # the process layout's listener (before 2026-12: logs of that time still check)
    "server.listening": {"host": STR, "port": INT},
    "server.accept_failed": {"error": STR},
    "server.handoff_failed": {"error": STR},
    # actors/worker.py
    "worker.listening": {"host": STR, "port": INT, "max_connections": INT},
    # actors/observer.py (--metrics-port)
    "observer.listening": {"host": STR, "port": INT},
    "observer.worker_restarted": {"worker": INT, "pid": INT},
    "connection.accepted": {**_CONN, "peer": STR},
    # status None: refused before any parsing (too many pending handshakes)
    "connection.rejected": {**_CONN, "status": frozenset({400, 403, 408, 426, 431, 500, 503, None}),
                            "reason": STR},
    # actors/connection.py
    # with permessage-deflate agreed, also the agreed parameters, deflate_window_bits, inflate_window_bits
    "connection.upgraded": {**_CONN, "path": STR, "subprotocol": OPT_STR, "extensions": (list,)},
    "connection.closed": {**_CONN, "code": INT, "reason": STR,
                          "initiator": frozenset({"client", "server"}), "clean": BOOL},
    # before 2026-12-04 (now in connection.upgraded): logs of that time still check
    "compression.negotiated": {**_CONN, "response": STR, "deflate_window_bits": INT,
                               "inflate_window_bits": INT},
    "compression.start_failed": {**_CONN, "result": ANY},
    "compression.recovered": {**_CONN, "replayed_chunks": INT, "window_bytes": INT},
    # wscore/ledger.py (a worker's ContextLedger; the ConnectionSupervisor in the process layout)
    "compression.context.opened": {**_CONN, "context_id": STR,
                                   "direction": frozenset({"deflate", "inflate"}),
                                   "window_bits": INT, "owner_pid": INT, "primed_bytes": INT},
    "compression.context.released": {**_CONN, "context_id": STR,
                                     "cause": frozenset({"close", "error", "shutdown", "owner_died"}),
                                     "by": INT},
    "compression.release.ignored": {**_CONN, "context_id": STR, "why": STR, "cause": STR},
}

STOP_EVENTS = ("server.stopped", "runtime.stopped")


def _type_ok(value: Any, types: tuple) -> bool:
    for t in types:
        if t is int and isinstance(value, bool):
            continue
        if t is float and isinstance(value, bool):
            continue
        if isinstance(value, t):
            return True
    return False


def _spec_problems(obj: dict, spec: dict, prefix: str = "") -> list[str]:
    out = []
    for name, want in spec.items():
        path = prefix + name
        if name not in obj:
            out.append(f"missing {path}")
            continue
        value = obj[name]
        if want is ANY:
            continue
        if isinstance(want, dict):
            if not isinstance(value, dict):
                out.append(f"{path} is not an object: {value!r}")
            else:
                out.extend(_spec_problems(value, want, path + "."))
        elif isinstance(want, frozenset):
            if isinstance(value, (dict, list)) or value not in want or (
                    isinstance(value, bool) and not any(isinstance(w, bool) for w in want)):
                allowed = ", ".join(sorted(map(repr, want)))
                out.append(f"{path}={value!r} not one of {allowed}")
        elif not _type_ok(value, want):
            names = "/".join("null" if t is NULL else t.__name__ for t in want)
            out.append(f"{path}={value!r} is not {names}")
    return out


def schema_problems(record: dict) -> list[str]:
    """What is wrong with one record: common fields, then its event's fields."""
    problems = _spec_problems(record, COMMON)
    ts = record.get("timestamp")
    if isinstance(ts, str) and not TIMESTAMP_RE.match(ts):
        problems.append(f"timestamp {ts!r} is not ISO 8601 UTC ending in Z")
    spec = SCHEMA.get(record.get("event"))  # type: ignore[arg-type]
    if spec:
        problems.extend(_spec_problems(record, spec))
    return problems


# -- parsing ------------------------------------------------------------------------------------


@dataclass
class BadLine:
    line: int
    problem: str
    text: str


@dataclass
class ParsedLog:
    records: list[dict]
    lines: list[int]            # the file line number of each record
    bad: list[BadLine]          # torn or not a JSON object
    raw: list[str] = field(default_factory=list)   # each record's line as written


def parse_line(text: str) -> tuple[dict | None, str | None]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return None, f"not a JSON object ({type(obj).__name__})"
    return obj, None


def parse_text(text: str, allow_partial_last: bool = False) -> ParsedLog:
    """Parse a JSON-lines log.  A last line without its newline is torn
    (unless ``allow_partial_last``: a writer may be in the middle of it)."""
    out = ParsedLog([], [], [])
    pieces = text.split("\n")
    last = pieces.pop()          # "" if the text ends with a newline
    for n, line in enumerate(pieces, 1):
        obj, problem = parse_line(line)
        if obj is None:
            out.bad.append(BadLine(n, problem or "", line))
        else:
            out.records.append(obj)
            out.lines.append(n)
            out.raw.append(line)
    if last and not allow_partial_last:
        out.bad.append(BadLine(len(pieces) + 1, "not terminated by a newline (torn write)", last))
    return out


class LineBuffer:
    """Bytes in, complete lines out; keeps a partially written last line
    until its newline arrives (what --follow needs)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        data = self._pending + data
        *lines, self._pending = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    @property
    def pending(self) -> bytes:
        return self._pending

    def reset(self) -> None:
        self._pending = b""


# -- time ---------------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """ISO 8601 (a trailing Z, an offset, or none: UTC), or a date alone."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def record_time(record: dict) -> datetime | None:
    ts = record.get("timestamp")
    if not isinstance(ts, str):
        return None
    try:
        return parse_time(ts)
    except ValueError:
        return None


def _fmt_time(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- filters ------------------------------------------------------------------------------------


@dataclass
class Filter:
    connection: str | None = None
    actor: str | None = None
    pid: int | None = None
    events: Sequence[str] = ()
    level: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __call__(self, r: dict) -> bool:
        if self.connection is not None and r.get("connection_id") != self.connection:
            return False
        if self.actor is not None and r.get("actor") != self.actor:
            return False
        if self.pid is not None and self.pid not in (r.get("pid"), r.get("child_pid"), r.get("old_pid")):
            return False
        if self.events and not any(fnmatch.fnmatchcase(str(r.get("event", "")), p) for p in self.events):
            return False
        if self.level is not None and LEVEL_RANK.get(r.get("level"), -1) < LEVEL_RANK[self.level]:  # type: ignore[arg-type]
            return False
        if self.since is not None or self.until is not None:
            t = record_time(r)
            if t is None:
                return False
            if self.since is not None and t < self.since:
                return False
            if self.until is not None and t > self.until:
                return False
        return True

    @property
    def active(self) -> bool:
        return any(v not in (None, (), []) for v in
                   (self.connection, self.actor, self.pid, tuple(self.events), self.level,
                    self.since, self.until))


def filter_records(records: Iterable[dict], flt: Filter) -> list[dict]:
    return [r for r in records if flt(r)]


# -- rendering ----------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[^\s\"'=]+$")


def _val(value: Any) -> str:
    if isinstance(value, str):
        return value if _PLAIN.match(value) else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_FIRST = ("timestamp", "level", "event", "actor", "pid", "connection_id")


def pretty(record: dict) -> str:
    """One readable line: time, level, event, actor/pid, connection_id, the rest as k=v."""
    who = f"{record.get('actor', '-')}/{record.get('pid', '-')}"
    conn = record.get("connection_id")
    rest = " ".join(f"{k}={_val(v)}" for k, v in record.items() if k not in _FIRST)
    parts = [str(record.get("timestamp", "-")), f"{str(record.get('level', '-')):<7}",
             f"{str(record.get('event', '-')):<28}", f"{who:<24}"]
    if conn is not None:
        parts.append(f"conn={conn}")
    if rest:
        parts.append(rest)
    return " ".join(parts)


def _reason(reason: Any) -> str:
    if isinstance(reason, dict) and "error" in reason:
        return f"{reason['error']}: {reason.get('message', '')}"
    return _val(reason)


def describe(r: dict) -> str:
    """What one record says, in words (for --timeline)."""
    ev = r.get("event", "?")
    g = r.get
    if ev == "connection.accepted":
        return f"accepted from {g('peer')}"
    if ev == "connection.rejected":
        return f"rejected: HTTP {g('status')} {g('reason')}"
    if ev == "connection.upgraded":
        ext = ", ".join(g("extensions") or []) or "none"
        windows = (f" (deflate window {g('deflate_window_bits')} bits, inflate window "
                   f"{g('inflate_window_bits')} bits)") if "deflate_window_bits" in r else ""
        return f"upgraded: path {g('path')}, subprotocol {g('subprotocol')}, extensions: {ext}{windows}"
    if ev == "connection.closed":
        clean = "clean" if g("clean") else "not clean"
        return f"closed: code {g('code')} {json.dumps(g('reason'))}, initiated by {g('initiator')}, {clean}"
    if ev == "compression.negotiated":
        return (f"compression negotiated: {g('response')} (deflate window {g('deflate_window_bits')} "
                f"bits, inflate window {g('inflate_window_bits')} bits)")
    if ev == "compression.start_failed":
        return f"compression could not start: {g('result')}"
    if ev == "compression.context.opened":
        primed = f", primed with {g('primed_bytes')} bytes" if g("primed_bytes") else ""
        return (f"context {g('context_id')} opened: {g('direction')}, {g('window_bits')} bits, "
                f"owner pid {g('owner_pid')}{primed}")
    if ev == "compression.context.released":
        return f"context {g('context_id')} released: cause {g('cause')}, by pid {g('by')}"
    if ev == "compression.release.ignored":
        return f"context {g('context_id')}: second release ignored ({g('why')}; cause {g('cause')})"
    if ev == "compression.recovered":
        ids = r.get("context_ids")
        new = ("; new contexts " + ", ".join(f"{k} {v}" for k, v in ids.items())) if isinstance(ids, dict) else ""
        resent = f", {r['resent_deflates']} deflate(s) sent again" if "resent_deflates" in r else ""
        return (f"compression recovered: replayed {g('replayed_chunks')} chunk(s) over a "
                f"{g('window_bytes')}-byte window{resent}{new}")
    if ev == "actor.started":
        return f"{g('actor')} started as {g('child_id')!s} under {g('supervisor')}"
    if ev == "actor.stopped":
        return f"{g('actor')} stopped: {_reason(g('reason'))}"
    if ev == "actor.crashed":
        return f"{g('actor')} CRASHED: {g('error_type')}: {g('message')} (handling {g('message_type')})"
    if ev == "supervisor.child.started":
        started = g("started") if isinstance(g("started"), dict) else {}
        return (f"{g('supervisor')} started child {g('child_id')}: {started.get('actor')} "
                f"{_who(r, 'child_')} ({started.get('restart_type')})")
    if ev == "supervisor.child.terminated":
        off = g("offender") if isinstance(g("offender"), dict) else {}
        return (f"{g('supervisor')}: child {g('child_id')} {_who(r, 'child_')} "
                f"({off.get('restart_type')}) terminated: {_reason(g('reason'))}")
    if ev == "supervisor.child.restarted":
        return (f"{g('supervisor')} RESTARTED child {g('child_id')}: {_who(r, 'old_')} -> "
                f"{_who(r, 'child_').removeprefix('pid ')}")
    if ev == "supervisor.start_error":
        return f"{g('supervisor')}: child {g('child_id')} failed to start: {_reason(g('reason'))}"
    if ev == "supervisor.shutdown_error":
        return (f"{g('supervisor')}: child {g('child_id')} {_who(r, 'child_')} did not shut down "
                f"cleanly: {_reason(g('reason'))}")
    if ev == "supervisor.shutdown":
        return (f"{g('supervisor')} GAVE UP ({g('reason')}: more than {g('intensity')} restarts in "
                f"{g('period')} s; last exit: {g('child_id')} {_who(r, 'child_')})")
    if ev == "fault.injected":
        return f"fault injected: {g('point')} {g('action')} ({g('spec')})"
    rest = " ".join(f"{k}={_val(v)}" for k, v in r.items()
                    if k not in _FIRST + ("child_id", "supervisor"))
    return f"{ev} {rest}".rstrip()


def timeline(records: Sequence[dict], connection_id: str, flt: Filter | None = None) -> list[str]:
    """One connection's life: every record with that connection_id, in time
    order, as '+seconds  writer/pid  what happened'.  Empty if there is none."""
    mine = [(record_time(r), n, r) for n, r in enumerate(records)
            if r.get("connection_id") == connection_id and (flt is None or flt(r))]
    if not mine:
        return []
    epoch = datetime.max.replace(tzinfo=timezone.utc)
    mine.sort(key=lambda item: (item[0] or epoch, item[1]))
    t0 = next((t for t, _, _ in mine if t is not None), None)
    t1 = next((t for t, _, _ in reversed(mine) if t is not None), None)
    span = f"{(t1 - t0).total_seconds():.3f} s" if t0 and t1 else "?"
    head = (f"connection {connection_id}: {len(mine)} records, "
            f"{_fmt_time(t0) if t0 else '?'} .. {_fmt_time(t1) if t1 else '?'} ({span})")
    out = [head]
    for t, _, r in mine:
        offset = f"+{(t - t0).total_seconds():.3f}s" if t and t0 else "?"
        who = f"{r.get('actor', '-')}/{r.get('pid', '-')}"
        out.append(f"{offset:>9}  {who:<26} {describe(r)}")
    return out


# -- processes and the tree ---------------------------------------------------------------------


def _who(r: dict, prefix: str) -> str:
    """``pid N`` (and ``id A~..`` for an in-process actor) of the child/old actor a record names."""
    key, pid = _ident(r, prefix + "actor_id", prefix + "pid")
    text = f"pid {r.get(prefix + 'pid')}"
    if key is not None and key != str(pid):
        text += f" id {key.partition('/')[2]}"
    return text


def _ident(r: dict, aid_field: str = "actor_id", pid_field: str = "pid") -> tuple[str | None, int | None]:
    """(key, pid) of the actor a record names: its actor_id (unique in the
    server: the pid on the process tier, pid/address in-process), else its pid."""
    pid = r.get(pid_field)
    if not isinstance(pid, int) or isinstance(pid, bool):
        pid = None
    aid = r.get(aid_field)
    if isinstance(aid, str) and aid:
        return aid, pid
    return (str(pid) if pid is not None else None), pid


@dataclass(eq=False)
class Proc:
    """One actor's life as the log tells it: a process-tier actor (one
    incarnation of a pid) or an in-process one (an actor_id inside a worker)."""

    pid: int | None
    first: int                       # index of the first record about it
    key: str = ""                    # its actor_id (or str(pid) in logs before actor ids)
    actor: str | None = None
    child_id: Any = None
    supervisor: str | None = None    # the name of the supervisor in charge of it
    name: str | None = None          # its own name, if it is a supervisor
    connection_id: str | None = None
    # index of its actor.started, or of the supervisor.child.started about it (an in-process
    # actor's start has only that record)
    started_at: int | None = None
    acked: bool = False              # its start completed (actor.started, or a child.started about it)
    start_time: datetime | None = None
    parent: "Proc | None" = None
    children: list = field(default_factory=list)
    restarted_from: str | None = None   # the key of the incarnation it replaced
    end: int | None = None           # index of the first record of its end
    end_time: datetime | None = None
    end_how: str | None = None       # stopped | crashed | terminated: REASON | leftover_killed
    killed: bool = False             # its death was recorded as "killed"
    sup_records: bool = False        # wrote supervisor.* reports

    @property
    def in_process(self) -> bool:
        return self.key != str(self.pid)

    def label(self) -> str:
        parts = [self.actor or "?", str(self.child_id) if self.child_id is not None else "-",
                 f"pid {self.pid}" + (f" id {self.key.partition('/')[2]}" if self.in_process else "")]
        if self.connection_id:
            parts.append(f"connection_id={self.connection_id}")
        if self.restarted_from is not None:
            was = self.restarted_from
            parts.append(f"(restarted, was {'pid ' + was if was.isdigit() else 'id ' + was.partition('/')[2]})")
        return "  ".join(parts)

    def ended_by(self, index: int) -> bool:
        return self.end is not None and self.end <= index


class Processes:
    """Every process the log mentions, by incarnation (a pid can be reused),
    with its parent: from ``supervisor.child.started`` (writer pid -> child
    pid), else by name (its ``supervisor`` field -> the supervisor process
    that writes supervisor.* records under that name)."""

    def __init__(self, records: Sequence[dict]) -> None:
        self.records = records
        self.procs: list[Proc] = []
        self.current: dict[str, Proc] = {}
        self.by_name: dict[str, list[Proc]] = {}
        self._start_index: dict[int, int] = {}
        self._build()

    # -- building

    def _get(self, ident: tuple[str | None, int | None], index: int, new_life: bool) -> Proc | None:
        key, pid = ident
        if key is None:
            return None
        p = self.current.get(key)
        if p is None or (new_life and p.end is not None):
            if pid is None and key.partition("/")[0].isdigit():
                pid = int(key.partition("/")[0])
            p = Proc(pid=pid, first=index, key=key)
            self.procs.append(p)
            self.current[key] = p
        return p

    def _end(self, p: Proc | None, index: int, how: str, killed: bool = False) -> None:
        if p is None:
            return
        if p.end is None:
            p.end, p.end_how = index, how
            p.end_time = record_time(self.records[index])
        if killed:
            p.killed = True

    def _build(self) -> None:
        pending_parent: list[tuple[Proc, Proc]] = []
        for i, r in enumerate(self.records):
            ev = r.get("event")
            me = _ident(r)
            if ev == "actor.started":
                p = self._get(me, i, new_life=True)
                if p is not None:
                    p.started_at = i
                    p.acked = True
                    p.start_time = p.start_time or record_time(r)
                    self._identify(p, r)
            elif ev == "supervisor.child.started":
                sup = self._get(me, i, new_life=True)
                child = self._get(_ident(r, "child_actor_id", "child_pid"), i, new_life=True)
                if sup is not None:
                    self._name(sup, r)
                if child is not None:
                    started = r.get("started") if isinstance(r.get("started"), dict) else {}
                    child.acked = True
                    if child.started_at is None:
                        child.started_at = i
                    child.actor = child.actor or started.get("actor")
                    if child.child_id is None:
                        child.child_id = r.get("child_id")
                    if child.supervisor is None:
                        child.supervisor = r.get("supervisor")
                    child.connection_id = child.connection_id or r.get("connection_id")
                    child.start_time = child.start_time or record_time(r)
                    if sup is not None and child.parent is None and sup is not child:
                        pending_parent.append((child, sup))
            elif ev in ("actor.stopped", "actor.crashed"):
                p = self._get(me, i, new_life=False)
                if p is not None:
                    self._identify(p, r)
                self._end(p, i, "stopped" if ev == "actor.stopped" else "crashed")
            elif ev in ("supervisor.child.terminated", "supervisor.shutdown_error", "supervisor.child.killed"):
                sup = self._get(me, i, new_life=True)
                if sup is not None:
                    self._name(sup, r)
                reason = r.get("reason")
                child = self._get(_ident(r, "child_actor_id", "child_pid"), i, new_life=False)
                self._end(child, i, f"{ev.split('.')[-1]}: {_reason(reason)}", killed=reason == "killed")
            elif ev == "supervisor.child.restarted":
                sup = self._get(me, i, new_life=True)
                if sup is not None:
                    self._name(sup, r)
                child_key = _ident(r, "child_actor_id", "child_pid")[0]
                child = self.current.get(child_key) if child_key else None
                old_key = _ident(r, "old_actor_id", "old_pid")[0]
                if child is not None and old_key is not None:
                    child.restarted_from = old_key
            elif isinstance(ev, str) and ev.startswith("supervisor."):
                sup = self._get(me, i, new_life=True)
                if sup is not None:
                    self._name(sup, r)
            elif ev == "runtime.leftover_killed":
                left = {p for p in r.get("pids") or () if isinstance(p, int)}
                for p in list(self.current.values()):
                    if p.pid in left:
                        self._end(p, i, "leftover_killed", killed=True)
        for child, sup in pending_parent:
            child.parent = sup
        for p in self.procs:
            if p.parent is None and p.supervisor is not None:
                p.parent = self._resolve(p.supervisor, p.first, exclude=p) or self._host(p)
            if p.parent is not None:
                p.parent.children.append(p)
        for p in self.procs:
            p.children.sort(key=lambda c: c.first)

    def _identify(self, p: Proc, r: dict) -> None:
        p.actor = p.actor or r.get("actor")
        if p.child_id is None:
            p.child_id = r.get("child_id")
        if p.supervisor is None:
            p.supervisor = r.get("supervisor")
        p.connection_id = p.connection_id or r.get("connection_id")

    def _name(self, sup: Proc, r: dict) -> None:
        name = r.get("supervisor")
        sup.sup_records = True
        if sup.actor is None:
            sup.actor = r.get("actor")
        if isinstance(name, str) and sup.name is None:
            sup.name = name
            self.by_name.setdefault(name, []).append(sup)

    def _host(self, p: Proc) -> Proc | None:
        """The process-tier actor an in-process root runs in: its supervisor
        name is that actor's child id (a worker's in-process Application
        answers to worker-K), in the same process."""
        if not p.in_process:
            return None
        return next((q for q in self.procs if q is not p and not q.in_process and q.pid == p.pid
                     and q.child_id == p.supervisor), None)

    def _resolve(self, name: str, index: int, exclude: Proc) -> Proc | None:
        """The supervisor process called ``name`` that was alive at record ``index``."""
        best = None
        for s in self.by_name.get(name, ()):
            if s is exclude:
                continue
            if s.end is not None and s.end < index:
                continue
            if best is None or s.first <= index < best.first or (
                    s.first <= index and s.first > best.first):
                best = s
        return best

    # -- queries

    def ancestors(self, p: Proc) -> Iterator[Proc]:
        seen = {id(p)}
        q = p.parent
        while q is not None and id(q) not in seen:
            seen.add(id(q))
            yield q
            q = q.parent

    def start_index(self, p: Proc) -> int:
        """A supervisor reports its own start after its children's: it lives
        from the first start in its subtree."""
        cached = self._start_index.get(id(p))
        if cached is None:
            cached = min([p.first] + [self.start_index(c) for c in p.children])
            self._start_index[id(p)] = cached
        return cached

    def alive_at(self, p: Proc, index: int) -> bool:
        if self.start_index(p) > index or (p.end is not None and p.end <= index):
            return False
        # A supervisor still starting its children is there while they are; one
        # whose start failed (it never reported, nobody recorded it started)
        # is gone when they are.
        return p.acked or any(self.alive_at(c, index) for c in p.children)


def index_at(records: Sequence[dict], at: datetime | None) -> int:
    """The index of the last record at or before ``at`` (the end of the log if None)."""
    if at is None:
        return len(records) - 1
    last = -1
    for i, r in enumerate(records):
        t = record_time(r)
        if t is not None and t <= at:
            last = i
    return last


def tree(records: Sequence[dict], at: datetime | None = None) -> list[str]:
    """The supervision tree as it was at ``at`` (default: the end of the log)."""
    procs = Processes(records)
    i = index_at(records, at)
    when = (_fmt_time(at) if at is not None else
            next((str(r.get("timestamp")) for r in reversed(records) if "timestamp" in r), "?"))
    head = f"supervision tree at {when}" + (" (end of log)" if at is None else "")
    lines = [head]

    def walk(p: Proc, prefix: str, last: bool, top: bool) -> None:
        if top:
            lines.append(p.label())
            child_prefix = ""
        else:
            lines.append(prefix + ("└── " if last else "├── ") + p.label())
            child_prefix = prefix + ("    " if last else "│   ")
        kids = [c for c in p.children if procs.alive_at(c, i)]
        for n, c in enumerate(kids):
            walk(c, child_prefix, n == len(kids) - 1, False)

    roots = [p for p in procs.procs if p.parent is None and procs.alive_at(p, i)]
    roots.sort(key=lambda p: procs.start_index(p))
    for p in roots:
        walk(p, "", True, True)
    if not roots:
        stopped = any(r.get("event") in STOP_EVENTS for r in records[: i + 1])
        lines.append("(no process alive" + ("; the server had stopped" if stopped else "")
                     + ": use --at TIME for an earlier moment)")
    return lines


# -- the invariants -----------------------------------------------------------------------------


@dataclass
class Violation:
    invariant: int
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "log"
        return f"{where}: invariant {self.invariant}: {self.message}"


@dataclass
class CheckResult:
    violations: list[Violation]
    counts: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        c = self.counts
        state = "server stopped" if c.get("stopped") else "server still running (invariant 2 skipped)"
        return (f"ok: {c['records']} records, {c['connections']} connections, "
                f"{c['actors_started']} actors started, {c['crashes']} crashes, "
                f"{c['kills']} kills, {c['restarts']} restarts, "
                f"{c['contexts']} compression contexts opened and released once"
                + (f" ({c['contexts_died_with_process']} of them died with a SIGKILLed worker)"
                   if c.get("contexts_died_with_process") else "") + f"; {state}")


def check(records: Sequence[dict], lines: Sequence[int] | None = None,
          bad: Sequence[BadLine] = ()) -> CheckResult:
    """Verify the log's invariants (docs/logs.md).  ``lines`` maps each
    record to its line number (default: index + 1); ``bad`` are the lines
    that did not parse (invariant 4)."""
    line_of = (lambda i: lines[i]) if lines is not None else (lambda i: i + 1)
    out: list[Violation] = []
    stops = [i for i, r in enumerate(records) if r.get("event") in STOP_EVENTS]
    last_stop = stops[-1] if stops else None

    # 1. compression contexts: opened once, released exactly once, never released unopened
    opened: dict[str, int] = {}
    released: dict[str, int] = {}
    for i, r in enumerate(records):
        ev = r.get("event")
        cid = r.get("context_id")
        if ev == "compression.context.opened":
            if cid in opened:
                out.append(Violation(1, line_of(i), f"context {cid} opened again (first opened at "
                                                    f"line {line_of(opened[cid])})"))
            else:
                opened[cid] = i
        elif ev == "compression.context.released":
            if cid in released:
                out.append(Violation(1, line_of(i), f"context {cid} released again (first released at "
                                                    f"line {line_of(released[cid])})"))
                continue
            released[cid] = i
            if cid not in opened:
                out.append(Violation(1, line_of(i), f"context {cid} released but never opened"))
    # A context of an in-process owner (owner_actor_id) whose worker process was SIGKILLed
    # died with that process: the worker's supervisor recorded the death (reason killed,
    # child_pid = owner_pid) and no ledger outlived it.  (A process-layout CompressionActor
    # killed alone must still get its owner_died record from its supervisor.)
    # (A kill record of an in-process child names the same pid as its supervisor's: not a
    # process death.  The first process kill after the open is the one.)
    killed_at: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        if r.get("event") in ("supervisor.child.terminated", "supervisor.shutdown_error",
                              "supervisor.child.killed") and r.get("reason", "killed") == "killed" \
                and isinstance(r.get("child_pid"), int) and r.get("child_pid") != r.get("pid"):
            killed_at.setdefault(r["child_pid"], []).append(i)
    died_with_process = 0
    for cid, i in list(opened.items()):
        owner = records[i].get("owner_pid")
        if cid in released or not records[i].get("owner_actor_id") or not isinstance(owner, int):
            continue
        after = next((k for k in killed_at.get(owner, ()) if k > i), None)
        if after is not None:
            released[cid] = after
            died_with_process += 1
    for cid, i in opened.items():
        if cid not in released and last_stop is not None and i < last_stop:
            out.append(Violation(1, line_of(i), f"context {cid} (connection "
                                                f"{records[i].get('connection_id')}) opened, never released"))

    procs = Processes(records)

    def accounted(p: Proc) -> bool:
        if p.end is not None and p.end_how != "leftover_killed":
            return True
        # An in-process actor ends with the process that hosts it, however that ended.
        return any(a.killed or (p.in_process and not a.in_process and a.pid == p.pid and a.end is not None)
                   for a in procs.ancestors(p))

    # 2. every started actor ended, once the server has stopped
    if last_stop is not None:
        for p in procs.procs:
            if p.started_at is None or p.started_at > last_stop or accounted(p):
                continue
            why = " (killed as a leftover by the runtime)" if p.end_how == "leftover_killed" else ""
            conn = f", connection {p.connection_id}" if p.connection_id else ""
            out.append(Violation(2, line_of(p.started_at),
                                 f"{p.actor} pid {p.pid} (child {p.child_id} of {p.supervisor}{conn}) "
                                 f"started but never stopped or crashed, and no supervisor recorded "
                                 f"its death{why}"))

    # 3. a crashed or killed permanent/transient child is restarted, or its supervisor gives up or ends
    for i, r in enumerate(records):
        if r.get("event") != "supervisor.child.terminated":
            continue
        off = r.get("offender")
        if not isinstance(off, dict) or off.get("restart_type") not in ("permanent", "transient"):
            continue
        sup_pid, child_pid, child_id = r.get("pid"), r.get("child_pid"), r.get("child_id")
        sup_key, child_key = _ident(r)[0], _ident(r, "child_actor_id", "child_pid")[0]
        followed = retried = False
        for j in range(i + 1, len(records)):
            s = records[j]
            if _ident(s)[0] != sup_key:
                continue
            ev = s.get("event")
            if ev == "supervisor.start_error" and s.get("child_id") == child_id:
                retried = True   # the restart failed; the supervisor tries again (old_pid null)
            elif (ev == "supervisor.child.restarted"
                  and (_ident(s, "old_actor_id", "old_pid")[0] == child_key
                       or (retried and s.get("old_pid") is None and s.get("child_id") == child_id))) \
                    or ev == "supervisor.shutdown" or ev in ("actor.stopped", "actor.crashed"):
                followed = True
                break
        if not followed:
            sup = next((p for p in procs.procs if p.key == sup_key and p.first <= i
                        and (p.end is None or p.end >= i)), None)
            if sup is not None and ((sup.end is not None and sup.end > i)
                                    or any(a.end is not None and a.end > i and a.killed
                                           for a in procs.ancestors(sup))):
                followed = True
        if not followed:
            out.append(Violation(3, line_of(i),
                                 f"{r.get('supervisor')} (pid {sup_pid}): {off.get('restart_type')} child "
                                 f"{r.get('child_id')} pid {child_pid} terminated ({_reason(r.get('reason'))}) "
                                 f"but was not restarted (no supervisor.child.restarted with old_pid "
                                 f"{child_pid}), and the supervisor neither gave up nor ended"))

    # 4. torn lines and records out of schema
    for b in bad:
        text = b.text if len(b.text) <= 80 else b.text[:77] + "..."
        out.append(Violation(4, b.line, f"torn record: {b.problem}: {text!r}"))
    for i, r in enumerate(records):
        problems = schema_problems(r)
        if problems:
            out.append(Violation(4, line_of(i), f"{r.get('event')!r} out of schema: " + "; ".join(problems)))

    out.sort(key=lambda v: (v.invariant, v.line or 0))
    counts = {
        "records": len(records),
        "connections": len({r.get("connection_id") for r in records if r.get("event") == "connection.accepted"}),
        # an actor.started, or (in-process) the supervisor.child.started that is its start
        "actors_started": sum(1 for p in procs.procs if p.started_at is not None),
        "crashes": sum(1 for r in records if r.get("event") == "actor.crashed"),
        "kills": sum(1 for r in records if r.get("event") in ("supervisor.child.terminated",
                                                              "supervisor.shutdown_error")
                     and r.get("reason") == "killed"),
        "restarts": sum(1 for r in records if r.get("event") == "supervisor.child.restarted"),
        "contexts": len(opened),
        "stopped": int(last_stop is not None),
    }
    if died_with_process:
        counts["contexts_died_with_process"] = died_with_process
    return CheckResult(out, counts)


# -- I/O: reading, following, the command -------------------------------------------------------


def read_log(path: str, allow_partial_last: bool = False) -> ParsedLog:
    with open(path, "rb") as f:
        data = f.read()
    return parse_text(data.decode("utf-8", "replace"), allow_partial_last)


def follow(path: str, emit: Callable[[dict, str], None], warn: Callable[[str], None],
           stop: Callable[[], bool] = lambda: False, poll: float = 0.2) -> None:
    """Emit every record of ``path`` (``emit(record, line_text)``), then keep
    reading as it grows, like ``tail -f``: a partially written last line
    waits for its newline; a truncated or replaced file is read again from
    its start.  Returns when ``stop()`` is true (checked between reads)."""
    buf = LineBuffer()
    f = None
    pos = 0
    lineno = 0
    inode = None
    try:
        while not stop():
            if f is None:
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
                inode, pos, lineno = os.fstat(f.fileno()).st_ino, 0, 0
                buf.reset()
            data = f.read()
            if data:
                pos += len(data)
                for text in buf.feed(data):
                    lineno += 1
                    obj, problem = parse_line(text)
                    if obj is None:
                        warn(f"{path}:{lineno}: skipped, {problem}")
                    else:
                        emit(obj, text)
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is None or st.st_ino != inode or st.st_size < pos:
                f.close()
                f = None   # rotated or truncated: start over
                continue
            time.sleep(poll)
    finally:
        if f is not None:
            f.close()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "logs", help="filter, follow and check a lifecycle log",
        description="Read a wsup JSON-lines lifecycle log (wsup serve --log-file): filter and print "
                    "its records, follow it as it grows, show one connection's timeline or the "
                    "supervision tree, or check its invariants (see docs/logs.md).")
    p.add_argument("file", metavar="FILE", help="the JSON-lines log")
    f = p.add_argument_group("filters (all given must match)")
    f.add_argument("--connection", metavar="ID", help="records with this connection_id")
    f.add_argument("--actor", metavar="CLASS", help="records written by actors of this class")
    f.add_argument("--pid", type=int, metavar="PID",
                   help="records written by this process, or a supervisor's reports about it "
                        "(child_pid/old_pid)")
    f.add_argument("--event", action="append", default=[], metavar="GLOB",
                   help="event name pattern, e.g. 'compression.*' (repeatable: any may match)")
    f.add_argument("--level", choices=LEVELS, help="minimum level")
    f.add_argument("--since", type=_time_arg, metavar="TIME",
                   help="records at or after this ISO 8601 time (no zone: UTC)")
    f.add_argument("--until", type=_time_arg, metavar="TIME", help="records at or before this time")
    p.add_argument("--format", choices=("json", "pretty"), default="pretty",
                   help="output of the filter mode: the JSON lines as written, or one readable "
                        "line each (default pretty)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep reading as the file grows, until interrupted (filter mode)")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--timeline", metavar="CONNECTION_ID", help="one connection's life, in order")
    m.add_argument("--tree", action="store_true",
                   help="the supervision tree at the end of the log (or at --at TIME)")
    m.add_argument("--check", action="store_true",
                   help="verify the log's invariants; exit 1 listing each violation")
    p.add_argument("--at", type=_time_arg, metavar="TIME", help="with --tree: the moment to show")
    p.set_defaults(func=run)


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def _filter_from(args: argparse.Namespace) -> Filter:
    return Filter(connection=args.connection, actor=args.actor, pid=args.pid, events=tuple(args.event),
                  level=args.level, since=args.since, until=args.until)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BrokenPipeError:
        # stdout closed early (| head): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _err(message: str) -> None:
    print(f"wsup logs: {message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    flt = _filter_from(args)
    if args.at is not None and not args.tree:
        _err("--at goes with --tree")
        return 2
    if args.follow and (args.tree or args.check or args.timeline):
        _err("--follow goes with the filter mode, not --tree, --timeline or --check")
        return 2
    if (args.tree or args.check) and flt.active:
        _err("filters do not apply to --tree or --check")
        return 2
    if args.follow:
        return _follow(args, flt)
    try:
        log = read_log(args.file, allow_partial_last=not args.check)
    except OSError as exc:
        _err(f"{args.file}: {exc.strerror or exc}")
        return 2
    if args.check:
        result = check(log.records, log.lines, log.bad)
        if result.ok:
            print(result.summary())
            return 0
        for v in result.violations:
            print(v)
        print(f"{len(result.violations)} violation(s) in {result.counts['records']} records")
        return 1
    for b in log.bad:
        _err(f"{args.file}:{b.line}: skipped, {b.problem}")
    if args.tree:
        print("\n".join(tree(log.records, args.at)))
        return 0
    if args.timeline:
        out = timeline(log.records, args.timeline, flt if flt.active else None)
        if not out:
            _err(f"no records with connection_id {args.timeline}")
            return 1
        print("\n".join(out))
        return 0
    for r, raw in zip(log.records, log.raw):
        if flt(r):
            print(raw if args.format == "json" else pretty(r))
    return 0


def _follow(args: argparse.Namespace, flt: Filter) -> int:
    def emit(record: dict, text: str) -> None:
        if flt(record):
            print(text if args.format == "json" else pretty(record), flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Both explicitly: a process started in the background by a shell
    # inherits SIGINT ignored, and Python then installs no handler of its own.
    previous = {s: signal.signal(s, on_term) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        follow(args.file, emit, _err)
    except KeyboardInterrupt:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0

