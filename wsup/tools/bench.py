"""``wsup bench``: wsup against its peers (websockets, aiohttp), one interleaved run.

    wsup bench                       # full run (~20-25 min on 2 cores)
    wsup bench --quick               # CI-sized (< ~2 min)
    wsup bench --servers wsup --parts echo --duration 2 --json out.json
    python bench/run.py ...          # the same, from a source checkout

Starts every server itself on loopback — ``wsup serve --port 0 --log-file <tmp>
--ping-interval off --max-connections 100000`` (twice: ``wsup``, 2 workers on
both cores, and ``wsup-core0``, 1 worker restricted to core 0 like the peers) and ``bench/peers.py websockets|aiohttp``
(pinned to core 0) — and drives each with the same load generator
(``bench/loadgen.py``, pinned to core 1, at nice 0 by default), measurement by measurement, the
servers taking turns (order rotated every round) so that the machine's noise
hits them alike.  Prints a markdown table: each server's value and wsup's
ratio to the best peer; then the generator's and the servers' CPU for every
run, wsup's log health, and problems (exit status 1 if any).

Measurements: closed-loop echo msgs/s and p50/p99 latency at N connections
with and without permessage-deflate; handshakes/s; PSS per idle connection;
the most concurrent connections held within a budget.  Every echo is verified
byte for byte.  Not in the default plan (``--parts broadcast``: ~4 min for
wsup and websockets, 3 rounds): one publisher and N subscribers with
permessage-deflate (``bench/broadcast.py``; wsup runs
``bench/broadcast_app.py``, websockets its ``broadcast()``), deliveries/s and
the delay publish -> receipt, every delivery verified.  Servers are stopped with SIGTERM at the end and checked gone.
Ratios are reported, never asserted.

Only the standard library is imported here (this module is imported by every
``wsup`` command); the load generator and the peers live in ``bench/`` of the
source checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # wsup/tools/ -> the checkout
BENCH_DIR = os.path.join(ROOT, "bench")
LOADGEN = os.path.join(BENCH_DIR, "loadgen.py")
BROADCAST = os.path.join(BENCH_DIR, "broadcast.py")
PEERS_PY = os.path.join(BENCH_DIR, "peers.py")

SERVERS = ("wsup", "wsup-metrics", "wsup-core0", "websockets", "aiohttp")
PEERS = ("websockets", "aiohttp")
PARTS = ("echo", "setup", "memory", "hold", "broadcast")
DEFAULT_PARTS = ("echo", "setup", "memory", "hold")      # broadcast (~4-6 min more) only when asked
BCAST_SERVERS = ("wsup", "wsup-core0", "websockets")      # aiohttp has no broadcast(): no peer for it here
LABEL = {"wsup": "wsup (2 workers)", "wsup-metrics": "wsup (2 workers) + metrics scraped 1/s + live page",
         "wsup-core0": "wsup (1 worker, core 0)", "websockets": "websockets",
         "aiohttp": "aiohttp"}
WORKERS = {"wsup": 2, "wsup-metrics": 2, "wsup-core0": 1}   # --workers: wsup on both cores, and pinned to core 0
BOTH_CORES = ("wsup", "wsup-metrics")
SERVER_CPU, GEN_CPU = 0, 1

PROBLEMS: list[str] = []


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _loadgen():
    """bench/loadgen.py as a module (for its /proc helpers)."""
    if "wsup_bench_loadgen" in sys.modules:
        return sys.modules["wsup_bench_loadgen"]
    spec = importlib.util.spec_from_file_location("wsup_bench_loadgen", LOADGEN)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["wsup_bench_loadgen"] = mod
    spec.loader.exec_module(mod)
    return mod


# -- options --------------------------------------------------------------------------------


def _csv(kind, choices=None):
    def parse(text: str):
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        if choices is not None:
            bad = [x for x in items if x not in choices]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown: {', '.join(map(str, bad))} (choose from {', '.join(choices)})")
        return items
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="CI-sized: 1 round, 1.5 s windows, wsup on both cores only, small memory/hold "
                        "steps (< ~2 min)")
    p.add_argument("--servers", type=_csv(str, SERVERS), default=None,
                   help=f"comma-separated, of {','.join(SERVERS)} (default: all; --quick: all but wsup-core0)")
    p.add_argument("--parts", type=_csv(str, PARTS), default=list(DEFAULT_PARTS),
                   help=f"comma-separated, of {','.join(PARTS)} (default: {','.join(DEFAULT_PARTS)})")
    p.add_argument("--conns", type=_csv(int), default=[1, 10, 100], help="echo: connection counts (default 1,10,100)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds measured per echo/setup run (default 5; quick 1.5)")
    p.add_argument("--warmup", type=float, default=None, help="seconds before measuring (default 1; quick 0.3)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of every echo/setup measurement (default 3; quick 1)")
    p.add_argument("--size", type=int, default=1024, help="message size, bytes of compressible text (default 1024)")
    p.add_argument("--workers", type=int, default=4,
                   help="setup: concurrent connect/handshake/close workers (default 4)")
    p.add_argument("--mem-conns", type=int, default=None,
                   help="memory: idle connections opened on wsup (default 50; quick 20)")
    p.add_argument("--mem-conns-peers", type=int, default=None,
                   help="memory: idle connections opened on a peer (default 2000; quick 300): a peer's "
                        "connection costs ~1/200 of wsup's and needs more of them to stand out of the noise")
    p.add_argument("--hold-cap", type=int, default=None,
                   help="hold: stop at this many connections (default 10000; quick 200)")
    p.add_argument("--hold-budget", type=float, default=None, help="hold: seconds per server (default 180; quick 8)")
    p.add_argument("--hold-step", type=int, default=None, help="hold: connections per step (default 100; quick 50)")
    p.add_argument("--mem-floor-gib", type=float, default=3.0, help="hold: keep MemAvailable above this (default 3)")
    p.add_argument("--bcast-conns", type=_csv(int), default=None,
                   help="broadcast: subscriber counts (default 1000,10000; quick 200)")
    p.add_argument("--bcast-size", type=int, default=256,
                   help="broadcast: message size, bytes of compressible text (default 256: a typical pub/sub "
                        "message, where the per-delivery costs dominate)")
    p.add_argument("--bcast-window", type=int, default=4,
                   help="broadcast: messages published and not yet received by every subscriber, at most "
                        "(default 4)")
    p.add_argument("--bcast-duration", type=float, default=None,
                   help="broadcast: seconds measured per run (default 10: at 10,000 subscribers one message "
                        "takes ~0.3 s to reach everyone; quick: --duration)")
    p.add_argument("--bcast-warmup", type=float, default=None,
                   help="broadcast: seconds of publishing before measuring (default 2; quick: --warmup)")
    p.add_argument("--max-time", type=float, default=None,
                   help="skip what is left after this many seconds (default 2400; quick 240)")
    p.add_argument("--gen-nice", type=int, default=0,
                   help="nice value of the load generator (default 0, as the servers; its run-queue wait "
                        "is measured and shown). -10 (the default until 2026-12-05) shields it from other "
                        "load, but it then preempts whatever shares its core at every reply it receives: "
                        "the peers (pinned to the other core) are not affected, wsup's second worker is "
                        "(docs/performance.md)")
    p.add_argument("--gen-engine", choices=("c", "python"), default="c",
                   help="the echo generator's measured loop: c (bench/echoloop.c, built with cc on first "
                        "use; a few us of CPU per echo, so it leaves a server on both cores most of the "
                        "generator's core) or python (the loop of earlier runs, ~30 us per echo)")
    p.add_argument("--server-nice", type=int, default=0,
                   help="nice value of the servers (default 0: they compete with other load as usual)")
    p.add_argument("--json", metavar="PATH", help="also write every run's numbers here as JSON")
    p.add_argument("--keep-logs", metavar="DIR", help="keep the servers' logs here (default: a temporary directory)")


def _settle(args: argparse.Namespace) -> argparse.Namespace:
    q = args.quick
    def dflt(name, full, quick):
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    # wsup-metrics (the cost of --metrics-port) only when asked: --servers wsup,wsup-metrics,...
    dflt("servers", [s for s in SERVERS if s != "wsup-metrics"], ["wsup", "websockets", "aiohttp"])
    dflt("duration", 5.0, 1.5)
    dflt("warmup", 1.0, 0.3)
    dflt("rounds", 3, 1)
    dflt("mem_conns", 50, 20)
    dflt("mem_conns_peers", 2000, 300)
    dflt("hold_cap", 10000, 200)
    dflt("hold_budget", 180.0, 8.0)
    dflt("hold_step", 100, 50)
    dflt("bcast_conns", [1000, 10000], [200])
    dflt("bcast_duration", 10.0, args.duration)
    dflt("bcast_warmup", 2.0, args.warmup)
    dflt("max_time", 2400.0, 240.0)
    return args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmark wsup against websockets and aiohttp",
        description="Start wsup and its peers (websockets, aiohttp) on loopback, drive each with the same "
                    "cheap load generator in one interleaved run, and print a table with wsup's ratio to the "
                    "best peer. Needs a source checkout (bench/) and the bench extra (aiohttp). "
                    "See docs/performance.md.")
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


# -- servers --------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def kill_leftovers(name: str, left: list[int], problems: list[str]) -> None:
    """Processes of a server still there after it exited: a problem to report, then SIGKILL."""
    if not left:
        return
    problems.append(f"{name}: {len(left)} process(es) left after exit, SIGKILLed: {left[:10]}")
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int, start: bytes | None = None) -> bool:
    f = _stat_fields(pid)
    if f is None or f[0] in (b"Z", b"X"):
        return False
    return start is None or f[19] == start


def _group_members(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = _stat_fields(int(name))
            if f is not None and f[0] not in (b"Z", b"X") and int(f[2]) == pgid:
                out.append(int(name))
    return out


class Server:
    """One server under test, a child process of this one."""

    def __init__(self, name: str, tmp: str, cpus: set[int] | None, tag: str = "", nice: int = 0,
                 broadcast: bool = False) -> None:
        self.name = name
        self.label = name + tag
        self.cpus = cpus
        self.exit_status, self.stop_seconds = None, 0.0
        self.log_path = os.path.join(tmp, f"{name}{tag}.jsonl") if name.startswith("wsup") else None
        self.stderr_path = os.path.join(tmp, f"{name}{tag}.stderr")
        if self.log_path:
            cmd = [sys.executable, "-m", "wsup.cli", "serve", "--port", "0", "--log-file", self.log_path,
                   "--ping-interval", "off", "--max-connections", "100000"]
            if name in WORKERS:
                cmd += ["--workers", str(WORKERS[name])]
            if name == "wsup-metrics":
                cmd += ["--metrics-port", "0"]
            if broadcast:
                cmd += ["--app-dir", BENCH_DIR, "--app", "broadcast_app:BroadcastApp"]
        else:
            cmd = [sys.executable, PEERS_PY, name, "--port", "0"] + (["--broadcast"] if broadcast else [])
        self.cmd = cmd
        self.stderr = open(self.stderr_path, "wb")

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)
            if nice:
                os.setpriority(os.PRIO_PROCESS, 0, nice)

        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, cwd=ROOT, preexec_fn=pin)
        self.pid = self.proc.pid
        line = self._readline(60)
        m = re.fullmatch(r"listening on ws://(\S+):(\d+)\n", line)
        if not m:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"{name}: no readiness line ({line!r}); stderr: {self.stderr_text()[-800:]}")
        self.port = int(m.group(2))
        self.watchers: list[threading.Thread] = []
        if name == "wsup-metrics":
            m = re.fullmatch(r"metrics and live view on http://(\S+):(\d+)/\n", self._readline(10))
            if not m:
                raise RuntimeError(f"{name}: no metrics line")
            self._watch(m.group(1), int(m.group(2)))
        self.pgid = None
        if self.log_path:
            deadline = time.monotonic() + 10
            while self.pgid is None and time.monotonic() < deadline:
                for p in _loadgen().descendants(self.pid):
                    f = _stat_fields(p)
                    if p != self.pid and f is not None and int(f[2]) == p:
                        self.pgid = p
                        break
                else:
                    time.sleep(0.02)
        time.sleep(0.5)
        self.baseline = len(self.processes())
        self.seen: dict[int, bytes] = {}
        self.remember()

    def _watch(self, host: str, port: int) -> None:
        """What a production deployment does to a server with metrics on: Prometheus scrapes
        /metrics (here every second, not every 15-60 s) and someone has the live page open
        (its feed: a summary pushed every second)."""
        import urllib.request

        from wsup.tools.top import feed

        def scrape() -> None:
            while self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
                        r.read()
                except OSError:
                    pass
                time.sleep(1.0)

        def live() -> None:
            try:
                for _ in feed(host, port, timeout=30):
                    pass
            except OSError:
                pass

        for fn in (scrape, live):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.watchers.append(t)

    def _readline(self, timeout: float) -> str:
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
        return buf.decode(errors="replace")

    def processes(self) -> list[int]:
        return _loadgen().descendants(self.pid)

    def remember(self) -> None:
        """Note the processes alive now (to check later that they are gone)."""
        for p in self.processes():
            f = _stat_fields(p)
            if f is not None:
                self.seen.setdefault(p, f[19])

    def stderr_text(self) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cpu_now(self, seconds: float = 0.3) -> float:
        lg = _loadgen()
        pids = self.processes()
        a = lg.cpu_seconds(pids)
        time.sleep(seconds)
        return (lg.cpu_seconds(pids) - a) / seconds

    def quiesce(self, timeout: float) -> float | None:
        """Wait until the server is back to its idle process count and
        (nearly) idle CPU; seconds waited, or None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                return None
            if len(self.processes()) <= self.baseline and self.cpu_now(0.2) < 0.15:
                return time.monotonic() - t0
            time.sleep(0.1)
        return None

    def stop(self, timeout: float = 120.0) -> tuple[int | None, float]:
        """SIGTERM; wait; check that no process of it is left (SIGKILL
        leftovers by pid, reported as problems).  Idempotent."""
        if self.proc.stdout.closed:
            return self.exit_status, self.stop_seconds
        self.remember()
        t0 = time.monotonic()
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                PROBLEMS.append(f"{self.name}: did not exit within {timeout:.0f} s of SIGTERM; SIGKILLed")
                self.proc.kill()
                rc = self.proc.wait()
        else:
            PROBLEMS.append(f"{self.name}: had exited before the end of the run (status {rc})")
        took = time.monotonic() - t0
        if rc != 0:
            PROBLEMS.append(f"{self.name}: exit status {rc} after SIGTERM (expected 0)")
        deadline = time.monotonic() + 10
        while True:
            left = [p for p, st in self.seen.items() if _alive(p, st)]
            if self.pgid:
                left += [p for p in _group_members(self.pgid) if p not in left]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        kill_leftovers(self.name, left, PROBLEMS)
        self.proc.stdout.close()
        self.stderr.close()
        self.exit_status, self.stop_seconds = rc, took
        return rc, took


# -- runs -----------------------------------------------------------------------------------


def loadgen(server: Server, mode: str | None, opts: list[str], timeout: float, gen_cpus: set[int] | None,
            nice: int | None = None, script: str = LOADGEN) -> dict:
    cmd = [sys.executable, script, *([mode] if mode else []), "--port", str(server.port),
           "--server-pid", str(server.pid), *opts]
    if nice:
        cmd += ["--nice", str(nice)]
    for c in sorted(gen_cpus or ()):
        cmd += ["--cpu", str(c)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        return {"ok": False, "error": f"load generator timed out after {timeout:.0f} s",
                "stderr": (exc.stderr or b"")[-500:].decode(errors="replace") if isinstance(exc.stderr, bytes)
                else (exc.stderr or "")[-500:]}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": f"load generator exit {done.returncode}: {done.stderr[-800:]}"}
    result = json.loads(lines[-1])
    if done.returncode != 0 and result.get("ok", True):
        result["ok"] = False
    return result


def _rotate(xs: list, k: int) -> list:
    k %= len(xs) or 1
    return xs[k:] + xs[:k]


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x / 1000:.1f}k" if x >= 10000 else f"{x / 1000:.2f}k" if x >= 1000 else f"{x:.1f}"


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def _fmt_kib(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x / 1024:.2f} MiB" if x >= 1024 else f"{x:.0f} KiB"


def _median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        ncpu = len(os.sched_getaffinity(0))
        if ncpu >= 2:
            self.server_cpus = {0}
            self.gen_cpus = {1}
            self.both = {0, 1}
        else:
            self.server_cpus = self.gen_cpus = self.both = None
        self.servers: dict[str, Server] = {}
        self.extra: list[Server] = []       # the fresh servers of the memory, hold and broadcast parts
        self.tmp = ""
        self.runs: list[dict] = []          # every run: {"measure", "server", "round", "result"}
        self.skipped: list[str] = []
        self.plan = self.measures()

    def cpus_for(self, name: str) -> set[int] | None:
        return self.both if name in BOTH_CORES else self.server_cpus

    def time_left(self) -> float:
        return self.args.max_time - (time.monotonic() - self.t0)

    # -- plan --

    def measures(self) -> list[dict]:
        a = self.args
        out = []
        if "echo" in a.parts:
            for comp in (True, False):
                for n in a.conns:
                    out.append({"kind": "echo", "compress": comp, "conns": n, "offer": "nct",
                                "servers": a.servers, "rounds": a.rounds})
            if not a.quick:
                # what browsers offer: the servers keep their zlib contexts (no per-message setup)
                out.append({"kind": "echo", "compress": True, "conns": 10, "offer": "takeover",
                            "servers": a.servers, "rounds": a.rounds})
        if "setup" in a.parts:
            for comp in (True, False):
                out.append({"kind": "setup", "compress": comp, "servers": a.servers, "rounds": a.rounds})
        one = [s for s in a.servers if not s.endswith("core0")] or a.servers
        if "memory" in a.parts:
            for offer in (("none", "takeover") if a.quick else ("none", "takeover", "nct")):
                out.append({"kind": "memory", "offer": offer, "servers": one, "rounds": 1})
        if "hold" in a.parts:
            out.append({"kind": "hold", "offer": "takeover", "servers": [s for s in one if not s.startswith("wsup")]
                        + [s for s in one if s.startswith("wsup")], "rounds": 1})
        if "broadcast" in a.parts:
            able = [s for s in a.servers if s in BCAST_SERVERS]
            if not able:
                self.skipped.append(f"broadcast: none of {', '.join(a.servers)} has a broadcast server "
                                    f"({', '.join(BCAST_SERVERS)} have)")
            for n in a.bcast_conns if able else ():
                out.append({"kind": "broadcast", "offer": "takeover", "conns": n, "servers": able,
                            "rounds": a.rounds})
        return out

    def run_one(self, m: dict, name: str, s: "Server") -> dict:
        a = self.args
        base = ["--size", str(a.size)]
        if m["kind"] == "echo":
            opts = base + ["--conns", str(m["conns"]), "--duration", str(a.duration), "--warmup", str(a.warmup),
                           "--open-budget", "120", "--offer", m["offer"],
                           "--compression" if m["compress"] else "--no-compression", "--engine", a.gen_engine]
            res = loadgen(s, "echo", opts, a.duration + a.warmup + 240, self.gen_cpus, self.args.gen_nice)
        elif m["kind"] == "setup":
            # wsup's handshakes take ~0.1-1 s: a shorter window counts too few
            d = max(a.duration, 2.0 if a.quick else 3.0)
            opts = base + ["--workers", str(a.workers), "--duration", str(d), "--warmup", str(a.warmup),
                           "--compression" if m["compress"] else "--no-compression"]
            res = loadgen(s, "setup", opts, d + a.warmup + 120, self.gen_cpus, self.args.gen_nice)
        elif m["kind"] == "broadcast":
            # one process: 10,000 subscribers fit the hard RLIMIT_NOFILE (20,000 here) and the
            # ephemeral ports of 127.0.0.1 (~28,000); more processes would share core 1 anyway
            opts = ["--subs", str(m["conns"]), "--size", str(a.bcast_size), "--window", str(a.bcast_window),
                    "--duration", str(a.bcast_duration), "--warmup", str(a.bcast_warmup), "--open-budget", "300",
                    "--drain-timeout", "60", "--close-timeout", "60"]
            res = loadgen(s, None, opts, a.bcast_duration + a.bcast_warmup + 600, self.gen_cpus,
                          self.args.gen_nice, script=BROADCAST)
        else:
            offer = m["offer"]
            comp = ["--no-compression"] if offer == "none" else ["--compression", "--offer", offer]
            if m["kind"] == "memory":
                n = a.mem_conns if name.startswith("wsup") else a.mem_conns_peers
                opts = base + comp + ["--step", str(n), "--cap", str(n), "--budget", "120", "--settle", "1"]
                res = loadgen(s, "hold", opts, 400, self.gen_cpus, self.args.gen_nice)
            else:
                budget = max(5.0, min(a.hold_budget, self.time_left() - 60))
                # one generator process holds < 20,000 descriptors here (the hard RLIMIT_NOFILE) and
                # one source address ~28,000 ephemeral ports: spread bigger caps over 127.0.0.x
                procs = max(1, -(-a.hold_cap // 15000))
                opts = base + comp + ["--step", str(a.hold_step), "--cap", str(a.hold_cap), "--budget", str(budget),
                                      "--mem-floor-gib", str(a.mem_floor_gib), "--settle", "0.5", "--progress",
                                      "--procs", str(procs)]
                res = loadgen(s, "hold", opts, budget + 600, self.gen_cpus, self.args.gen_nice)
        return res

    def execute(self) -> None:
        for m in self.plan:
            for r in range(m["rounds"]):
                for name in _rotate(list(m["servers"]), r):
                    if self.time_left() <= 0:
                        self.skipped.append(f"{describe(m)} round {r + 1} on {name}: --max-time reached")
                        continue
                    t = time.monotonic()
                    fresh = m["kind"] in ("memory", "hold", "broadcast")
                    if fresh:
                        # memory is measured on a server that has not served anything yet (a used
                        # one reuses freed heap for new connections); broadcast needs its application
                        bc = m["kind"] == "broadcast"
                        tag = f"-broadcast-{m['conns']}-r{r + 1}" if bc else f"-{m['kind']}-{m['offer']}"
                        try:
                            s = Server(name, self.tmp, self.cpus_for(name), tag=tag,
                                       nice=self.args.server_nice, broadcast=bc)
                        except RuntimeError as exc:
                            PROBLEMS.append(str(exc))
                            continue
                        self.extra.append(s)
                    else:
                        s = self.servers[name]
                    if s.proc.poll() is not None:
                        self.skipped.append(f"{describe(m)} on {name}: the server had exited")
                        continue
                    res = self.run_one(m, name, s)
                    s.remember()
                    waited = s.quiesce(180 if m["kind"] in ("hold", "broadcast") else 60)
                    if waited is None:
                        PROBLEMS.append(f"{name}: not back to idle ({len(s.processes())} processes, baseline "
                                        f"{s.baseline}) after {describe(m)}")
                    if fresh:
                        rc, took = s.stop()
                        res["server_stop"] = {"exit": rc, "seconds": round(took, 1)}
                    progress(f"{describe(m)} round {r + 1} {name}: {summary(m, res)} "
                             f"({time.monotonic() - t:.1f} s, quiet after "
                             f"{'never' if waited is None else round(waited, 1)} s)")
                    if not res.get("ok"):
                        PROBLEMS.append(f"{name}, {describe(m)}: {res.get('error') or res.get('errors')}")
                    self.runs.append({"measure": m, "server": name, "round": r, "result": res})

    # -- results --

    def results(self, m: dict, name: str) -> list[dict]:
        return [x["result"] for x in self.runs if x["measure"] is m and x["server"] == name]


def describe(m: dict) -> str:
    if m["kind"] == "echo":
        return (f"echo N={m['conns']} {'deflate' if m['compress'] else 'uncompressed'}"
                + (", context takeover" if m["compress"] and m["offer"] == "takeover" else ""))
    if m["kind"] == "setup":
        return f"setup {'deflate' if m['compress'] else 'uncompressed'}"
    if m["kind"] == "broadcast":
        return f"broadcast to N={m['conns']} (deflate, context takeover)"
    return f"{m['kind']} {m['offer']}"


def summary(m: dict, r: dict) -> str:
    if not r.get("ok") and r.get("error"):
        return f"FAILED: {r['error'][:200]}"
    if m["kind"] == "echo":
        return (f"{r.get('msgs_per_s')} msg/s p50 {r.get('p50_ms')} p99 {r.get('p99_ms')} ms, "
                f"gen {r.get('gen_cpu')} srv {r.get('server_cpu')} cores, verified {r.get('verified')}")
    if m["kind"] == "setup":
        return f"{r.get('handshakes_per_s')} handshakes/s, gen {r.get('gen_cpu')} srv {r.get('server_cpu')}"
    if m["kind"] == "broadcast":
        return (f"{r.get('deliveries_per_s')} deliveries/s ({r.get('publishes_per_s')} publishes/s) "
                f"p50 {r.get('p50_ms')} p99 {r.get('p99_ms')} ms, gen {r.get('gen_cpu')} (wait {r.get('gen_wait')}) "
                f"srv {r.get('server_cpu')} cores, verified {r.get('verified')} of {r.get('expected_deliveries')}")
    return f"held {r.get('held')} ({r.get('stop')}), {r.get('per_conn_kib')} KiB/conn"


GEN_BOUND = 0.9     # a generator this busy may have limited the run: marked with a dagger

ECHO_ROWS = (("msgs/s ↑", "msgs_per_s", _fmt_rate, True),
             ("p50 ↓", "p50_ms", _fmt_ms, False),
             ("p99 ↓", "p99_ms", _fmt_ms, False))
BCAST_ROWS = (("deliveries/s ↑", "deliveries_per_s", _fmt_rate, True),
              ("p50 publish → receipt ↓", "p50_ms", _fmt_ms, False),
              ("p99 publish → receipt ↓", "p99_ms", _fmt_ms, False))


def build_rows(b: Bench) -> tuple[list[dict], list[dict]]:
    """(result rows, load rows).  A result row: label, per-server value
    (number) and text, higher_is_better."""
    rows, load = [], []
    for m in b.plan:
        if m["kind"] in ("echo", "broadcast"):
            for label, key, fmt, up in ECHO_ROWS if m["kind"] == "echo" else BCAST_ROWS:
                vals, texts = {}, {}
                for name in m["servers"]:
                    rs = [r for r in b.results(m, name) if r.get("ok")]
                    v = _median([r.get(key) for r in rs])
                    vals[name], texts[name] = v, fmt(v) if rs else "failed" if b.results(m, name) else "–"
                    if rs and max(r.get("gen_cpu") or 0 for r in rs) >= GEN_BOUND:
                        texts[name] += " †"
                rows.append({"label": f"{describe(m)}: {label}", "values": vals, "texts": texts, "up": up})
            load.append(_load_row(b, m))
        elif m["kind"] == "setup":
            vals, texts = {}, {}
            for name in m["servers"]:
                rs = [r for r in b.results(m, name) if r.get("ok")]
                v = _median([r.get("handshakes_per_s") for r in rs])
                vals[name] = v
                if rs:
                    texts[name] = f"{v:.1f}" if v is not None else "–"
                else:
                    texts[name] = "failed" if b.results(m, name) else "–"
            rows.append({"label": f"setup, {b.args.workers} workers, "
                                  f"{'deflate' if m['compress'] else 'uncompressed'}: handshakes/s ↑",
                         "values": vals, "texts": texts, "up": True})
            load.append(_load_row(b, m))
        elif m["kind"] == "memory":
            vals, texts = {}, {}
            for name in m["servers"]:
                want = b.args.mem_conns if name.startswith("wsup") else b.args.mem_conns_peers
                rs = [r for r in b.results(m, name) if r.get("ok") and r.get("held") == want]
                v = rs[0].get("per_conn_kib") if rs else None
                vals[name] = v
                texts[name] = _fmt_kib(v) if rs else "failed" if b.results(m, name) else "–"
            what = {"none": "uncompressed", "takeover": "deflate, context takeover (as browsers offer)",
                    "nct": "deflate, no context takeover"}[m["offer"]]
            rows.append({"label": f"PSS per idle connection ({what}; wsup {b.args.mem_conns} open, "
                                  f"peers {b.args.mem_conns_peers}) ↓",
                         "values": vals, "texts": texts, "up": False})
        else:
            vals, texts = {}, {}
            for name in m["servers"]:
                rs = b.results(m, name)
                r = rs[0] if rs else {}
                vals[name] = r.get("held")
                if r.get("held") is None:
                    texts[name] = "failed" if rs else "–"
                else:
                    stop = r.get("stop", "")
                    why = "cap" if stop == "cap" else "budget" if "budget" in stop else "memory" \
                        if "Mem" in stop else "failure"
                    texts[name] = f"{r['held']} ({why})"
            rows.append({"label": f"most concurrent connections (deflate; cap {b.args.hold_cap}, "
                                  f"{b.args.hold_budget:g} s) ↑", "values": vals, "texts": texts, "up": True})
    return rows, load


def _load_row(b: Bench, m: dict) -> dict:
    texts = {}
    for name in m["servers"]:
        rs = [r for r in b.results(m, name) if r.get("gen_cpu") is not None]
        if not rs:
            texts[name] = "–"
            continue
        g = max(r["gen_cpu"] for r in rs)
        w = max(r.get("gen_wait") or 0 for r in rs)
        sc = _median([r.get("server_cpu") for r in rs])
        oth = _median([r.get("other_cpu") for r in rs])
        texts[name] = (f"gen {g * 100:.0f}% (wait {w * 100:.0f}%) · srv {sc if sc is not None else float('nan'):.2f}"
                       f" · other {oth if oth is not None else float('nan'):.2f}")
    return {"label": describe(m), "texts": texts}


def ratio(row: dict, name: str) -> str:
    v = row["values"].get(name)
    peers = [row["values"].get(p) for p in PEERS if row["values"].get(p) is not None]
    if v is None or not peers:
        return "–"
    best = max(peers) if row["up"] else min(peers)
    if best <= 0 or v < 0:
        return "–"
    return f"{v / best:.2f}×"


def render(b: Bench, rows: list[dict], load: list[dict]) -> str:
    servers = [s for s in SERVERS if s in b.args.servers]
    wsups = [s for s in servers if s.startswith("wsup")]
    have_peers = any(s in PEERS for s in servers)
    head = ["measurement"] + [LABEL[s] for s in servers]
    if have_peers:
        head += [f"{LABEL[s]} ÷ best peer" for s in wsups]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["label"]] + [row["texts"].get(s, "–") for s in servers]
        if have_peers:
            cells += [ratio(row, s) for s in wsups]
        out.append("| " + " | ".join(cells) + " |")
    text = "\n".join(out)
    if any("†" in t for row in rows for t in row["texts"].values()):
        text += (f"\n\n† the load generator used ≥ {GEN_BOUND:.0%} of its core in a round of this run: it may "
                 "have been the limit, so the figure is a lower bound for that server's capacity (and, for a "
                 "peer, wsup's ratio an upper bound).")
    if load:
        lh = ["run"] + [LABEL[s] for s in servers]
        lo = ["| " + " | ".join(lh) + " |", "|" + "---|" * len(lh)]
        for row in load:
            lo.append("| " + " | ".join([row["label"]] + [row["texts"].get(s, "–") for s in servers]) + " |")
        text += ("\n\nCPU during the measured windows: `gen` = the load generator, % of its one core, and "
                 "`wait` = % of the window it was runnable but waiting for a CPU (worst round); `srv` = the "
                 "server's whole process tree, in cores; `other` = every other process on the machine, in "
                 "cores (medians over rounds).\n\n" + "\n".join(lo))
    return text


def machine() -> dict:
    from importlib import metadata

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    mem = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            mem[k] = int(v.split()[0])
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)), "cpu_model": model,
            "kernel": platform.release(), "python": platform.python_version(),
            "mem_total_gib": round(mem.get("MemTotal", 0) / 1048576, 1),
            "versions": {p: version(p) for p in ("wsup", "thespian", "wsproto", "websockets", "aiohttp")},
            "git_commit": git("rev-parse", "--short", "HEAD"),
            "git_dirty_files": len([ln for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()
                                    if ln])}


def wsup_health(server: Server) -> dict:
    """What wsup's log says about the run: error/warning records, crashes,
    abnormal closes."""
    levels: dict[str, int] = {}
    events: dict[str, int] = {}
    closes: dict[str, int] = {}
    errors: list[str] = []
    bad_lines = 0
    try:
        with open(server.log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    bad_lines += 1
                    continue
                lvl = rec.get("level", "?")
                levels[lvl] = levels.get(lvl, 0) + 1
                ev = rec.get("event", "?")
                if lvl in ("warning", "error", "critical") or ev in (
                        "actor.crashed", "supervisor.start_error", "connection.rejected", "supervisor.child.terminated",
                        "compression.recovered", "runtime.leftover_killed"):
                    key = f"{ev} ({lvl})"
                    events[key] = events.get(key, 0) + 1
                    if lvl in ("error", "critical") and len(errors) < 5:
                        errors.append(json.dumps(rec)[:500])
                if ev == "connection.closed":
                    k = f"{rec.get('code')} {rec.get('initiator')} {'clean' if rec.get('clean') else 'unclean'}"
                    closes[k] = closes.get(k, 0) + 1
    except OSError as exc:
        errors.append(f"log not readable: {exc}")
    check = None
    if importlib.util.find_spec("wsup.tools.logs") is not None:
        try:
            done = subprocess.run([sys.executable, "-m", "wsup.cli", "logs", server.log_path, "--check"],
                                  capture_output=True, text=True, cwd=ROOT, timeout=300)
            check = (done.stdout + done.stderr).strip()[-1500:]
        except (OSError, subprocess.SubprocessError) as exc:
            check = f"wsup logs --check failed to run: {exc!r}"
    return {"levels": levels, "events": events, "closes": closes, "errors": errors, "torn_lines": bad_lines,
            "check": check, "stderr": server.stderr_text()[-1500:]}


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)    # unwinds through run()'s finally: the servers are stopped


def run(args: argparse.Namespace) -> int:
    args = _settle(args)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)   # as Ctrl-C: stop what we started, then exit
    PROBLEMS.clear()
    if not os.path.exists(LOADGEN):
        print(f"wsup bench: {LOADGEN} not found: the benchmark needs a source checkout of wsup", file=sys.stderr)
        return 2
    if any(s in PEERS for s in args.servers):
        missing = [m for m in ("websockets", "aiohttp") if m in args.servers and importlib.util.find_spec(m) is None]
        if missing:
            print(f"wsup bench: {', '.join(missing)} not installed (pip install -e '.[bench,test]')", file=sys.stderr)
            return 2
    tmp_ctx = None
    if args.keep_logs:
        os.makedirs(args.keep_logs, exist_ok=True)
        tmp = args.keep_logs
    else:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="wsup-bench-")
        tmp = tmp_ctx.name
    b = Bench(args)
    b.tmp = tmp
    info = machine()
    info["loadavg_start"] = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    progress(f"servers {args.servers}, parts {args.parts}; logs in {tmp}")
    health: dict = {}
    try:
        if any(m["kind"] in ("echo", "setup") for m in b.plan):
            for name in args.servers:
                b.servers[name] = Server(name, tmp, b.cpus_for(name), nice=args.server_nice)
                progress(f"{name}: pid {b.servers[name].pid}, port {b.servers[name].port}, "
                         f"cpus {sorted(b.cpus_for(name) or [])}, {b.servers[name].baseline} processes idle")
        b.execute()
    finally:
        for name, s in b.servers.items():
            rc, took = s.stop()
            progress(f"{name}: stopped with SIGTERM, exit {rc} in {took:.1f} s")
        for s in b.extra:
            s.stop()
        for s in list(b.servers.values()) + b.extra:
            if s.log_path:
                health[s.label] = wsup_health(s)
            else:
                err = s.stderr_text().strip()
                if err:
                    health[s.label] = {"stderr": err[-1500:]}
    info["loadavg_end"] = os.getloadavg()
    elapsed = time.monotonic() - b.t0
    rows, load = build_rows(b)
    table = render(b, rows, load)
    pin = (f"servers pinned to CPU {sorted(b.server_cpus)}, wsup (2 cores) on CPUs {sorted(b.both)}, "
           f"the generator on CPU {sorted(b.gen_cpus)}" if b.server_cpus else "one CPU: nothing pinned")
    nices = {x["result"].get("nice") for x in b.runs if x["result"].get("nice") is not None}
    pin += f"; the generator at nice {', '.join(map(str, sorted(nices))) or '?'}, the servers at {args.server_nice}"
    engines = sorted({x["result"]["engine"] for x in b.runs if x["result"].get("engine")})
    if engines:
        pin += f"; the echo generator's loop in {', '.join(engines)}"
    v = info["versions"]
    print(f"## wsup bench{' --quick' if args.quick else ''}: {started}, {elapsed:.0f} s\n")
    print(f"{info['cpus']} CPUs ({info['cpu_model']}), Linux {info['kernel']}, Python {info['python']}, "
          f"{info['mem_total_gib']} GiB; wsup {v['wsup']} (git {info['git_commit']}"
          f"{', %d modified files' % info['git_dirty_files'] if info['git_dirty_files'] else ''}), "
          f"thespian {v['thespian']}, websockets {v['websockets']}, aiohttp {v['aiohttp']}. {pin}. "
          f"Load average {info['loadavg_start'][0]:.1f} at the start, {info['loadavg_end'][0]:.1f} at the end. "
          + (f"{args.size} B compressible text, closed loop (one message in flight per connection), "
             f"{args.rounds} round(s) of {args.duration:g} s after {args.warmup:g} s warm-up, median over rounds; "
             "ratios" if any(m["kind"] != "broadcast" for m in b.plan) else "Ratios")
          + ": wsup ÷ best peer (highest rate, lowest latency or memory)."
          + (f" Broadcast: a fresh server per run (wsup: bench/broadcast_app.py), one publisher and N subscribers "
             f"offering permessage-deflate with context takeover (as browsers), {args.bcast_size} B compressible "
             f"text, at most {args.bcast_window} messages published and not yet received by every subscriber, "
             f"{args.rounds} round(s) of {args.bcast_duration:g} s after {args.bcast_warmup:g} s of publishing; "
             f"deliveries/s = messages × subscribers received in the window; delay = publish → receipt over "
             f"every delivery, median over rounds; peers: websockets' broadcast()."
             if any(m["kind"] == "broadcast" for m in b.plan)
             else "") + "\n")
    print(table)
    verified = sum(x["result"].get("verified", 0) or 0 for x in b.runs)
    mism = sum(x["result"].get("mismatches", 0) or 0 for x in b.runs)
    kinds = {x["measure"]["kind"] for x in b.runs}
    what = ("Echoes and broadcast deliveries" if kinds - {"broadcast"} else "Broadcast deliveries") \
        if "broadcast" in kinds else "Echoes"
    print(f"\n{what} verified byte for byte: {verified}; mismatches: {mism}.")
    for name, h in health.items():
        if "levels" in h:
            print(f"\n{name} log: levels {h['levels']}; notable events {h['events'] or 'none'}; "
                  f"connection.closed {h['closes']}" + (f"; {h['torn_lines']} torn lines" if h["torn_lines"] else ""))
            if h.get("check"):
                print(f"  `wsup logs --check`: {h['check']}")
            for e in h["errors"][:2]:
                print(f"  error (first of the kind): {e[:400]}")
        if h.get("stderr"):
            print(f"\n{name} stderr (tail):\n```\n{h['stderr']}\n```")
    if b.skipped:
        print("\nSkipped:\n" + "\n".join(f"- {s}" for s in b.skipped))
    if PROBLEMS:
        print("\nProblems:\n" + "\n".join(f"- {p}" for p in PROBLEMS))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started, "seconds": round(elapsed, 1), "machine": info,
                       "args": {k: v for k, v in vars(args).items() if k != "func"},
                       "runs": [{"measure": describe(x["measure"]), "kind": x["measure"]["kind"],
                                 "server": x["server"], "round": x["round"], "result": x["result"]} for x in b.runs],
                       "rows": [{"label": r["label"], "values": r["values"], "texts": r["texts"],
                                 "ratios": {s: ratio(r, s) for s in SERVERS if s.startswith("wsup")}} for r in rows],
                       "load": load, "health": health, "skipped": b.skipped, "problems": PROBLEMS,
                       "verified": verified, "mismatches": mism,
                       "servers": {s.label: {"exit": s.exit_status, "stop_seconds": round(s.stop_seconds, 1)}
                                   for s in list(b.servers.values()) + b.extra}}, f, indent=1, default=str)
    if tmp_ctx is not None:
        tmp_ctx.cleanup()
    return 1 if PROBLEMS else 0
