"""``wsup chaos``: echo traffic with permessage-deflate while actors are killed.

N clients echo compressible messages (each checked byte for byte) against a
server this command starts (or one already running, ``--url`` with
``--server-log``), while actors are killed at an interval and/or
faults are injected (``--fault``, for a server it starts).  At the end it
prints a summary and runs the log check (``wsup logs --check``).  Exit 1 on a
corrupted echo, a server that stopped serving, or a failed check.  Bounded in
time (``--duration``) and count (``--max-messages``); loopback only.

Kills start once every client has connected.  By default every in-process
kind is killed — ConnectionActor, CompressionActor, ConnectionSupervisor and
a worker's ``connections`` Supervisor — through the workers' control
sockets; ``--kill workers`` adds SIGKILLs of worker processes
(rate-limited with the Supervisor kills, which take their worker down: see
Killer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from wsup.tools.control import control, worker_of

DEFAULT_KINDS = ("ConnectionActor", "CompressionActor", "ConnectionSupervisor", "Supervisor")
KINDS = DEFAULT_KINDS + ("workers",)
WORDS = ("actor", "supervisor", "deflate", "inflate", "window", "context", "release", "restart",
         "intensity", "frame", "socket", "echo", "chaos", "owner", "exactly", "once")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chaos", help="echo traffic while actors are killed; check every echo and the log",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    p.add_argument("--kill-interval", default="100ms",
                   help="SIGKILL one actor this often: 100ms, 1s, off (default 100ms)")
    p.add_argument("--kill", action="append", default=None, metavar="KIND", choices=KINDS,
                   help=f"what to kill (repeatable; default {', '.join(DEFAULT_KINDS)}, in-process; "
                        "'workers' SIGKILLs worker processes)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="inject a fault in the server it starts (see wsup serve --fault)")
    p.add_argument("--message-size", type=int, default=2000, help="bytes per message (default 2000)")
    p.add_argument("--max-messages", type=int, default=10_000_000, help="stop after this many echoes")
    p.add_argument("--seed", type=int, default=None, help="random seed (kills, message contents)")
    p.add_argument("--url", default=None, help="attack a running server instead of starting one")
    p.add_argument("--server-log", default=None, help="with --url: that server's --log-file")
    p.add_argument("--log-file", default=None, help="log file for the server it starts (default: a temp file)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the server it starts (repeatable)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _interval(text: str) -> float | None:
    t = text.strip().lower()
    if t in ("off", "0", "none", "no"):
        return None
    m = re.fullmatch(r"([\d.]+)\s*(ms|s)?", t)
    if not m:
        raise ValueError(f"bad interval {text!r}")
    return float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)


class ServerProcess:
    """A ``wsup serve`` this command started."""

    def __init__(self, log_file: str, faults: list[str], extra: list[str]) -> None:
        args = [sys.executable, "-m", "wsup.cli", "serve", "--port", "0", "--log-file", log_file,
                "--max-connections", "100000"]
        for spec in faults:
            args += ["--fault", spec]
        self.proc = subprocess.Popen(args + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on (ws://\S+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.url = m.group(1)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Killer:
    """Kills the server's actors, found in its log.

    In-process actors of the kinds asked (all four by default, supervisors
    included) are killed through a worker's control socket (an untrappable
    in-process kill: no terminate), and with kind ``workers`` worker processes
    are SIGKILLed, at most one every WORKER_KILL_EVERY seconds — as are kills
    of a worker's ``connections`` supervisor (kind ``Supervisor``), which
    takes its worker down with it — so that the `workers` supervisor's
    restart intensity (5 in 5 s) holds."""

    WORKER_KILL_EVERY = 2.0

    def __init__(self, log_path: str, kinds: tuple[str, ...] | None, rng: random.Random) -> None:
        self.log_path = log_path
        self.kinds = set(kinds) if kinds else set(DEFAULT_KINDS)
        self.rng = rng
        self.pos = 0
        self.workers: dict[str, int] = {}        # control socket name -> worker pid
        self.kills: Counter = Counter()
        self._last_big = 0.0

    def _scan(self) -> None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.pos += end
        for line in data[:end].splitlines():
            worker = worker_of(line)
            if worker is not None:
                self.workers[worker[0]] = worker[1]

    def kill_one(self) -> None:
        self._scan()
        live = [(name, pid) for name, pid in self.workers.items() if _is_alive(pid)]
        if not live:
            return
        kinds = sorted(self.kinds)
        self.rng.shuffle(kinds)
        big_ok = time.monotonic() - self._last_big >= self.WORKER_KILL_EVERY
        for kind in kinds:
            if kind in ("workers", "Supervisor") and not big_ok:
                continue
            name, pid = self.rng.choice(live)
            if kind == "workers":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed = 1
            else:
                killed = len(control(name, {"op": "kill", "kind": kind, "limit": 1,
                                            "seed": self.rng.randrange(1 << 30)}).get("killed", ()))
            if killed:
                self.kills[kind] += killed
                if kind in ("workers", "Supervisor"):
                    self._last_big = time.monotonic()
                return


def _is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except OSError:
        return False


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.intact = 0
        self.corrupted = 0
        self.connections = 0
        self.connect_failures = 0
        self.closed: Counter = Counter()
        self.corruption_examples: list[str] = []


def _message(rng: random.Random, client: int, seq: int, size: int) -> str:
    head = f"{client}:{seq}:"
    body = " ".join(rng.choice(WORDS) for _ in range(size // 6 + 1))
    return (head + body)[:size]


async def _client(idx: int, url: str, deadline: float, stats: Stats, seed: int, max_messages: int) -> None:
    import websockets
    rng = random.Random(seed * 1000 + idx)
    seq = 0
    while time.monotonic() < deadline and stats.sent < max_messages:
        try:
            ws = await asyncio.wait_for(websockets.connect(url, max_size=None, open_timeout=10), 15)
        except Exception:
            stats.connect_failures += 1
            await asyncio.sleep(0.05)
            continue
        stats.connections += 1
        try:
            while time.monotonic() < deadline and stats.sent < max_messages:
                msg = _message(rng, idx, seq, STATS_SIZE)
                seq += 1
                await ws.send(msg)
                stats.sent += 1
                echo = await asyncio.wait_for(ws.recv(), 30)
                if echo == msg:
                    stats.intact += 1
                else:
                    stats.corrupted += 1
                    if len(stats.corruption_examples) < 5:
                        stats.corruption_examples.append(f"sent {msg[:60]!r}... got {str(echo)[:60]!r}...")
            await ws.close()
            stats.closed[1000] += 1
        except websockets.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            stats.closed[code] += 1
        except asyncio.TimeoutError:
            stats.closed["timeout"] += 1
            await ws.close()
        except OSError:
            stats.closed[1006] += 1


STATS_SIZE = 2000


async def _traffic(url: str, n: int, duration: float, seed: int, max_messages: int,
                   killer: Killer | None, interval: float | None) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + duration
    clients = [asyncio.create_task(_client(i, url, deadline, stats, seed, max_messages)) for i in range(n)]
    if killer is not None and interval is not None:
        # Warm up: kill only once every client has connected (or after 10 s).
        warm = time.monotonic() + 10
        while stats.connections < n and time.monotonic() < warm:
            await asyncio.sleep(0.05)
        while time.monotonic() < deadline and not all(c.done() for c in clients):
            await asyncio.sleep(interval)
            killer.kill_one()
    await asyncio.gather(*clients)
    return stats


async def _still_serving(url: str, within: float = 10.0) -> bool:
    """The server echoes again within ``within`` s of the last kill (a worker
    killed last may still be restarting: its queued connections were reset)."""
    import websockets
    deadline = time.monotonic() + within
    while True:
        try:
            async with websockets.connect(url, open_timeout=10) as ws:
                await ws.send("are you there " * 20)
                return await asyncio.wait_for(ws.recv(), 10) == "are you there " * 20
        except Exception:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    global STATS_SIZE
    STATS_SIZE = args.message_size
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    interval = _interval(args.kill_interval)
    kinds = tuple(args.kill) if args.kill else None
    server = None
    if args.url:
        host = urlsplit(args.url).hostname or ""
        if not (host == "localhost" or host.startswith("127.") or host == "::1"):
            print("wsup chaos: loopback servers only", file=sys.stderr)
            return 2
        url, log_path = args.url, args.server_log
        if interval is not None and not log_path:
            print("wsup chaos: --url with kills needs --server-log", file=sys.stderr)
            return 2
    else:
        log_path = args.log_file or os.path.join(tempfile.mkdtemp(prefix="wsup-chaos-"), "server.jsonl")
        server = ServerProcess(log_path, args.fault, args.server_arg)
        url = server.url
    killer = Killer(log_path, kinds, random.Random(seed)) if log_path and interval is not None else None
    t0 = time.monotonic()
    try:
        stats = asyncio.run(_traffic(url, args.connections, args.duration, seed, args.max_messages,
                                     killer, interval))
        serving = asyncio.run(_still_serving(url))
    finally:
        server_status = server.stop() if server is not None else None
    elapsed = time.monotonic() - t0
    summary: dict[str, Any] = {
        "url": url, "seed": seed, "seconds": round(elapsed, 1), "connections": args.connections,
        "messages_sent": stats.sent, "echoed_intact": stats.intact, "corrupted": stats.corrupted,
        "connections_opened": stats.connections, "connect_failures": stats.connect_failures,
        "closed_by_code": {str(k): v for k, v in sorted(stats.closed.items(), key=str)},
        "kills_by_kind": dict(killer.kills) if killer else {},
        "still_serving": serving, "server_exit_status": server_status, "log": log_path,
    }
    failures = []
    if stats.corrupted:
        failures.append(f"{stats.corrupted} corrupted echoes: {stats.corruption_examples}")
    if not serving:
        failures.append("the server stopped serving")
    if server_status not in (None, 0):
        failures.append(f"the server exited with status {server_status}")
    if log_path and os.path.exists(log_path):
        from wsup.tools import logs as wlogs
        parsed = wlogs.read_log(log_path, allow_partial_last=server is None)
        records = parsed.records
        summary["restarts"] = sum(1 for r in records if r.get("event") == "supervisor.child.restarted")
        summary["contexts_opened"] = sum(1 for r in records if r.get("event") == "compression.context.opened")
        summary["contexts_released"] = sum(1 for r in records if r.get("event") == "compression.context.released")
        summary["faults_injected"] = sum(1 for r in records if r.get("event") == "fault.injected")
        result = wlogs.check(records, parsed.lines, parsed.bad)
        summary["log_check"] = result.summary() if result.ok else f"{len(result.violations)} violations"
        failures += [str(v) for v in result.violations[:50]]
    summary["result"] = "FAIL" if failures else "ok"
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        width = max(len(k) for k in summary)
        for k, v in summary.items():
            print(f"{k:<{width}}  {v}")
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0
