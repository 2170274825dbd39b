"""Named fault points, switched on without code changes.

A fault spec is ``POINT:ACTION[:TRIGGER]``:

* ``POINT``   a name passed to :func:`point` in the code, or a glob (``compression.*``)
* ``ACTION``  ``raise`` (an exception, FaultInjected), ``exit`` (the actor ends at
              once, like a crash it cannot report: its process with ``os._exit(1)``
              on the process tier; on the in-process tier the actor alone, killed
              without its terminate, as an untrappable exit), or
              ``hang`` (the process stops responding: it sleeps for an hour), or
              ``delay=SECONDS`` (it sleeps that long, then goes on: a slow start or step)
* ``TRIGGER`` ``always`` (default), ``once`` (the first hit in the whole system: a
              marker file makes it once across processes and restarts), ``nth=N``
              (the N-th hit in each process), ``every=N`` (every N-th hit in each
              process), or ``p=0.1[,seed=42]`` (each hit with that probability;
              seeded per process with seed + pid); add ``,once`` to the last three
              to fire at most once in the whole system (``nth=5,once``)

Specs come from the environment variable ``SUPERVISORS_FAULTS`` (specs separated
by ``;``), set before the actor system starts so that every forked actor
inherits it (``wsup serve --fault SPEC`` does that).  An injected fault is
logged as ``fault.injected`` (point, action, pid) before it acts.

When no spec is set, :func:`point` costs one global lookup and a falsy test:
call sites write ``if faults.ACTIVE: faults.point("name")``.
"""

from __future__ import annotations

import fnmatch
import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

ENV = "SUPERVISORS_FAULTS"
STATE_ENV = "SUPERVISORS_FAULTS_STATE"
ACTIONS = ("raise", "exit", "hang", "delay")


class FaultInjected(RuntimeError):
    """The exception a ``raise`` fault throws."""


class FaultExit(BaseException):
    """An ``exit`` fault in an in-process actor: not an Exception, so nothing
    in the actor can catch it; the actor's receive turns it into a kill."""


_thread = threading.local()


def exit_ends_actor_only(on: bool) -> None:
    """Set by the actor being run on this thread: True for an in-process one."""
    _thread.actor_only = on


@dataclass
class FaultSpec:
    point: str
    action: str
    trigger: str = "always"
    n: int = 0
    p: float = 0.0
    seed: int | None = None
    delay: float = 0.0
    once: bool = False
    text: str = ""
    _hits: int = field(default=0, repr=False)
    _rng: Any = field(default=None, repr=False)
    _rng_pid: int = field(default=-1, repr=False)

    @classmethod
    def parse(cls, text: str) -> "FaultSpec":
        parts = text.strip().split(":", 2)
        delay = 0.0
        if len(parts) >= 2 and parts[1].startswith("delay="):
            try:
                delay = float(parts[1][6:])
            except ValueError:
                delay = -1.0
            if not 0 <= delay <= 3600:
                raise ValueError(f"bad fault spec {text!r}: delay=SECONDS (0..3600) expected")
            parts[1] = "delay"
        if len(parts) < 2 or not parts[0] or parts[1] not in ACTIONS:
            raise ValueError(f"bad fault spec {text!r}: expected POINT:{'|'.join(ACTIONS)}|delay=S[:TRIGGER]")
        spec = cls(parts[0], parts[1], delay=delay, text=text.strip())
        trig = parts[2].strip() if len(parts) > 2 else "always"
        if trig in ("always", "once"):
            spec.trigger = trig
            return spec
        flags = [t.strip() for t in trig.split(",")]
        spec.once = "once" in flags
        fields = dict(kv.split("=", 1) for kv in flags if "=" in kv)
        try:
            if "nth" in fields:
                spec.trigger, spec.n = "nth", int(fields["nth"])
            elif "every" in fields:
                spec.trigger, spec.n = "every", int(fields["every"])
            elif "p" in fields:
                spec.trigger, spec.p = "p", float(fields["p"])
                spec.seed = int(fields["seed"]) if "seed" in fields else None
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"bad fault trigger {trig!r} in {text!r}") from None
        if spec.trigger in ("nth", "every") and spec.n < 1:
            raise ValueError(f"bad fault trigger {trig!r}: N must be >= 1")
        return spec

    def fires(self) -> bool:
        if self._fires() and (not self.once or _claim_once(self.text)):
            return True
        return False

    def _fires(self) -> bool:
        self._hits += 1
        if self.trigger == "always":
            return True
        if self.trigger == "nth":
            return self._hits == self.n
        if self.trigger == "every":
            return self._hits % self.n == 0
        if self.trigger == "p":
            pid = os.getpid()
            if self._rng is None or self._rng_pid != pid:
                self._rng = random.Random(None if self.seed is None else self.seed + pid)
                self._rng_pid = pid
            return self._rng.random() < self.p
        return _claim_once(self.text)


def _claim_once(text: str) -> bool:
    state = os.environ.get(STATE_ENV) or tempfile.gettempdir()
    name = "fault-once-" + "".join(c if c.isalnum() else "_" for c in text)
    try:
        fd = os.open(os.path.join(state, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def parse_all(text: str) -> list[FaultSpec]:
    return [FaultSpec.parse(s) for s in text.split(";") if s.strip()]


SPECS: list[FaultSpec] = parse_all(os.environ.get(ENV, ""))
ACTIVE = bool(SPECS)


def configure(specs: list[str], state_dir: str | None = None) -> None:
    """Set the faults for this process and (through the environment) every
    process it forks from now on."""
    global SPECS, ACTIVE
    text = ";".join(specs)
    SPECS = parse_all(text)
    ACTIVE = bool(SPECS)
    if text:
        os.environ[ENV] = text
        os.environ[STATE_ENV] = state_dir or tempfile.mkdtemp(prefix="wsup-faults-")
    else:
        os.environ.pop(ENV, None)


def point(name: str, **context: Any) -> None:
    """A fault point.  Acts if a spec matches ``name`` and its trigger fires."""
    for spec in SPECS:
        if fnmatch.fnmatchcase(name, spec.point) and spec.fires():
            _act(spec, name, context)


def _act(spec: FaultSpec, name: str, context: dict) -> None:
    from . import log as _log
    _log.get_logger().warning("fault.injected", point=name, action=spec.action, spec=spec.text, **context)
    if spec.action == "raise":
        raise FaultInjected(f"fault injected at {name}")
    if spec.action == "exit":
        if getattr(_thread, "actor_only", False):
            raise FaultExit(name)
        os._exit(1)
    if spec.action == "hang":
        time.sleep(3600)
    if spec.action == "delay":
        time.sleep(spec.delay)
