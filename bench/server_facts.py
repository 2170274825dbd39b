"""Measure what a `wsup serve` costs on this machine, from the outside.

    .venv/bin/python bench/server_facts.py            # full run, ~8-10 min
    .venv/bin/python bench/server_facts.py --quick    # small N, < 1 min
    .venv/bin/python bench/server_facts.py --part 4   # one part only (1-4; repeatable)
    ... --keep-logs DIR                               # keep the servers' JSON logs

Every part starts its own server as a real subprocess,
``python -m wsup.cli serve --port 0 --log-file <tmp>``, reads its
"listening on ws://HOST:PORT" line, and at the end stops it with SIGTERM and
checks that it exits 0 and that no process of it is left (the members of the
process group led by the server's child that leads its own group, as
tests/test_cli.py finds them).  Leftovers are SIGKILLed by pid and reported.

Parts:
 1. connection setup: TCP connect -> 101 -> first echo, sequentially with
    no other connection open (median, p90), sequentially keeping them open
    (does it grow?), and 100 at once from a pool of 10 threads (connections/s);
 2. echo round trip on one connection, 32 B and 1 KiB text (median, p99);
 3. memory per connection: PSS summed over every server process
    (/proc/PID/smaps_rollup) at 0 and at N idle connections, processes per
    connection, and the CPU the idle server burns;
 4. the most concurrent idle connections the machine holds (server started
    with --max-connections 100000 --ping-interval off): open connections in
    steps, each step echoing on a sample; stop at the first failing step, at
    the cap, when MemAvailable nears 3 GiB, when pids run short, or when the
    opening budget (330 s) is spent.

The client is a raw socket with pre-built masked frames (like
tests/rawws.py), so it is not the bottleneck.  Prints a markdown table to
stdout, progress to stderr, and the server log's error-level records and
stderr lines, if any.  See docs/server-facts.md for results and meaning.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from supervisors import _platform  # noqa: E402
from wsup.tools.bench import kill_leftovers  # noqa: E402

ROWS: list[tuple] = []          # (part, measurement, n, value, spread, note)
PROBLEMS: list[str] = []        # leftovers, bad exit statuses, failures
SERVER_ERRORS: list[str] = []   # error-level log records and stderr lines of the servers
OBSERVATIONS: list[str] = []    # the server misbehaving under measurement (failed connections, ...)

MEM_FLOOR_KIB = 3 * 1024 * 1024     # stop part 4 before MemAvailable drops below 3 GiB
PID_MARGIN = 2000                   # ... or before fewer than this many pids are free
GiB = 1 << 30


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def ms(x: float) -> str:
    x *= 1000
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def add(part: str, what: str, n: int | str, value: str, spread: str = "", note: str = "") -> None:
    ROWS.append((part, what, n, value, spread, note))


# -- /proc ----------------------------------------------------------------------------


def meminfo_kib(key: str = "MemAvailable") -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def smaps_kib(pid: int) -> dict[str, int] | None:
    """Pss, Rss, Private_Clean, Private_Dirty ... of one process, in KiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return {line.split(":")[0]: int(line.split()[1]) for line in f if line.endswith("kB\n")}
    except OSError:
        return None


def pss_kib(pid: int) -> int | None:
    v = smaps_kib(pid)
    return None if v is None else v.get("Pss", 0)


def uss_kib(pid: int) -> int | None:
    """Memory only this process maps (what its exit would free)."""
    v = smaps_kib(pid)
    return None if v is None else v.get("Private_Clean", 0) + v.get("Private_Dirty", 0)


def tasks_in_use() -> int:
    """Threads machine-wide: what pid_max bounds."""
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[1])


def cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])   # utime + stime
    except (OSError, IndexError):
        return 0


def pid_max() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


# -- the server ------------------------------------------------------------------------


class ServerProcess:
    """`wsup serve` as a child process of this script."""

    def __init__(self, tmp: str, name: str, *args: str) -> None:
        self.name = name
        self.log_path = os.path.join(tmp, f"{name}.jsonl")
        self.stderr_path = os.path.join(tmp, f"{name}.stderr")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wsup.cli", "serve", "--port", "0", "--log-file", self.log_path, *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"listening on ws://(\S+):(\d+)\n", line)
        if not m:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"{name}: no readiness line: {line!r}; stderr: {self._stderr_text()[-500:]}")
        self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
        self.pgid = self._find_pgid()
        self.baseline = self.processes()

    def _find_pgid(self) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for p in _platform.children_of(self.proc.pid):
                if _platform.process_group_of(p) == p:
                    return p
            time.sleep(0.01)
        raise RuntimeError(f"{self.name}: no child of pid {self.proc.pid} leads its own process group")

    def processes(self) -> list[int]:
        """Every live process of the server: its actor system's group and the main process."""
        main = [self.proc.pid] if self.proc.poll() is None else []
        return main + _platform.live_group_members(self.pgid)

    def pss_kib(self) -> tuple[int, int]:
        """(summed PSS in KiB, processes counted)."""
        total = n = 0
        for pid in self.processes():
            v = pss_kib(pid)
            if v is not None:
                total += v
                n += 1
        return total, n

    def idle_cpu(self, seconds: float) -> tuple[float, float]:
        """CPU the server uses while nobody talks to it, in cores:
        (all its processes, the busiest one)."""
        pids = self.processes()
        before = {p: cpu_ticks(p) for p in pids}
        t0 = time.monotonic()
        time.sleep(seconds)
        took = time.monotonic() - t0
        hz = os.sysconf("SC_CLK_TCK")
        used = [(cpu_ticks(p) - before[p]) / hz / took for p in pids]
        return sum(used), max(used, default=0.0)

    def wait_processes(self, count: int, timeout: float = 60.0) -> float | None:
        """Wait until the server has ``count`` processes; seconds waited or None."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if len(self.processes()) == count:
                return time.monotonic() - t0
            time.sleep(0.05)
        return None

    def _stderr_text(self) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout: float = 180.0, during: callable = None) -> tuple[int | None, float]:
        """SIGTERM; returns (exit status, seconds to exit).  ``during`` runs
        while the server shuts down (e.g. answering close frames)."""
        pids = self.processes()
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        if during is not None:
            during()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            PROBLEMS.append(f"{self.name}: did not exit {timeout:.0f} s after SIGTERM; SIGKILLed")
            self.proc.kill()
            self.proc.wait()
        took = time.monotonic() - t0
        if rc not in (0, None):
            PROBLEMS.append(f"{self.name}: exit status {rc} after SIGTERM (expected 0)")
        deadline = time.monotonic() + 10
        left = _platform.live_group_members(self.pgid)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = _platform.live_group_members(self.pgid)
        stale = [p for p in pids if p != self.proc.pid and p not in left
                 and _platform.process_group_of(p) == self.pgid
                 and _platform.process_start_time(p) is not None]
        left += stale
        kill_leftovers(self.name, left, PROBLEMS)
        self.proc.stdout.close()
        self.stderr.close()
        self.collect_errors()
        return rc, took

    def collect_errors(self) -> None:
        try:
            with open(self.log_path, encoding="utf-8") as f:
                lines = f.readlines()
        except OSError:
            lines = []
        for n, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
            except ValueError:
                SERVER_ERRORS.append(f"{self.name} log line {n}: not JSON: {line[:200]!r}")
                continue
            if rec.get("level") in ("error", "critical"):
                SERVER_ERRORS.append(f"{self.name} log: {json.dumps(rec)[:600]}")
        warn = self.log_events("warning")
        if warn:
            SERVER_ERRORS.append(f"{self.name} log, warning-level events: {warn}")
        err = self._stderr_text().strip()
        if err:
            SERVER_ERRORS.append(f"{self.name} stderr ({len(err.splitlines())} lines): " + err[-1500:])

    def log_events(self, level: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        try:
            with open(self.log_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if level is None or rec.get("level") == level:
                        counts[rec.get("event")] = counts.get(rec.get("event"), 0) + 1
        except OSError:
            pass
        return counts


# -- the client ---------------------------------------------------------------------------

MASK = b"\x37\xfa\x21\x3d"


def masked_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = int.from_bytes(MASK * ((n + 3) // 4), "big") >> (8 * (-n % 4)) if n else 0
    body = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
    return head + MASK + body


def server_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, n) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 126, n)
    return head + payload


class Message:
    """A text message pre-built as the client sends it and as the echo comes back."""

    def __init__(self, size: int) -> None:
        payload = (b"0123456789abcdefghijklmnopqrstuvwxyz" * (size // 36 + 1))[:size]
        self.out = masked_frame(0x1, payload)
        self.back = server_frame(0x1, payload)


SMALL = Message(32)
KIB = Message(1024)
CLOSE = masked_frame(0x8, struct.pack("!H", 1000))
REQUEST = ("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {base64.b64encode(b'wsup-bench-key!!').decode()}\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode()


class ClientError(Exception):
    pass


class Client:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.buf = b""
        t0 = time.perf_counter()
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ClientError(f"connect: {exc!r}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock.sendall(REQUEST)
            while b"\r\n\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise ClientError("handshake: EOF before the response")
                self.buf += data
        except OSError as exc:
            self.sock.close()
            raise ClientError(f"handshake: {exc!r}") from None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if not status.startswith(b"HTTP/1.1 101"):
            self.sock.close()
            raise ClientError(f"handshake: {status.decode('latin-1')!r}")
        self.t_101 = time.perf_counter() - t0
        self.echo(SMALL)
        self.t_echo = time.perf_counter() - t0

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ClientError("echo: EOF")
            self.buf += data

    def _frame(self) -> bytes:
        """One whole (unmasked, server-sent) frame, header included."""
        self._fill(2)
        n, off = self.buf[1] & 0x7F, 2
        if n == 126:
            self._fill(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._fill(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._fill(off + n)
        frame, self.buf = self.buf[:off + n], self.buf[off + n:]
        return frame

    def echo(self, msg: Message) -> None:
        """Send the message and wait for its echo, answering pings meanwhile."""
        try:
            self.sock.sendall(msg.out)
            while True:
                frame = self._frame()
                opcode = frame[0] & 0x0F
                if opcode == 0x9:      # ping: pong with the same payload
                    self.sock.sendall(masked_frame(0xA, frame[2:]))
                elif opcode != 0xA:
                    break
        except OSError as exc:
            raise ClientError(f"echo: {exc!r}") from None
        if frame != msg.back:
            raise ClientError(f"echo: unexpected frame {frame[:16]!r}")

    def close(self, graceful: bool = True) -> None:
        if graceful:
            try:
                self.sock.settimeout(5)
                self.sock.sendall(CLOSE)
                while self.sock.recv(65536):
                    pass
            except OSError:
                pass
        self.sock.close()


def open_many(host: str, port: int, n: int, threads: int, stop: threading.Event | None = None,
              timeout: float = 30.0) -> tuple[list[Client], list[str], float]:
    """Open n connections from a pool; (clients, errors, seconds)."""
    clients: list[Client] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(_i: int) -> None:
        if stop is not None and stop.is_set():
            return
        try:
            c = Client(host, port, timeout=timeout)
        except ClientError as exc:
            with lock:
                errors.append(str(exc))
            return
        with lock:
            clients.append(c)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    return clients, errors, time.perf_counter() - t0


def close_all(clients: list[Client], graceful: bool = True) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda c: c.close(graceful), clients))


def answer_close_frames(clients: list[Client], timeout: float) -> tuple[int, int]:
    """While the server shuts down: answer every close frame (1001) with
    ours and close the socket.  (answered, ended without a close frame)"""
    sel = selectors.DefaultSelector()
    for c in clients:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
    answered = eof = 0
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            c.buf += data
            if data and not (len(c.buf) >= 2 and c.buf[0] & 0x0F == 0x8):
                c.buf = b""      # not a close frame (a ping, say): skip it
                continue
            if data:
                try:
                    c.sock.send(CLOSE)
                except OSError:
                    pass
                answered += 1
            else:
                eof += 1
            sel.unregister(c.sock)
            c.sock.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return answered, eof


# -- the parts ------------------------------------------------------------------------------


def part1(tmp: str, quick: bool) -> None:
    n_seq = 20 if quick else 100
    n_conc = 20 if quick else 100
    progress(f"1. connection setup: {n_seq} sequential (alone, then kept open), "
             f"{n_conc} concurrent (10 threads)")
    sp = ServerProcess(tmp, "part1")
    try:
        warm = [Client(sp.host, sp.port) for _ in range(3)]
        close_all(warm)
        sp.wait_processes(len(sp.baseline), timeout=30)
        # a) each connection alone: open, echo, close, wait until its processes are gone
        t101, techo, teardown = [], [], []
        for _ in range(n_seq):
            c = Client(sp.host, sp.port)
            t101.append(c.t_101)
            techo.append(c.t_echo)
            t0 = time.monotonic()
            c.close()
            gone = sp.wait_processes(len(sp.baseline), timeout=30)
            if gone is not None:
                teardown.append(time.monotonic() - t0)
        add("1", "setup, sequential, 0 other connections: connect -> 101", n_seq, ms(pct(t101, .5)),
            "p90 " + ms(pct(t101, .9)))
        add("1", "setup, sequential, 0 other connections: connect -> 101 -> first echo", n_seq,
            ms(pct(techo, .5)), "p90 " + ms(pct(techo, .9)), "each closed, and its 2 processes gone, "
            "before the next")
        if teardown:
            add("1", "teardown: client close 1000 -> both processes gone", len(teardown),
                ms(pct(teardown, .5)), "p90 " + ms(pct(teardown, .9)))
        # b) kept open: does setup grow with the number of open connections?
        clients = [Client(sp.host, sp.port) for _ in range(n_seq)]
        techo = [c.t_echo for c in clients]
        k = max(1, n_seq // 10)
        add("1", f"setup, sequential, all {n_seq} kept open: first {k} vs last {k}", n_seq,
            f"{ms(pct(techo[:k], .5))} -> {ms(pct(techo[-k:], .5))}", f"p90 of all {ms(pct(techo, .9))}",
            f"medians at 0..{k - 1} and {n_seq - k}..{n_seq - 1} connections already open")
        close_all(clients)
        sp.wait_processes(len(sp.baseline), timeout=60)
        # c) concurrently from a pool
        clients, errors, took = open_many(sp.host, sp.port, n_conc, 10)
        techo = [c.t_echo for c in clients]
        add("1", f"setup rate, {n_conc} at once from 10 threads", n_conc,
            f"{len(clients) / took:.1f} conn/s", f"{took:.1f} s total",
            f"per connection median {ms(pct(techo, .5))}, p90 {ms(pct(techo, .9))}"
            + (f"; {len(errors)} failed: {errors[0]}" if errors else ""))
        if errors:
            OBSERVATIONS.append(f"part 1: {len(errors)} of {n_conc} concurrent connections failed: {errors[:3]}")
        close_all(clients)
        sp.wait_processes(len(sp.baseline), timeout=60)
    finally:
        rc, took = sp.stop()
    add("1", "server stop (SIGTERM -> exit), no connections", 1, f"{took:.1f} s", "", f"exit status {rc}")


def part2(tmp: str, quick: bool) -> None:
    n = 200 if quick else 2000
    progress(f"2. echo round trips: {n} x 32 B and {n} x 1 KiB on one connection")
    sp = ServerProcess(tmp, "part2")
    try:
        c = Client(sp.host, sp.port)
        for msg, label in ((SMALL, "32 B"), (KIB, "1 KiB")):
            for _ in range(min(100, n // 10)):
                c.echo(msg)
            xs = []
            for _ in range(n):
                t0 = time.perf_counter()
                c.echo(msg)
                xs.append(time.perf_counter() - t0)
            add("2", f"echo round trip, {label} text", n, ms(pct(xs, .5)), "p99 " + ms(pct(xs, .99)),
                f"p90 {ms(pct(xs, .9))}, max {ms(max(xs))}; {1 / (sum(xs) / n):.0f} msg/s")
        c.close()
    finally:
        sp.stop()


def part3(tmp: str, quick: bool) -> None:
    n = 20 if quick else 200
    progress(f"3. memory: PSS with 0 and with {n} idle connections")
    # keepalive off, as in part 4: idle connections here do not answer pings
    sp = ServerProcess(tmp, "part3", "--max-connections", str(max(1000, 2 * n)), "--ping-interval", "off")
    try:
        # one connection opened and closed, so the base is measured warm
        close_all([Client(sp.host, sp.port)])
        sp.wait_processes(len(sp.baseline), timeout=30)
        time.sleep(1)
        pss0, procs0 = sp.pss_kib()
        avail0 = meminfo_kib()
        cpu0, _ = sp.idle_cpu(3 if quick else 10)
        clients, errors, took = open_many(sp.host, sp.port, n, 10)
        if errors:
            OBSERVATIONS.append(f"part 3: {len(errors)} of {n} connections failed: {errors[:3]}")
        time.sleep(2)
        pss1, procs1 = sp.pss_kib()
        avail1 = meminfo_kib()
        k = len(clients)
        cpu1, busiest = sp.idle_cpu(3 if quick else 10)
        bad = []
        for c in clients[:: max(1, k // 20)]:
            try:
                c.echo(SMALL)
            except ClientError as exc:
                bad.append(str(exc))
        if bad:
            OBSERVATIONS.append(f"part 3: {len(bad)} sampled echoes failed on idle connections: {bad[:3]}")
        add("3", "server PSS, 0 connections", procs0, f"{pss0 / 1024:.1f} MiB", "",
            f"{procs0} processes: main, admin, logger, application, supervisors, listener")
        add("3", f"server PSS, {k} idle connections", procs1, f"{pss1 / 1024:.1f} MiB", "",
            f"{procs1} processes" + (f"; {len(bad)} sampled echoes failed" if bad else ""))
        add("3", "PSS per connection", k, f"{(pss1 - pss0) / k / 1024:.2f} MiB", "",
            f"(PSS at {k} - PSS at 0) / {k}; MemAvailable fell {(avail0 - avail1) / k / 1024:.2f} MiB "
            "per connection (machine-wide, noisy)")
        add("3", f"idle CPU of the server: 0 -> {k} idle connections", k,
            f"{cpu0 * 100:.1f}% -> {cpu1 * 100:.1f}% of a core",
            f"{(cpu1 - cpu0) / k * 100:.3f}% per connection",
            f"busiest single process {busiest * 100:.1f}%; --ping-interval off")
        add("3", "processes per connection", k, f"{(procs1 - procs0) / k:.2f}", "",
            "ConnectionSupervisor + ConnectionActor")
        new = [p for p in sp.processes() if p not in sp.baseline]
        per = sorted(pss_kib(p) or 0 for p in new)
        uss = sorted(uss_kib(p) or 0 for p in new)
        if per:
            add("3", "PSS of one connection process (supervisor or actor)", len(per),
                f"{pct(per, .5) / 1024:.2f} MiB", f"p90 {pct(per, .9) / 1024:.2f} MiB",
                f"USS (private pages only) median {pct(uss, .5) / 1024:.2f} MiB, "
                f"p90 {pct(uss, .9) / 1024:.2f} MiB")
        close_all(clients)
    finally:
        sp.stop()


def part4(tmp: str, quick: bool) -> None:
    steps = [50, 100] if quick else [250, 500, 750, 1000, 1500, 2000, 3000, 4000]
    budget = 30.0 if quick else 330.0     # seconds of opening connections, over all steps
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    progress(f"4. most concurrent connections: steps {steps}, opening budget {budget:.0f} s, "
             f"RLIMIT_NOFILE {soft} -> {hard}")
    sp = ServerProcess(tmp, "part4", "--max-connections", "100000", "--ping-interval", "off")
    clients: list[Client] = []
    last_good = None   # (step, MiB per connection, server processes)
    why = f"cap reached ({steps[-1]} connections)"
    pss0, _ = sp.pss_kib()
    procs0 = len(sp.processes())
    opening = 0.0
    try:
        for step in steps:
            more = step - len(clients)
            if pid_max() - tasks_in_use() - 2 * more < PID_MARGIN:
                why = (f"step {step} not tried: {2 * more} more processes would leave fewer than "
                       f"{PID_MARGIN} of pid_max {pid_max()} free")
                break
            stop = threading.Event()
            low: list[str] = []
            t_step = time.monotonic()

            def watch() -> None:
                while not stop.is_set():
                    avail = meminfo_kib()
                    free_pids = pid_max() - tasks_in_use()
                    if avail < MEM_FLOOR_KIB + 256 * 1024:
                        low.append(f"MemAvailable {avail / 1024 / 1024:.2f} GiB, near the 3 GiB floor")
                    elif free_pids < PID_MARGIN:
                        low.append(f"only {free_pids} free pids of {pid_max()}")
                    elif opening + time.monotonic() - t_step > budget:
                        low.append(f"opening budget ({budget:.0f} s) spent")
                    if low:
                        stop.set()
                    stop.wait(0.2)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            progress(f"   step {step}: opening {more} more")
            new, errors, took = open_many(sp.host, sp.port, more, 10, stop=stop)
            stop.set()
            watcher.join()
            opening += took
            clients += new
            rate = len(new) / took if took else 0.0
            setup = [c.t_echo for c in new]
            setup_note = (f"{rate:.1f} conn/s while opening, setup median {ms(pct(setup, .5))}, "
                          f"max {ms(max(setup))}" if setup else "")
            pss, nproc = sp.pss_kib()
            per = (pss - pss0) / max(1, len(clients)) / 1024
            if errors or low or len(clients) < step:
                cpu, busiest = sp.idle_cpu(3)
                why = (f"step {step} failed with {len(clients)} open: "
                       + (f"{len(errors)} connection(s) failed (first: {errors[0]})" if errors else "")
                       + ("; " if errors and low else "") + (low[0] + ", stopped opening" if low else ""))
                add("4", f"step {step}: FAILED", nproc, f"{len(clients)} open", f"{per:.2f} MiB/conn",
                    f"{setup_note}; idle CPU {cpu * 100:.0f}% of a core (busiest process "
                    f"{busiest * 100:.0f}%); MemAvailable {meminfo_kib() / 1024 / 1024:.1f} GiB; {why}")
                progress(f"   {why}")
                if errors:
                    OBSERVATIONS.append(f"part 4: {why}")
                break
            # echo on a sample of old and new connections
            sample = clients[:: max(1, len(clients) // 50)]
            lat, bad = [], []
            for c in sample:
                c.sock.settimeout(10)
                t0 = time.perf_counter()
                try:
                    c.echo(SMALL)
                    lat.append(time.perf_counter() - t0)
                except ClientError as exc:
                    bad.append(str(exc))
            if bad:
                why = f"step {step}: {len(bad)} of {len(sample)} sampled echoes failed (first: {bad[0]})"
                OBSERVATIONS.append(f"part 4: {why}")
                add("4", f"step {step}: FAILED", nproc, f"{len(clients)} open", f"{per:.2f} MiB/conn", why)
                break
            cpu, busiest = sp.idle_cpu(3 if quick else 5)
            last_good = (step, per, nproc)
            progress(f"   step {step} ok: {nproc} processes, PSS {pss / 1024 / 1024:.2f} GiB "
                     f"({per:.2f} MiB/conn), {setup_note}, idle CPU {cpu * 100:.0f}%, "
                     f"MemAvailable {meminfo_kib() / 1024 / 1024:.1f} GiB")
            add("4", f"step {step}: all open and echoing", nproc, f"{pss / 1024 / 1024:.2f} GiB PSS",
                f"{per:.2f} MiB/conn",
                f"{setup_note}; sampled echo ({len(sample)}) median {ms(pct(lat, .5))}, max {ms(max(lat))}; "
                f"idle CPU {cpu * 100:.0f}% of a core (busiest process {busiest * 100:.0f}%); "
                f"MemAvailable {meminfo_kib() / 1024 / 1024:.1f} GiB")
        if last_good:
            add("4", "most concurrent connections held (last good step)", last_good[0],
                f"{last_good[0]}", f"{last_good[1]:.2f} MiB/conn",
                f"{last_good[2]} server processes ({(last_good[2] - procs0) / last_good[0]:.2f} per "
                f"connection); next: {why}")
        else:
            add("4", "most concurrent connections held", 0, "none", "", why)
        progress(f"   stopping the server with {len(clients)} connections open")
        result: dict = {}
        rc, took = sp.stop(timeout=300, during=lambda: result.update(
            answered=answer_close_frames(clients, timeout=240)))
        answered, eof = result.get("answered", (0, 0))
        add("4", f"server stop with {len(clients)} connections (SIGTERM -> exit)", 1, f"{took:.1f} s", "",
            f"exit status {rc}; {answered} got a close frame (1001) and answered it, "
            f"{eof} were dropped without one")
        if eof:
            OBSERVATIONS.append(
                f"part 4: SIGTERM with {len(clients)} connections open: {eof} were dropped without a close "
                f"frame (no graceful 1001); the server took {took:.1f} s and exited {rc}; log: "
                f"{sp.log_events().get('connection.closed', 0)} connection.closed records")
        clients = []
    finally:
        if clients:
            close_all(clients, graceful=False)
        if sp.proc.poll() is None:
            sp.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small N, under a minute")
    ap.add_argument("--part", type=int, choices=(1, 2, 3, 4), action="append",
                    help="run only this part (repeatable)")
    ap.add_argument("--keep-logs", metavar="DIR", help="write the servers' logs here (default: a temporary "
                    "directory, removed at the end)")
    args = ap.parse_args()
    parts = args.part or [1, 2, 3, 4]
    _platform.become_subreaper()   # orphans of the server come back to us, not to init
    t0 = time.monotonic()
    if args.keep_logs:
        os.makedirs(args.keep_logs, exist_ok=True)
    with (contextlib.nullcontext(args.keep_logs) if args.keep_logs
          else tempfile.TemporaryDirectory(prefix="server_facts_")) as tmp:
        for p in parts:
            try:
                {1: part1, 2: part2, 3: part3, 4: part4}[p](tmp, args.quick)
            except Exception as exc:  # report, go on with the next part
                PROBLEMS.append(f"part {p} aborted: {exc!r}")
                progress(f"part {p} aborted: {exc!r}")
    while True:  # reap anything re-parented to us
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    import platform
    print(f"wsup server facts, {time.strftime('%Y-%m-%d')}: Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"parts {','.join(map(str, parts))}{', --quick' if args.quick else ''}; "
          f"run took {time.monotonic() - t0:.0f} s\n")
    print("| # | measurement | n | value | spread | note |\n|---|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(str(x) for x in r) + " |")
    if SERVER_ERRORS:
        print("\nServer log (error-level records, warning counts, stderr):\n" + "\n".join(f"- {e}" for e in SERVER_ERRORS))
    if OBSERVATIONS:
        print("\nObservations:\n" + "\n".join(f"- {o}" for o in OBSERVATIONS))
    if PROBLEMS:
        print("\nProblems:\n" + "\n".join(f"- {p}" for p in PROBLEMS))
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
