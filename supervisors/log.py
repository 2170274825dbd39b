"""Structured lifecycle log: structlog, JSON lines, one file for all processes.

Thespian's own logging path (every record pickled to a logger actor) was
measured at ~350 records/s.  Here every process appends to the log file
itself: the file is opened with O_APPEND and each record is one ``write()``
of one whole line, so records from many processes interleave only at line
boundaries (measured: 8 processes x 20k lines, 0 torn lines on ext4; POSIX
does not promise it, and it does not hold on NFS).

Every record carries ``event``, ``timestamp`` (ISO 8601, UTC), ``level`` and
``pid``; actors bind ``actor`` (their class name) too.

The configuration is a small picklable :class:`LogConfig`; supervisors pass
it to every child they start, so a child configures itself the same way
whether it was forked or spawned.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}


@dataclass(frozen=True)
class LogConfig:
    path: str | None = None        # None: standard error
    format: str = "json"           # json | console
    level: str = "info"


class AppendWriter:
    """A structlog logger that writes each rendered record as one line with
    one ``write()`` on an O_APPEND descriptor owned by this process."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._pid = -1
        self._fd = -1

    def _fileno(self) -> int:
        pid = _PID[0]
        if self._pid != pid:
            # After a fork the inherited descriptor would work (O_APPEND on a
            # shared open file), but each process owning its own descriptor
            # keeps close-on-exit and ownership simple.
            if self.path is None:
                self._fd = sys.stderr.fileno() if sys.stderr else 2
            else:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                   0o644)
            self._pid = pid
        return self._fd

    def msg(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            data = message + b"\n"
        else:
            data = (message + "\n").encode("utf-8", "backslashreplace")
        fd = self._fileno()
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except InterruptedError:
                continue
            except OSError:
                return  # a lost log line must never crash an actor
            view = view[n:]

    debug = info = warning = warn = error = critical = exception = log = failure = fatal = msg


class _WriterFactory:
    def __init__(self, path: str | None) -> None:
        self.writer = AppendWriter(path)

    def __call__(self, *args: Any) -> AppendWriter:
        return self.writer


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    return repr(obj)


_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"))
# orjson: 0.2 us for a supervisor.child.started record against 3.4 us with json's
# encoder (2026-12-04; seven records per connection).  The options keep json's output:
# int keys as strings, dataclasses and datetimes through _json_default (their repr).
_ORJSON_OPTS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
                | orjson.OPT_PASSTHROUGH_DATETIME)


def _encode(event_dict: dict) -> bytes | str:
    try:
        return orjson.dumps(event_dict, default=_json_default, option=_ORJSON_OPTS)
    except (TypeError, orjson.JSONEncodeError):
        return _ENCODER.encode(event_dict)   # what orjson refuses (an int beyond 64 bits): json


# Console lines stay short: the detail (child specs, tracebacks) is in the JSON.
_CONSOLE_DROP = ("offender", "started", "traceback")
_CONSOLE_MAX = 80


def _short_console(logger: Any, method: str, event_dict: dict) -> dict:
    for key in _CONSOLE_DROP:
        event_dict.pop(key, None)
    for key, value in list(event_dict.items()):
        if key in ("event", "timestamp", "level"):
            continue
        text = value if isinstance(value, str) else repr(value)
        if len(text) > _CONSOLE_MAX:
            event_dict[key] = text[:_CONSOLE_MAX - 3] + "..."
    return event_dict


_SECOND: tuple[int, str] = (-1, "")   # the last whole second formatted (one tuple: thread-safe)


def _timestamp(logger: Any, method: str, event_dict: dict) -> dict:
    """ISO 8601, UTC, always with microseconds (sortable as text)."""
    global _SECOND
    now = time.time()
    sec = int(now)
    cached = _SECOND
    if cached[0] != sec:
        cached = _SECOND = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    event_dict["timestamp"] = cached[1] + ".%06dZ" % int((now - sec) * 1_000_000)
    return event_dict


_PROCESS_CONTEXT: dict[str, Any] = {}


def set_process_context(**fields: Any) -> None:
    """Fields added to every record this process writes, from any thread
    (an actor's identity: actor, child_id, supervisor, connection_id ...)."""
    _PROCESS_CONTEXT.clear()
    _PROCESS_CONTEXT.update(fields)


_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _add_pid(logger: Any, method: str, event_dict: dict) -> dict:
    event_dict.setdefault("pid", _PID[0])
    for key, value in _PROCESS_CONTEXT.items():
        event_dict.setdefault(key, value)
    return event_dict


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}


def _json_record(logger: Any, method: str, event_dict: dict) -> bytes | str:
    """The JSON format's one processor: the level, the timestamp, the pid and
    process context, rendered — what add_log_level, _timestamp, _add_pid and
    JSONRenderer did as four steps, ~30% cheaper per record as one (a
    compressed connection writes 20; measured in docs/logging.md)."""
    event_dict["level"] = _LEVEL_NAMES.get(method, method)
    _timestamp(logger, method, event_dict)
    _add_pid(logger, method, event_dict)
    return _encode(event_dict)


_current: LogConfig | None = None
_current_pid: int | None = None
_base: Any = None


def configure(config: LogConfig | None = None) -> None:
    """Configure structlog in this process.  Idempotent per (process, config)."""
    global _current, _current_pid
    config = config or LogConfig()
    if _current == config and _current_pid == os.getpid():
        return
    if config.format == "console":
        processors: list = [structlog.processors.add_log_level, _timestamp, _add_pid, _short_console,
                            structlog.dev.ConsoleRenderer(colors=False)]
    else:
        processors = [_json_record]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(config.level, logging.INFO)),
        logger_factory=_WriterFactory(config.path),
        # Loggers are created before and used after fork(): never cache.
        cache_logger_on_first_use=False,
    )
    _current = config
    _current_pid = os.getpid()
    global _base
    # A concrete logger with no context: get_logger binds on it.  (structlog's lazy
    # proxy resolves the configuration on every bind: ~5 us, four times per connection.)
    _base = structlog.get_logger().bind()


def current() -> LogConfig:
    return _current or LogConfig()


def get_logger(**bind: Any) -> Any:
    if _current is None:
        configure()
    return _base.bind(**bind)


def read_records(path: str) -> list[dict]:
    """Parse a JSON-lines log; raises ValueError on a torn or invalid line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                raise ValueError(f"line {n} is not terminated (torn write?)")
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"line {n} is not JSON: {e}") from None
    return out
