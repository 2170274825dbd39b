"""Runtime: owns one private Thespian actor system and the tree in it.

A Runtime is what a program (a server's main process, a test) uses:

    with Runtime(log=LogConfig(path="run.jsonl")) as rt:
        root = rt.start(supervisor_spec("root", SupFlags(...), [ChildSpec(...), ...]))
        rt.which_children(root)
        exit = rt.wait()          # until the root supervisor exits
    # leaving the block stops the tree in order and ends every process

Each Runtime starts its own multiprocTCPBase system on a free admin port
(Thespian's default, 1900, is shared machine-wide and outlives its starter),
with every socket on 127.0.0.1, every process in one new process group, and
every process dying with its parent.  ``shutdown()`` stops the tree in order,
shuts the system down, waits until no process of the group is left and, as a
last resort, kills what is left (reported as ``runtime.leftover_killed``).
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from typing import Any, Callable

from thespian.actors import ActorExitRequest, ActorSystem

from . import _platform
from . import log as _log
from .application import Application, ApplicationExit, AwaitExit, StopApplication
from .messages import (ChildRef, CountChildren, DeleteChild, GetChildspec, Init, InitAck,
                       InitFailed, Reply, RestartChild, StartChild, TerminateChild,
                       WhichChildren, _Request)
from .reasons import to_json
from .spec import ChildSpec

THESPIAN_LOG_DEFS = {
    "version": 1,
    "formatters": {"plain": {"format": "thespian %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                            "level": "WARNING"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}


class StartError(RuntimeError):
    def __init__(self, reason: Any) -> None:
        super().__init__(f"root supervisor failed to start: {reason!r}")
        self.reason = reason


PROCESS_BASE = "multiprocTCPBase"
IN_PROCESS_BASE = "simpleSystemBase"


class Runtime:
    """``base`` is the Thespian system base of the tree: ``multiprocTCPBase``
    (every actor a process) or ``simpleSystemBase`` (every actor an object in
    this process, run by the thread that calls the Runtime; see tiers.py)."""

    def __init__(self, log: _log.LogConfig | None = None, admin_port: int | None = None,
                 base: str = PROCESS_BASE) -> None:
        self.log_config = log or _log.LogConfig()
        _log.configure(self.log_config)
        self.log = _log.get_logger(actor="Runtime")
        self.base = base
        self._refs = itertools.count(1)
        self.pgid = None
        self.admin_port = None
        if base == IN_PROCESS_BASE:
            from .inprocess import start_system
            self.system = start_system()
        elif base == PROCESS_BASE:
            _platform.install_parent_death_signal()
            self.admin_port = admin_port or _platform.free_port()
            before = set(_platform.children_of(os.getpid()))
            self.system = ActorSystem("multiprocTCPBase", {"Admin Port": self.admin_port},
                                      logDefs=THESPIAN_LOG_DEFS, transientUnique=True)
            # The admin is our child and leads its own process group (see
            # _platform.install_admin_without_daemon); every actor inherits it.
            self.pgid = next((p for p in _platform.children_of(os.getpid())
                              if p not in before and _platform.process_group_of(p) == p), None)
        else:
            raise ValueError(f"unknown base {base!r}")
        self.app: Any = None
        self.root: ChildRef | None = None
        self.exit: ApplicationExit | None = None
        self.failure: str | None = None   # why the run did not end as asked, if it did not
        self._closed = False

    # -- lifecycle ------------------------------------------------------------

    def start(self, root: ChildSpec, timeout: float = 30.0) -> ChildRef:
        """Start the root supervisor (or any root actor) and its tree."""
        self.app = self.system.createActor(Application)
        init = Init("application", (root,), {}, self.log_config, "runtime", os.getpid())
        reply = self.system.ask(self.app, init, timeout)
        if isinstance(reply, InitFailed):
            self.failure = "start failed"
            raise StartError(reply.reason)
        if not isinstance(reply, InitAck):
            self.failure = "start failed"
            raise StartError("timeout" if reply is None else reply)
        children = self.which_children(self.app)
        self.root = children[0][1]
        self.log.info("runtime.started", base=self.base, admin_port=self.admin_port,
                      root_pid=self.root.pid, root_actor_id=self.root.actor_id, process_group=self.pgid)
        return self.root

    def wait(self, timeout: float | None = None,
             interrupted: Callable[[], bool] | None = None) -> ApplicationExit | None:
        """Block until the root supervisor has exited; None on timeout or
        interruption."""
        if self.exit is None:
            self.exit = self.call(self.app, AwaitExit(), timeout, interrupted)
        return self.exit

    def stop(self, timeout: float | None = None) -> ApplicationExit | None:
        """Stop the tree in order (each child per its shutdown spec)."""
        if self.exit is None and self.app is not None:
            self.exit = self.call(self.app, StopApplication(), timeout)
        return self.exit

    def processes(self) -> list[int]:
        """Every live process of this actor system."""
        return _platform.live_group_members(self.pgid) if self.pgid else []

    def shutdown(self, stop_timeout: float | None = 60.0, grace: float = 5.0) -> None:
        """Stop the tree, end the actor system, and make sure no process of it
        is left."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.app is not None and self.stop(stop_timeout) is None:
                self.failure = self.failure or f"the tree did not stop in order within {stop_timeout}s"
                self.log.error("runtime.stop_timeout", timeout=stop_timeout)
        finally:
            try:
                if self.app is not None:
                    # Our tree is already stopped; Thespian's recursive exit
                    # would wait on its stale record of dead children.
                    self.system.tell(self.app, ActorExitRequest(recursive=False))
                self.system.shutdown()
            finally:
                self._reap(grace)
        self.log.log(20 if self.ok else 40, "runtime.stopped", status=self.exit_status,
                     root_reason=to_json(self.exit.root_reason) if self.exit else None,
                     requested=self.exit.requested if self.exit else None, failure=self.failure)

    @property
    def ok(self) -> bool:
        """False if the root supervisor exited without being asked to (OTP: a
        permanent application's top supervisor terminated), if the start
        failed, or if the tree could not be stopped in order in time."""
        if self.failure is not None:
            return False
        return self.exit is None or self.exit.requested

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    def _reap(self, grace: float) -> None:
        if not self.pgid:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.processes():
            time.sleep(0.02)
        left = self.processes()
        if left:
            self.log.error("runtime.leftover_killed", pids=left)
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.processes():
                time.sleep(0.02)
        # The admin is our child: collect it so it does not linger as a zombie.
        try:
            os.waitpid(self.pgid, os.WNOHANG)
        except ChildProcessError:
            pass

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- requests -------------------------------------------------------------

    def call(self, address: Any, request: _Request, timeout: float | None = 10.0,
             interrupted: Callable[[], bool] | None = None) -> Any:
        """Send a request and return the result of its Reply (None on timeout
        or when ``interrupted()`` becomes true; it is checked every 0.2 s).
        Replies to earlier, abandoned requests are discarded."""
        request.ref = next(self._refs)
        deadline = None if timeout is None else time.monotonic() + timeout
        self.system.tell(_addr(address), request)
        if self.base == IN_PROCESS_BASE:
            return self._call_in_process(request, deadline, interrupted)
        while True:
            if interrupted is not None and interrupted():
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            step = remaining if interrupted is None else min(remaining or 0.2, 0.2)
            reply = self.system.listen(step)
            if isinstance(reply, Reply) and reply.ref == request.ref:
                return reply.result

    def _call_in_process(self, request: _Request, deadline: float | None,
                         interrupted: Callable[[], bool] | None) -> Any:
        # simpleSystemBase's listen() sleeps until its next wakeup even when
        # the reply came during tell(): drain what is there, then run the
        # system ourselves until the reply, a deadline or an interruption.
        from .inprocess import next_wakeup_in, run_due
        while True:
            reply = self.system.listen(0)
            while reply is not None:
                if isinstance(reply, Reply) and reply.ref == request.ref:
                    return reply.result
                reply = self.system.listen(0)
            if interrupted is not None and interrupted():
                return None
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            step = 0.2 if deadline is None else min(0.2, deadline - now)
            due = next_wakeup_in(self.system)
            time.sleep(step if due is None else min(step, due))
            run_due(self.system)

    def which_children(self, sup: Any = None) -> list[tuple]:
        return self.call(sup or self.root, WhichChildren())

    def count_children(self, sup: Any = None) -> dict:
        return self.call(sup or self.root, CountChildren())

    def start_child(self, sup: Any, spec_or_args: Any, timeout: float = 30.0) -> Any:
        return self.call(sup, StartChild(spec_or_args=spec_or_args), timeout)

    def terminate_child(self, sup: Any, child: Any, timeout: float | None = 60.0) -> Any:
        return self.call(sup, TerminateChild(child=child), timeout)

    def restart_child(self, sup: Any, child_id: Any, timeout: float = 30.0) -> Any:
        return self.call(sup, RestartChild(child_id=child_id), timeout)

    def delete_child(self, sup: Any, child_id: Any) -> Any:
        return self.call(sup, DeleteChild(child_id=child_id))

    def get_childspec(self, sup: Any, child: Any) -> Any:
        return self.call(sup, GetChildspec(child=child))

    def tell(self, target: Any, message: Any) -> None:
        self.system.tell(_addr(target), message)

    def ask(self, target: Any, message: Any, timeout: float = 10.0) -> Any:
        return self.system.ask(_addr(target), message, timeout)


def _addr(target: Any) -> Any:
    return target.address if isinstance(target, ChildRef) else target


def run(root: ChildSpec, log: _log.LogConfig | None = None,
        on_started: Callable[[Runtime], None] | None = None) -> int:
    """Run a tree until its root supervisor exits or SIGTERM/SIGINT arrives;
    then stop it in order and end every process.  Returns the exit status:
    0 after a requested stop, 1 if the root supervisor exited by itself (OTP:
    the top supervisor of a permanent application terminated)."""
    stopping = []

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with Runtime(log=log) as rt:
            try:
                rt.start(root)
            except StartError as exc:
                rt.log.error("runtime.start_failed", reason=to_json(exc.reason))
                return 1
            if on_started is not None:
                on_started(rt)
            rt.wait(interrupted=lambda: bool(stopping))
            if stopping:
                rt.log.info("runtime.signal", signal=signal.Signals(stopping[0]).name)
        return rt.exit_status
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
