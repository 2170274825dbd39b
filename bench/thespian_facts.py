"""Measure the Thespian 4.0.1 facts behind the supervisors library's design.

    .venv/bin/python bench/thespian_facts.py          # full run, ~1-2 min
    .venv/bin/python bench/thespian_facts.py --quick  # short run, ~30 s

Prints a markdown table (median / p90 / count) to stdout and progress to
stderr.  Every actor system started here is shut down, and the script checks
that none of its processes is left (any leftover is SIGKILLed by pid and
reported).  See docs/thespian-facts.md for the results and what they mean.

Sections:
 1. message round trips (actor->actor 100 B and 64 KiB, external ask());
 2. actor start time (createActor from an actor until the child answers),
    alone and beside ~100 siblings;
 3. raw Thespian ChildActorExited: SIGKILL of one child, SIGKILL of 50 at
    once, the goodbye of a clean exit (is the process still there?), and how
    long a *recursive* ActorExitRequest takes on a parent with stale children;
 4. the same through the supervisors library (SIGKILL -> restart record in
    the JSON log), one child and 20 at once;
 5. idle actor memory (PSS from /proc/PID/smaps_rollup);
 6. process facts: listening addresses and the admin's parent/session, with
    and without the library's patches.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


# -- stdlib-only helpers (also used by the unpatched probe below) ----------------


def listening_sockets(pids: list[int]) -> list[tuple[int, str]]:
    """(pid, "addr:port") for every listening TCP socket the pids hold."""
    inodes: dict[str, str] = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "0A":  # TCP_LISTEN
                continue
            hexaddr, hexport = parts[1].split(":")
            if v6:
                addr = "[v6 " + hexaddr + "]"
            else:
                addr = ".".join(str(b) for b in reversed(bytes.fromhex(hexaddr)))
            inodes[parts[9]] = f"{addr}:{int(hexport, 16)}"
    out = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                out.append((pid, inodes[link[8:-1]]))
    return out


def stat_of(pid: int) -> dict | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return {"state": fields[0].decode(), "ppid": int(fields[1]), "pgid": int(fields[2]),
            "sid": int(fields[3])}


def live_pids_where(pred) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat_of(int(name))
            if st and st["state"] not in ("Z", "X", "x") and pred(int(name), st):
                out.append(int(name))
    return out


def unpatched_probe(port: int) -> None:
    """Plain Thespian, *without* importing supervisors (run in a subprocess):
    where do the sockets listen, and what becomes of the admin process?"""
    from thespian.actors import ActorSystem

    me = os.getpid()
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": port}, transientUnique=True)
    result: dict = {}
    try:
        actor_pid = asys.ask(asys.createActor(ProbeEcho), "pid", 10)
        admin = [pid for pid, addr in listening_sockets(
            live_pids_where(lambda p, st: p != me)) if addr.endswith(f":{port}")]
        admin_pid = admin[0] if admin else None
        st = stat_of(admin_pid) if admin_pid else None
        system = live_pids_where(lambda p, s: st is not None and s["sid"] == st["sid"])
        result = {
            "admin_pid": admin_pid, "admin_ppid": st and st["ppid"], "starter_pid": me,
            "admin_sid": st and st["sid"], "starter_sid": os.getsid(0),
            "actor_pid": actor_pid, "system_pids": system,
            "listeners": [a for _, a in listening_sockets(system)],
        }
    finally:
        asys.shutdown()
    deadline = time.monotonic() + 5
    left = system = result.get("system_pids", [])
    while time.monotonic() < deadline:
        left = [p for p in system if (stat_of(p) or {}).get("state", "Z") not in ("Z", "X")]
        if not left:
            break
        time.sleep(0.05)
    result["left_after_shutdown"] = left
    print(json.dumps(result))


if __name__ == "__main__" and sys.argv[1:2] == ["--unpatched-probe"]:
    # Dispatched before `import supervisors`, so that nothing is patched.  The
    # actor class must be a module global (Thespian imports it by name).
    os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"
    from thespian.actors import Actor

    class ProbeEcho(Actor):
        def receiveMessage(self, msg, sender):
            if msg == "pid":
                self.send(sender, os.getpid())

    unpatched_probe(int(sys.argv[2]))
    sys.exit(0)


# -- from here on: the library's conventions ------------------------------------

import supervisors  # noqa: E402  (first: loopback-only sockets, admin not daemonized)
from supervisors import _platform  # noqa: E402
from supervisors import (ONE_FOR_ONE, SIMPLE_ONE_FOR_ONE, ChildRef, ChildSpec, LogConfig,  # noqa: E402
                         Runtime, SupervisedActor, SupFlags, supervisor_spec)
from thespian.actors import (Actor, ActorExitRequest, ActorSystem, ChildActorExited,  # noqa: E402
                             WakeupMessage)

QUICK = "--quick" in sys.argv
ROWS: list[tuple] = []        # (section, what, n, median, p90, unit, note)
LEFTOVERS: list[str] = []


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def row(section: str, what: str, xs: list[float], unit: str = "ms", scale: float = 1000.0,
        note: str = "") -> None:
    if not xs:
        ROWS.append((section, what, 0, None, None, unit, note or "no sample"))
        return
    ROWS.append((section, what, len(xs), pct(xs, 0.5) * scale, pct(xs, 0.9) * scale, unit, note))


def count_row(section: str, what: str, value: str, note: str = "") -> None:
    ROWS.append((section, what, None, value, None, "", note))


# -- raw Thespian actors -----------------------------------------------------------


class Echo(Actor):
    def receiveMessage(self, msg, sender):
        if isinstance(msg, bytes):
            self.send(sender, msg)
        elif msg == "pid":
            self.send(sender, os.getpid())


class Pinger(Actor):
    """("rt", size, n, warmup) -> ("rt", [seconds per round trip])"""

    echo = None

    def receiveMessage(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "rt":
            _, size, self.n, self.warm = msg
            if self.echo is None:
                self.echo = self.createActor(Echo)
            self.client, self.times, self.payload = sender, [], b"x" * size
            self._ping()
        elif isinstance(msg, bytes):
            self.times.append(time.perf_counter() - self.t0)
            if len(self.times) < self.n + self.warm:
                self._ping()
            else:
                self.send(self.client, ("rt", self.times[self.warm:]))

    def _ping(self):
        self.t0 = time.perf_counter()
        self.send(self.echo, self.payload)


class Parent(Actor):
    """Creates Echo children and records every ChildActorExited it gets.

    ("spawn_timed", k)  -> ("spawned", [(createActor call s, until answer s, pid)])
    ("spawn_many", k)   -> ("pids", [pid, ...])   (k children created at once)
    "exits"             -> ("exits", [(monotonic, pid, alive_at_receipt, gone_after_s)])
    ("clean_exit", k, spin) -> ("clean", [...exits...])  (k children, each stopped
                            with ActorExitRequest, one after the other; with spin,
                            wait in the handler until the process is gone)
    "pid"               -> our pid
    "ignore_sigchld"    -> "ok"; from now on Thespian gets no SIGCHLD here
    """

    def __init__(self):
        super().__init__()
        self.kids: list[list] = []        # [address, pid]
        self.exits: list[tuple] = []
        self.mode = None
        self.spin = True

    def receiveMessage(self, msg, sender):
        if isinstance(msg, ChildActorExited):
            self._child_exited(msg.childAddress)
        elif msg == "pid":
            self.send(sender, os.getpid())
        elif msg == "ignore_sigchld":
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.send(sender, "ok")
        elif msg == "exits":
            self.send(sender, ("exits", list(self.exits)))
        elif isinstance(msg, tuple) and msg[0] in ("spawn_timed", "spawn_many", "clean_exit"):
            self.mode, self.left, self.client, self.results = msg[0], msg[1], sender, []
            self.spin = msg[2] if len(msg) > 2 else True
            if self.mode == "spawn_many":
                for _ in range(self.left):
                    addr = self.createActor(Echo)
                    self.kids.append([addr, None])
                    self.send(addr, "pid")
            else:
                self._next_timed()
        elif isinstance(msg, int):                     # a child's pid
            for kid in self.kids:
                if kid[0] == sender:
                    kid[0], kid[1] = sender, msg
            if self.mode == "spawn_timed":
                now = time.perf_counter()
                self.results.append((self.call, now - self.t0, msg))
                self.left -= 1
                self._next_timed()
            elif self.mode == "spawn_many":
                self.results.append(msg)
                if len(self.results) == self.left:
                    self.mode = None
                    self.send(self.client, ("pids", self.results))
            elif self.mode == "clean_exit":
                self.send(sender, ActorExitRequest())
        elif isinstance(msg, WakeupMessage) and msg.payload == "clean_done":
            self.send(self.client, ("clean", list(self.exits)))

    def _next_timed(self):
        if self.left == 0:
            if self.mode == "spawn_timed":
                self.mode = None
                self.send(self.client, ("spawned", self.results))
            else:   # clean_exit: give late duplicates time to arrive
                self.mode = None
                self.wakeupAfter(0.5, payload="clean_done")
            return
        self.t0 = time.perf_counter()
        addr = self.createActor(Echo)
        self.call = time.perf_counter() - self.t0
        self.kids.append([addr, None])
        self.send(addr, "pid")

    def _child_exited(self, address):
        t = time.monotonic()
        pid = next((k[1] for k in self.kids if k[0] == address), None)
        alive = pid is not None and _platform.process_start_time(pid) is not None
        gone_after = 0.0
        if alive and self.spin:  # spin until the process is gone (or a zombie)
            while _platform.process_start_time(pid) is not None and time.monotonic() - t < 2:
                time.sleep(0.0002)
            gone_after = time.monotonic() - t
        self.exits.append((t, pid, alive, gone_after))
        if self.mode == "clean_exit" and pid is not None and \
                sum(1 for e in self.exits if e[1] == pid) == 1:
            self.left -= 1
            self._next_timed()


# -- supervised actor --------------------------------------------------------------


class IdleWorker(SupervisedActor):
    def handle_message(self, message, sender):
        if message == "pid":
            self.send(sender, os.getpid())


# -- system helpers ----------------------------------------------------------------


class RawSystem:
    """A plain Thespian system, started the library's way (own admin port,
    admin is our child and leads its own process group)."""

    def __enter__(self):
        before = set(_platform.children_of(os.getpid()))
        self.asys = ActorSystem("multiprocTCPBase", {"Admin Port": _platform.free_port()},
                                logDefs=supervisors.runtime.THESPIAN_LOG_DEFS, transientUnique=True)
        self.pgid = next((p for p in _platform.children_of(os.getpid())
                          if p not in before and _platform.process_group_of(p) == p), None)
        return self.asys

    def __exit__(self, *exc):
        try:
            self.asys.shutdown()
        finally:
            ensure_gone(self.pgid, "raw ActorSystem")


def ensure_gone(pgid: int | None, what: str, grace: float = 5.0) -> None:
    if not pgid:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _platform.live_group_members(pgid):
        time.sleep(0.02)
    left = _platform.live_group_members(pgid)
    for pid in left:  # our own processes only, by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        LEFTOVERS.append(f"{what}: {left} left after shutdown, SIGKILLed")
    reap_zombies()


def reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def ask(asys, target, msg, timeout=30.0):
    reply = asys.ask(target, msg, timeout)
    if reply is None:
        raise TimeoutError(f"no reply to {msg!r}")
    return reply


def pss_kib(pid: int) -> tuple[int, int] | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            vals = {line.split(":")[0]: int(line.split()[1]) for line in f if line.endswith("kB\n")}
    except OSError:
        return None
    return vals.get("Pss", 0), vals.get("Rss", 0)


class LogTail:
    def __init__(self, path: str) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def poll(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        return [json.loads(line) for line in lines if line]


# -- 1. round trips ---------------------------------------------------------------


def bench_round_trips() -> None:
    n_small, n_big, n_ask = (50, 20, 50) if QUICK else (300, 100, 300)
    progress("1. round trips")
    with RawSystem() as asys:
        pinger = asys.createActor(Pinger)
        small = ask(asys, pinger, ("rt", 100, n_small, 10))[1]
        big = ask(asys, pinger, ("rt", 65536, n_big, 5))[1]
        echo = asys.createActor(Echo)
        for _ in range(10):
            ask(asys, echo, b"x" * 100)
        ext = []
        for _ in range(n_ask):
            t = time.perf_counter()
            ask(asys, echo, b"x" * 100)
            ext.append(time.perf_counter() - t)
    row("1", "round trip over a raw socketpair between two processes, 100 B", socketpair_rtt(n_small))
    row("1", "round trip actor->actor, 100 B", small)
    row("1", "round trip actor->actor, 64 KiB", big)
    row("1", "external ask() round trip, 100 B", ext)


def socketpair_rtt(n: int) -> list[float]:
    """The floor: a 100 B round trip between two processes, no Thespian."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        try:
            while True:
                data = b.recv(65536)
                if not data:
                    break
                b.sendall(data)
        finally:
            os._exit(0)
    b.close()
    out = []
    try:
        for _ in range(n + 10):
            t = time.perf_counter()
            a.sendall(b"x" * 100)
            got = 0
            while got < 100:
                got += len(a.recv(65536))
            out.append(time.perf_counter() - t)
    finally:
        a.close()
        os.waitpid(pid, 0)
    return out[10:]


# -- 2. actor start ---------------------------------------------------------------


def bench_actor_start() -> None:
    n, siblings, n_many = (10, 100, 5) if QUICK else (30, 100, 20)
    progress("2. actor start")
    with RawSystem() as asys:
        parent = asys.createActor(Parent)
        alone = ask(asys, parent, ("spawn_timed", n))[1]
        ask(asys, parent, ("spawn_many", siblings), timeout=120)
        crowded = ask(asys, parent, ("spawn_timed", n_many), timeout=60)[1]
        # asys.shutdown() ends the parent and its children (all alive, so
        # Thespian's recursive exit is quick here).
    row("2", "createActor() call, from an actor", [c for c, _, _ in alone])
    row("2", "createActor() until the child answers", [a for _, a, _ in alone])
    row("2", f"createActor() call, {siblings + n} siblings", [c for c, _, _ in crowded])
    row("2", f"createActor() until it answers, {siblings + n} siblings", [a for _, a, _ in crowded])


# -- 3. raw ChildActorExited -----------------------------------------------------------


def bench_raw_exits() -> dict:
    reps, rounds, mass = (8, 1, 50) if QUICK else (20, 3, 50)
    out: dict = {}
    progress("3. raw ChildActorExited")
    with RawSystem() as asys:
        # single SIGKILL
        parent = asys.createActor(Parent)
        lat, lost = [], 0
        for _ in range(reps):
            pid = ask(asys, parent, ("spawn_many", 1))[1][0]
            time.sleep(0.05)
            t = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            deadline = t + 3
            while time.monotonic() < deadline:
                got = [e for e in ask(asys, parent, "exits")[1] if e[1] == pid]
                if got:
                    lat.append(got[0][0] - t)
                    break
                time.sleep(0.01)
            else:
                lost += 1
        row("3", "SIGKILL of 1 child -> ChildActorExited", lat,
            note=f"{lost} of {reps} not delivered within 3 s")

        # clean exit: the goodbye arrives before the process is gone
        parent2 = asys.createActor(Parent)
        clean = ask(asys, parent2, ("clean_exit", reps, True))[1]
        firsts: dict = {}
        for e in clean:
            firsts.setdefault(e[1], e)
        alive_at = [e for e in firsts.values() if e[2]]
        count_row("3", "clean exit: process still alive when ChildActorExited arrives",
                  f"{len(alive_at)}/{len(firsts)}")
        row("3", "clean exit: ChildActorExited -> process gone", [e[3] for e in alive_at])
        # Without waiting in the handler, Thespian's SIGCHLD path may report
        # the same child a second time.
        n_dup = 2 * reps
        parent3 = asys.createActor(Parent)
        clean = ask(asys, parent3, ("clean_exit", n_dup, False), timeout=60)[1]
        distinct = len({e[1] for e in clean})
        count_row("3", "clean exit: duplicate ChildActorExited", f"{len(clean) - distinct}/{distinct}",
                  note="children reported twice")

        # mass SIGKILL
        counts, latest, pss_raw, late = [], [], [], None
        for r in range(rounds):
            p = asys.createActor(Parent)
            pids = ask(asys, p, ("spawn_many", mass), timeout=60)[1]
            if r == 0:
                pss_raw = [v[0] for v in map(pss_kib, pids) if v]
            time.sleep(0.2)
            t = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            time.sleep(max(0.0, t + 2.0 - time.monotonic()))
            ex = [e for e in ask(asys, p, "exits")[1] if e[0] - t <= 2.0 and e[1] in set(pids)]
            got = {e[1] for e in ex}
            counts.append(len(got))
            if ex:
                latest.append(max(e[0] for e in ex) - t)
            if r == 0 and not QUICK:   # lost, or only late?
                time.sleep(4.0)
                late = len({e[1] for e in ask(asys, p, "exits")[1]} - got)
            # Not recursive: Thespian would wait for the unreported children
            # (measured below).
            asys.tell(p, ActorExitRequest(recursive=False))
        count_row("3", f"SIGKILL of {mass} children at once: ChildActorExited within 2 s",
                  ", ".join(f"{c}/{mass}" for c in counts),
                  note=f"{rounds} round(s)" + (f"; {late} more arrived 2-6 s after the kill (round 1)"
                                               if late is not None else ""))
        row("3", f"SIGKILL of {mass} at once: last ChildActorExited that did arrive", latest)

        # A recursive ActorExitRequest when a dead child went unreported.  To
        # make the loss deterministic, the parent stops handling SIGCHLD (so
        # no ChildActorExited is synthesized), then one child is SIGKILLed:
        # the last one created, or the first one.
        cap = 3.0 if QUICK else 10.0
        for which, label in (("last", "the last-created child"), ("first", "the first-created child")):
            p = asys.createActor(Parent)
            ppid = ask(asys, p, "pid")
            kids = ask(asys, p, ("spawn_many", 3))[1]
            ask(asys, p, "ignore_sigchld")
            os.kill(kids[-1] if which == "last" else kids[0], signal.SIGKILL)
            time.sleep(0.2)
            t0 = time.monotonic()
            asys.tell(p, ActorExitRequest())
            while _platform.process_start_time(ppid) is not None and time.monotonic() - t0 < cap:
                time.sleep(0.005)
            took = time.monotonic() - t0
            if _platform.process_start_time(ppid) is not None:
                os.kill(ppid, signal.SIGKILL)   # our own, stuck actor
                count_row("3", f"recursive ActorExitRequest, unreported dead child = {label}",
                          f"> {cap:.0f} s", note="parent never exits (killed after the cap)")
            else:
                row("3", f"recursive ActorExitRequest, unreported dead child = {label}", [took])
        out["pss_raw"] = pss_raw
    return out


# -- 4 + 5. through the supervisors library --------------------------------------------


def bench_supervisors(tmp: str, raw: dict) -> None:
    reps, rounds, n_dyn = (4, 1, 20) if QUICK else (10, 3, 20)
    progress("4. supervisors: one_for_one")
    path = os.path.join(tmp, "one_for_one.jsonl")
    t = time.perf_counter()
    rt = Runtime(log=LogConfig(path=path))
    t_runtime = time.perf_counter() - t
    try:
        flags = SupFlags(strategy=ONE_FOR_ONE, intensity=1000, period=10.0)
        t = time.perf_counter()
        root = rt.start(supervisor_spec("root", flags, [ChildSpec("a", (IdleWorker, ())),
                                                        ChildSpec("b", (IdleWorker, ()))]))
        t_start = time.perf_counter() - t
        tail = LogTail(path)
        detect, restart, lost = [], [], 0
        for _ in range(reps):
            ref = {cid: r for cid, r, _, _ in rt.which_children(root)}["b"]
            if not isinstance(ref, ChildRef):
                time.sleep(0.1)
                continue
            tail.poll()
            time.sleep(0.1)
            t0 = time.monotonic()
            os.kill(ref.pid, signal.SIGKILL)
            t_det = None
            while time.monotonic() - t0 < 5:
                for r in tail.poll():
                    if r["event"] == "supervisor.child.terminated" and r.get("child_pid") == ref.pid:
                        t_det = time.monotonic() - t0
                    if r["event"] == "supervisor.child.restarted" and r.get("old_pid") == ref.pid:
                        restart.append(time.monotonic() - t0)
                        if t_det is not None:
                            detect.append(t_det)
                        break
                else:
                    time.sleep(0.002)
                    continue
                break
            else:
                lost += 1
        sockets = listening_sockets(rt.processes())
        n_procs = len(rt.processes())
    finally:
        t = time.perf_counter()
        rt.shutdown()
        t_shutdown = time.perf_counter() - t
        ensure_gone(rt.pgid, "Runtime one_for_one")
    row("4", "SIGKILL -> supervisor.child.terminated in the log", detect)
    row("4", "SIGKILL -> supervisor.child.restarted in the log", restart,
        note=f"one_for_one; {lost} not restarted within 5 s" if lost else "one_for_one")

    progress("4. supervisors: simple_one_for_one, mass kill")
    path = os.path.join(tmp, "simple.jsonl")
    rt = Runtime(log=LogConfig(path=path))
    try:
        tmpl = ChildSpec("w", (IdleWorker, ()))
        root = rt.start(supervisor_spec("dyn", SupFlags(strategy=SIMPLE_ONE_FOR_ONE,
                                                        intensity=1000, period=10.0), [tmpl]))
        starts = []
        for _ in range(n_dyn):
            t = time.perf_counter()
            res = rt.start_child(root, ())
            starts.append(time.perf_counter() - t)
            assert res[0] == "ok", res
        tail = LogTail(path)
        pss = [v[0] for v in (pss_kib(r.pid) for _, r, _, _ in rt.which_children(root)) if v]
        rss = [v[1] for v in (pss_kib(r.pid) for _, r, _, _ in rt.which_children(root)) if v]
        sup_pss = pss_kib(root.pid)
        all_done, first_det, lost_rounds, reused, done_rounds = [], [], 0, set(), 0
        for _ in range(rounds):
            refs = [r for _, r, _, _ in rt.which_children(root) if isinstance(r, ChildRef)]
            pids = [r.pid for r in refs]
            ports = {str(r.address).rstrip(")").rsplit(":", 1)[-1] for r in refs}
            tail.poll()
            time.sleep(0.3)
            t0 = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            restarted, det = set(), None
            while time.monotonic() - t0 < 15 and len(restarted) < len(pids):
                for r in tail.poll():
                    if r["event"] == "supervisor.child.terminated" and det is None:
                        det = time.monotonic() - t0
                    if r["event"] == "supervisor.child.restarted" and r.get("old_pid") in pids:
                        restarted.add(r["old_pid"])
                time.sleep(0.002)
            done_rounds += 1
            if det is not None:
                first_det.append(det)
            if len(restarted) == len(pids):
                all_done.append(time.monotonic() - t0)
                time.sleep(0.3)
                continue
            # The supervisor is stuck.  Did a new child get the TCP port of a
            # killed child the supervisor had not handled yet?
            lost_rounds += 1
            live = [p for p in _platform.children_of(root.pid) if _platform.process_start_time(p)]
            reused = ports & {a.rsplit(":", 1)[-1] for _, a in listening_sockets(live)}
            break   # the supervisor does not recover: no point in more rounds
    finally:
        rt.shutdown(stop_timeout=10)
        ensure_gone(rt.pgid, "Runtime simple_one_for_one")
    row("4", f"SIGKILL of {n_dyn} at once -> first supervisor.child.terminated", first_det,
        note="simple_one_for_one")
    note = f"{done_rounds} round(s)"
    if lost_rounds:
        note += (f"; {lost_rounds} incomplete after 15 s, supervisor stuck"
                 + (f" (a new child listens on port {', '.join(sorted(reused))} of a killed child)"
                    if reused else ""))
    row("4", f"SIGKILL of {n_dyn} at once -> all {n_dyn} supervisor.child.restarted", all_done,
        note=note)
    row("4", "start_child() on simple_one_for_one (client call)", starts)
    row("4", "Runtime() (actor system up)", [t_runtime], note="one sample")
    row("4", "Runtime.start() of root + 2 workers", [t_start], note="one sample")
    row("4", "Runtime.shutdown() (tree stopped, every process gone)", [t_shutdown], note="one sample")

    progress("5. memory, 6. sockets")
    row("5", "PSS of an idle SupervisedActor worker", [p / 1024 for p in pss], unit="MiB", scale=1.0,
        note=f"{len(pss)} workers of one supervisor; RSS median {pct(rss, 0.5) / 1024:.1f} MiB")
    if sup_pss:
        row("5", "PSS of its (simple_one_for_one) supervisor", [sup_pss[0] / 1024], unit="MiB",
            scale=1.0, note=f"{n_dyn} children")
    row("5", "PSS of an idle plain Thespian actor", [p / 1024 for p in raw.get("pss_raw", [])],
        unit="MiB", scale=1.0, note="50 siblings")
    addrs = {a for _, a in sockets}
    loop = sum(1 for a in addrs if a.startswith("127.0.0.1:"))
    count_row("6", "listening addresses of a Runtime's processes (patched)",
              f"{loop}/{len(addrs)} on 127.0.0.1", note=f"{n_procs} processes")


# -- 6. unpatched Thespian -------------------------------------------------------------


def bench_unpatched() -> None:
    progress("6. unpatched Thespian probe")
    port = _platform.free_port()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--unpatched-probe", str(port)],
                          capture_output=True, text=True, timeout=60)
    try:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        count_row("6", "unpatched probe", "failed", note=proc.stderr.strip()[-200:])
        return
    for pid in res.get("left_after_shutdown", []):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        LEFTOVERS.append(f"unpatched probe: pid {pid} left after shutdown, SIGKILLed")
    ls = set(res["listeners"])
    wild = sum(1 for a in ls if a.startswith("0.0.0.0:") or a.startswith("[v6 000000"))
    count_row("6", "listening addresses, plain Thespian + THESPIAN_BASE_IPADDR=127.0.0.1",
              f"{wild}/{len(ls)} on 0.0.0.0", note=f"{len(res['system_pids'])} processes")
    count_row("6", "plain Thespian admin: parent / session",
              ("child of the starter" if res["admin_ppid"] == res["starter_pid"]
               else f"orphaned (re-parented to pid {res['admin_ppid']})")
              + f", {'same' if res['admin_sid'] == res['starter_sid'] else 'new'} session",
              note="daemonized (setsid + fork)" if res["admin_ppid"] != res["starter_pid"] else "")


def bench_patched_admin() -> None:
    before = set(_platform.children_of(os.getpid()))
    with RawSystem() as asys:
        new = [p for p in _platform.children_of(os.getpid()) if p not in before]
        st = stat_of(new[0]) if new else None
    count_row("6", "admin with `import supervisors`: parent / group",
              "ppid = starter, pgid = admin pid" if st and st["pgid"] == new[0] else repr(st),
              note="same session" if st and st["sid"] == os.getsid(0) else "")


# -- main --------------------------------------------------------------------------------


def render() -> str:
    out = ["| # | measurement | n | median | p90 | note |", "|---|---|---|---|---|---|"]
    for section, what, n, med, p90, unit, note in ROWS:
        if n is None:
            out.append(f"| {section} | {what} | | {med} | | {note} |")
        elif med is None:
            out.append(f"| {section} | {what} | 0 | | | {note} |")
        else:
            digits = 3 if med < 1 else 2 if med < 10 else 1
            fmt = (lambda v, d=digits: f"{v:.{d}f} {unit}")
            out.append(f"| {section} | {what} | {n} | {fmt(med)} | {fmt(p90) if n > 1 else ''} "
                       f"| {note} |")
    return "\n".join(out)


def main() -> int:
    t0 = time.monotonic()
    load0 = f"{os.getloadavg()[0]:.1f}"
    _platform.install_parent_death_signal()
    # Orphaned processes (e.g. the unpatched probe's daemonized admin) are
    # re-parented to us rather than to init, so that reap_zombies() can
    # collect them: this machine's init does not reap.
    _platform.become_subreaper()
    with tempfile.TemporaryDirectory(prefix="thespian_facts_") as tmp:
        bench_round_trips()
        bench_actor_start()
        raw = bench_raw_exits()
        bench_supervisors(tmp, raw)
        bench_unpatched()
        bench_patched_admin()
    reap_zombies()
    import platform
    import importlib.metadata as md
    print(f"Thespian facts, {time.strftime('%Y-%m-%d')}: Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"thespian {md.version('thespian')}{', --quick' if QUICK else ''}; "
          f"run took {time.monotonic() - t0:.0f} s; load average {load0} before, "
          f"{os.getloadavg()[0]:.1f} after\n")
    print(render())
    if LEFTOVERS:
        print("\nLEFTOVER PROCESSES:\n" + "\n".join(LEFTOVERS))
    return 1 if LEFTOVERS else 0


if __name__ == "__main__":
    sys.exit(main())
