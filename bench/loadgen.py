"""A cheap closed-loop WebSocket load generator: one process, raw non-blocking
sockets on one epoll, no WebSocket library.

    python bench/loadgen.py echo  --port P --conns 10 --duration 5 [--no-compression]
    python bench/loadgen.py setup --port P --workers 4 --duration 5
    python bench/loadgen.py hold  --port P --server-pid PID --step 100 --cap 5000 --budget 120

Each mode prints one JSON object on stdout (progress, if any, on stderr).

Why it is cheap (a library client costs as much CPU as the server it drives):

* the handshake offers ``permessage-deflate; client_no_context_takeover;
  server_no_context_takeover``, so every message it sends can be compressed
  once, up front, and masked once, up front (a fixed masking key: servers
  cannot tell).  Sending is one ``send()`` of prepared bytes;
* with ``server_no_context_takeover`` agreed, each reply is inflated with a
  fresh decompressor (otherwise with one per connection), and then compared
  byte for byte with the message sent: every echo is verified;
* echo's measured loop (after the handshakes, which stay here) runs in C,
  ``bench/echoloop.c``, built with ``cc`` on first use: the same frames, the
  same checks, ~15 us of CPU per compressed echo on this machine (mostly the
  send/recv system calls) against ~30 us for the Python loop (``--engine
  python``, the fallback without a compiler).  A generator that costs as much
  as the server cannot share a 2-core machine with a server that uses both.

Modes:

``echo``   N connections, each with exactly one message in flight (closed
           loop).  After ``--warmup`` seconds, counts the echoes completed
           during ``--duration`` seconds and their latencies (send -> whole
           reply received).  Reports msgs/s, p50/p90/p99/max latency, and the
           CPU this process used during the same window (getrusage), and, with
           ``--server-pid``, the CPU of the server's process tree.
``setup``  ``--workers`` concurrent workers each loop: connect, handshake,
           close handshake (client close frame, the server's close frame, its
           TCP close), again.  Reports handshakes/s in the window.
``hold``   opens idle connections in steps of ``--step``; every new one echoes
           one message, and a sample of the older ones echoes again; after each
           step the server's PSS (sum of Pss in /proc/PID/smaps_rollup over the
           server process and all its descendants) is measured.  Stops at
           ``--cap`` connections, when ``--budget`` seconds are spent, when
           MemAvailable would fall under ``--mem-floor-gib``, or at the first
           failure.  Also the memory-per-connection measurement (one step).

Only the standard library (and cc with zlib's header for --engine c); the /proc helpers are used by wsup/tools/bench.py too.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import errno
import hashlib
import json
import math
import os
import random
import resource
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import deque

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OFFERS = {
    # the cheap one: every message compressed once up front, every reply inflated fresh
    "nct": "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
    # what websockets, Node's ws and Chromium offer: the server keeps its zlib contexts
    # for the connection's life (the realistic memory cost).  Our frames are still
    # compressed once: a client may always choose not to refer to earlier messages.
    "takeover": "permessage-deflate; client_max_window_bits",
}
MASK_KEY = b"\x37\xfa\x21\x3d"
TAIL = b"\x00\x00\xff\xff"
READ_SIZE = 262144

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR, select.EPOLLHUP


# -- /proc helpers (also used by wsup/tools/bench.py) ------------------------------------------


def _stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> list[int]:
    """``root`` (if alive) and every live descendant, by parent pid."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat(int(name))
        if fields is None or fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    fields = _stat(root)
    out = [] if fields is None or fields[0] in (b"Z", b"X") else [root]
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pids: list[int], children: bool = False) -> float:
    """utime + stime of these processes, in seconds (exited ones count 0);
    with ``children``, also the CPU of their children that exited and were
    waited for (cutime + cstime): the tree's total, counting processes that
    came and went."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
            if children:
                total += int(fields[13]) + int(fields[14])
    return total / hz


class TreeCPU:
    """CPU of a process tree over a window, including processes born or
    ended within it (their time reaches the parent's cutime when reaped)."""

    def __init__(self, root: int | None) -> None:
        self.root = root
        self.start = cpu_seconds(descendants(root), children=True) if root else 0.0

    def used(self) -> float | None:
        if not self.root:
            return None
        return cpu_seconds(descendants(self.root), children=True) - self.start


def pss_kib(pids: list[int]) -> tuple[int, int]:
    """(sum of Pss over these processes in KiB, processes counted)."""
    total = n = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        n += 1
                        break
        except OSError:
            pass
    return total, n


def mem_available_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def machine_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    return v[0] + v[1] + v[2] + v[5] + v[6], v[7]


def run_delay() -> float:
    """Seconds this process has spent runnable but waiting for a CPU."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def measured_window(g: "Generator", state: dict, t_start: float, args: argparse.Namespace) -> dict:
    """Run the generator until the warm-up after *t_start* is over, then for one measured window
    (``state["measuring"]`` true while it lasts); what the machine did in it (``Window.end``)."""
    g.run_until(lambda: False, t_start + args.warmup)
    window = Window(args.server_pid)
    state["measuring"] = True
    g.run_until(lambda: False, window.w0 + args.duration)
    state["measuring"] = False
    return window.end()


class Window:
    """What the machine did during a measured window: this process's CPU
    and run-queue wait, the server tree's CPU, and everything else's."""

    def __init__(self, server_pid: int | None) -> None:
        self.tree = TreeCPU(server_pid)
        self.m0 = machine_ticks()
        self.d0 = run_delay()
        self.sys0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        self.c0 = own_cpu()
        self.w0 = time.perf_counter()

    def end(self) -> dict:
        wall = time.perf_counter() - self.w0
        gen = own_cpu() - self.c0
        gen_sys = resource.getrusage(resource.RUSAGE_SELF).ru_stime - self.sys0
        wait = run_delay() - self.d0
        server = self.tree.used()
        m1 = machine_ticks()
        hz = os.sysconf("SC_CLK_TCK")
        busy = (m1[0] - self.m0[0]) / hz
        steal = (m1[1] - self.m0[1]) / hz
        other = busy - gen - (server or 0.0)
        return {"seconds": round(wall, 3), "gen_cpu": round(gen / wall, 3), "gen_wait": round(wait / wall, 3),
                "gen_sys_share": round(gen_sys / gen, 3) if gen > 0 else None,
                "server_cpu": round(server / wall, 3) if server is not None else None,
                "other_cpu": round(max(0.0, other) / wall, 3), "steal": round(steal / wall, 3)}


def own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(sorted_xs: list[float], q: float) -> float | None:
    if not sorted_xs:
        return None
    return sorted_xs[min(len(sorted_xs) - 1, max(0, math.ceil(q * len(sorted_xs)) - 1))]


# -- frames --------------------------------------------------------------------------------


def masked(payload: bytes, key: bytes = MASK_KEY) -> bytes:
    n = len(payload)
    if not n:
        return b""
    k = int.from_bytes(key * ((n + 3) // 4), "big") >> (8 * (-n % 4))
    return (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + MASK_KEY + masked(payload)


WORDS = ("the quick brown fox jumps over lazy dog server client message frame actor process "
         "socket deflate window echo latency budget event loop thread channel supervisor "
         "connection handshake upgrade websocket text binary close ping pong data stream "
         "buffer chunk offset length header payload mask opcode final reserved extension").split()


def make_payload(size: int, variant: int) -> bytes:
    """``size`` bytes of compressible ASCII text (1 KiB deflates to ~385 bytes);
    variants differ from their first bytes on."""
    rnd = random.Random(variant)
    parts = [f"{variant:06d}"]
    n = len(parts[0])
    while n < size:
        w = rnd.choice(WORDS)
        parts.append(w)
        n += len(w) + 1
    return " ".join(parts).encode()[:size]


class Message:
    """One text message, prepared as the client sends it."""

    __slots__ = ("payload", "plain", "deflated", "compressed_size")

    def __init__(self, payload: bytes, wbits: int = 15) -> None:
        self.payload = payload
        self.plain = client_frame(0x1, payload)
        # zlib refuses an 8-bit raw window; a 9-bit deflater's matches fit in 256 bytes
        c = zlib.compressobj(6, zlib.DEFLATED, -max(9, wbits), 8)
        data = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        data = data[:-4]
        self.compressed_size = len(data)
        self.deflated = client_frame(0x1, data, rsv1=True)


def make_messages(size: int, count: int = 16, wbits: int = 15) -> list[Message]:
    return [Message(make_payload(size, i), wbits) for i in range(count)]


CLOSE_FRAME = client_frame(0x8, struct.pack("!H", 1000))


def parse_extensions(value: str) -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for ext in value.split(","):
        parts = [p.strip() for p in ext.split(";") if p.strip()]
        if not parts:
            continue
        params: dict[str, str | None] = {}
        for p in parts[1:]:
            k, eq, v = p.partition("=")
            params[k.strip().lower()] = v.strip().strip('"') if eq else None
        out[parts[0].lower()] = params
    return out


# -- connections ----------------------------------------------------------------------------

CONNECTING, HANDSHAKE, OPEN, CLOSING, DONE = range(5)


class Conn:
    __slots__ = ("gen", "sock", "fd", "state", "rbuf", "wbuf", "key", "t_start", "t_open", "deadline",
                 "deflate", "fresh_inflate", "inflater", "messages", "frag_op", "frag_rsv1", "frags",
                 "msg", "t_sent", "sent_close", "got_close", "tag", "mask", "lat_sum", "lat_n", "history")

    def __init__(self, gen: "Generator", tag: object = None) -> None:
        self.gen = gen
        self.tag = tag
        self.state = CONNECTING
        self.rbuf = b""
        self.wbuf = b""
        self.deflate = False
        self.messages = gen.messages
        self.fresh_inflate = False
        self.inflater = None
        self.frag_op = None
        self.frag_rsv1 = False
        self.frags: list[bytes] = []
        self.msg: Message | None = None
        self.t_sent = 0.0
        self.lat_sum, self.lat_n = 0.0, 0     # echo: this connection's latencies in the window
        # with context takeover: the last messages inflated, ≥ 32 KiB (the C loop's starting window)
        self.history: deque[bytes] = deque(maxlen=32768 // max(1, gen.size) + 1)
        self.t_open = None
        self.sent_close = False
        self.got_close = False
        self.key = base64.b64encode(os.urandom(16))
        self.t_start = time.perf_counter()
        self.deadline = self.t_start + gen.handshake_timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fd = self.sock.fileno()
        self.mask = EPOLLOUT
        gen.conns[self.fd] = self
        if gen.source:
            self.sock.bind((gen.source, 0))
        err = self.sock.connect_ex((gen.host, gen.port))
        if err not in (0, errno.EINPROGRESS):
            del gen.conns[self.fd]
            self.sock.close()
            self.state = DONE
            gen.fail(self, f"connect: {os.strerror(err)}")
            return
        gen.ep.register(self.fd, EPOLLOUT)

    # -- writing --

    def send(self, data: bytes) -> None:
        if self.state == DONE:
            return
        if self.wbuf:
            self.wbuf += data
            return
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.abort(f"send: {exc!r}")
            return
        if n < len(data):
            self.wbuf = data[n:]
            self._want(EPOLLIN | EPOLLOUT)

    def _flush(self) -> None:
        try:
            n = self.sock.send(self.wbuf)
        except BlockingIOError:
            return
        except OSError as exc:
            self.abort(f"send: {exc!r}")
            return
        self.wbuf = self.wbuf[n:]
        if not self.wbuf:
            self._want(EPOLLIN)

    def _want(self, mask: int) -> None:
        if mask != self.mask and self.state != DONE:
            self.mask = mask
            self.gen.ep.modify(self.fd, mask)

    # -- events --

    def on_event(self, ev: int) -> None:
        if self.state == CONNECTING:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.abort(f"connect: {os.strerror(err)}")
                return
            self.state = HANDSHAKE
            self.mask = EPOLLIN
            self.gen.ep.modify(self.fd, EPOLLIN)
            ext = f"Sec-WebSocket-Extensions: {OFFERS[self.gen.offer]}\r\n" if self.gen.compress else ""
            self.send((f"GET {self.gen.path} HTTP/1.1\r\nHost: {self.gen.host}:{self.gen.port}\r\n"
                       f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
                       f"Sec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
            return
        if ev & EPOLLOUT and self.wbuf:
            self._flush()
        if ev & (EPOLLIN | EPOLLERR | EPOLLHUP):
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if self.state == CLOSING:
                    self.finish()
                else:
                    self.abort(f"recv: {exc!r}")
                return
            if not data:
                if self.state == CLOSING or self.got_close:
                    self.finish()
                else:
                    self.abort("EOF from the server" + (" during the handshake" if self.state == HANDSHAKE else ""))
                return
            self.rbuf = self.rbuf + data if self.rbuf else data
            if self.state == HANDSHAKE:
                self._handshake()
            if self.state in (OPEN, CLOSING):
                self._frames()

    def _handshake(self) -> None:
        head, sep, rest = self.rbuf.partition(b"\r\n\r\n")
        if not sep:
            if len(self.rbuf) > 65536:
                self.abort("handshake: response head too long")
            return
        self.rbuf = rest
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            self.abort(f"handshake: {lines[0]!r}")
            return
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            self.abort("handshake: wrong Sec-WebSocket-Accept")
            return
        exts = parse_extensions(headers.get("sec-websocket-extensions", ""))
        if set(exts) - {"permessage-deflate"}:
            self.abort(f"handshake: unexpected extensions {sorted(exts)}")
            return
        if "permessage-deflate" in exts:
            if not self.gen.compress:
                self.abort("handshake: permessage-deflate accepted but not offered")
                return
            params = exts["permessage-deflate"]
            cmwb = params.get("client_max_window_bits")
            if cmwb is not None:
                if not (cmwb.isdigit() and 8 <= int(cmwb) <= 15) or self.gen.offer != "takeover":
                    self.abort(f"handshake: client_max_window_bits={cmwb} not acceptable")
                    return
                self.messages = self.gen.messages_for(int(cmwb))
            self.deflate = True
            self.fresh_inflate = "server_no_context_takeover" in params
            if not self.fresh_inflate:
                self.inflater = zlib.decompressobj(-15)
        elif self.gen.compress and self.gen.require_deflate:
            self.abort("handshake: permessage-deflate offered but not accepted")
            return
        self.state = OPEN
        self.t_open = time.perf_counter()
        self.gen.on_open(self)

    def _frames(self) -> None:
        buf = self.rbuf
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            off = pos + 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                off = pos + 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                off = pos + 10
            if b1 & 0x80:
                self.abort("protocol: masked frame from the server")
                return
            if end - off < n:
                break
            payload = buf[off:off + n]
            pos = off + n
            self._frame(b0, payload)
            if self.state == DONE:
                return
        self.rbuf = buf[pos:] if pos else buf

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        fin = b0 & 0x80
        rsv1 = bool(b0 & 0x40)
        if opcode >= 0x8:
            if opcode == 0x9:
                self.send(client_frame(0xA, payload))
            elif opcode == 0x8:
                self.got_close = True
                if not self.sent_close:
                    self.sent_close = True
                    self.send(client_frame(0x8, payload[:2]))
                    if self.state == OPEN:
                        self.gen.on_server_close(self, payload)
                self.state = CLOSING
            return
        if opcode == 0x0:
            if self.frag_op is None:
                self.abort("protocol: continuation without a start")
                return
            self.frags.append(payload)
            if not fin:
                return
            opcode, rsv1 = self.frag_op, self.frag_rsv1
            payload = b"".join(self.frags)
            self.frag_op, self.frags = None, []
        elif not fin:
            self.frag_op, self.frag_rsv1, self.frags = opcode, rsv1, [payload]
            return
        if rsv1:
            if not self.deflate:
                self.abort("protocol: RSV1 without permessage-deflate")
                return
            d = zlib.decompressobj(-15) if self.fresh_inflate else self.inflater
            try:
                payload = d.decompress(payload + TAIL)
            except zlib.error as exc:
                self.abort(f"inflate: {exc}")
                return
            if not self.fresh_inflate:
                self.history.append(payload)
        if self.state == OPEN:
            self.gen.on_message(self, opcode, payload)

    # -- ending --

    def close(self) -> None:
        """Start the closing handshake."""
        if self.state == OPEN:
            self.state = CLOSING
            self.sent_close = True
            self.deadline = time.perf_counter() + self.gen.close_timeout
            self.send(CLOSE_FRAME)

    def finish(self) -> None:
        if self.state == DONE:
            return
        clean = self.got_close
        self._drop()
        self.gen.on_closed(self, clean)

    def abort(self, why: str) -> None:
        if self.state == DONE:
            return
        self._drop()
        self.gen.fail(self, why)

    def _drop(self) -> None:
        self.state = DONE
        self.gen.conns.pop(self.fd, None)
        try:
            self.gen.ep.unregister(self.fd)
        except (OSError, ValueError):
            pass
        self.sock.close()


class Generator:
    """The epoll loop and bookkeeping shared by the modes."""

    def __init__(self, host: str, port: int, compress: bool, size: int,
                 handshake_timeout: float = 30.0, close_timeout: float = 10.0,
                 require_deflate: bool = True, offer: str = "nct") -> None:
        self.host, self.port, self.compress, self.offer, self.size = host, port, compress, offer, size
        self.source: str | None = None      # a local address to connect from (hold: 127.0.0.x)
        self.path = "/"                     # the request path (bench/broadcast.py: /sub, /pub)
        self.handshake_timeout, self.close_timeout = handshake_timeout, close_timeout
        self.require_deflate = require_deflate
        self.messages = make_messages(size)
        self._by_wbits = {15: self.messages}
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.errors: list[str] = []
        self.failures = 0
        self.mismatches = 0
        self.verified = 0
        self.unclean_closes = 0
        self.server_closes = 0
        self.opened = 0
        self.cut = 0
        self.later: list = []    # callables to run from the loop (not from inside a callback)

    # hooks (the modes replace them)
    def on_open(self, conn: Conn) -> None:
        self.opened += 1

    def on_message(self, conn: Conn, opcode: int, payload: bytes) -> None:
        pass

    def on_closed(self, conn: Conn, clean: bool) -> None:
        if not clean:
            self.unclean_closes += 1

    def on_server_close(self, conn: Conn, payload: bytes) -> None:
        self.server_closes += 1
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        self.note(f"server closed a connection: code {code} {payload[2:].decode('utf-8', 'replace')!r}")

    def fail(self, conn: Conn, why: str) -> None:
        self.failures += 1
        self.note(why)
        self.on_failed(conn)

    def on_failed(self, conn: Conn) -> None:
        pass

    def note(self, why: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(why)

    def messages_for(self, wbits: int) -> list[Message]:
        if wbits not in self._by_wbits:
            self._by_wbits[wbits] = make_messages(self.size, len(self.messages), wbits)
        return self._by_wbits[wbits]

    # echo bookkeeping
    def send_message(self, conn: Conn, i: int) -> None:
        m = conn.messages[i % len(conn.messages)]
        conn.msg = m
        conn.t_sent = time.perf_counter()
        conn.send(m.deflated if conn.deflate else m.plain)

    def check_echo(self, conn: Conn, opcode: int, payload: bytes) -> bool:
        m = conn.msg
        conn.msg = None
        if m is None:
            self.mismatches += 1
            self.note("an unexpected message from the server")
            return False
        if opcode != 0x1 or payload != m.payload:
            self.mismatches += 1
            self.note(f"echo mismatch: opcode {opcode}, {len(payload)} bytes {payload[:24]!r}..., "
                      f"expected {len(m.payload)} bytes {m.payload[:24]!r}...")
            return False
        self.verified += 1
        return True

    def poll(self, timeout: float) -> None:
        conns = self.conns
        for fd, ev in self.ep.poll(timeout):
            c = conns.get(fd)
            if c is not None:
                c.on_event(ev)

    def check_deadlines(self) -> None:
        now = time.perf_counter()
        for c in list(self.conns.values()):
            if c.state in (CONNECTING, HANDSHAKE) and now > c.deadline:
                c.abort(f"handshake: no response within {self.handshake_timeout:.0f} s")
            elif c.state == CLOSING and c.sent_close and now > c.deadline:
                c.finish()

    def run_until(self, done, deadline: float, tick: float = 0.05) -> bool:
        """Run the loop until ``done()`` or the deadline (perf_counter)."""
        last = time.perf_counter()
        while not done():
            now = time.perf_counter()
            if now >= deadline:
                return False
            self.poll(min(tick, deadline - now))
            if self.later:
                later, self.later = self.later, []
                for fn in later:
                    fn()
            if now - last > 0.2:
                self.check_deadlines()
                last = now
        return True

    def open(self, count: int, concurrency: int, deadline: float, tag: object = None,
             echo_first: bool = False) -> list[Conn]:
        """Open ``count`` connections, ``concurrency`` at a time; with
        ``echo_first`` each echoes one message before it counts as open.
        Returns those that made it (fewer on failure or deadline)."""
        ready: list[Conn] = []
        pending: set[Conn] = set()
        started = 0
        failed = [0]
        prev_open, prev_msg, prev_failed = self.on_open, self.on_message, self.on_failed

        def on_open(c: Conn) -> None:
            if echo_first:
                self.send_message(c, len(ready) + len(pending))
            else:
                pending.discard(c)
                ready.append(c)

        def on_message(c: Conn, opcode: int, payload: bytes) -> None:
            if c in pending and self.check_echo(c, opcode, payload):
                pending.discard(c)
                ready.append(c)
            elif c in pending:
                pending.discard(c)
                failed[0] += 1
                c.close()

        def on_failed(c: Conn) -> None:
            if c in pending:
                pending.discard(c)
                failed[0] += 1

        self.on_open, self.on_message, self.on_failed = on_open, on_message, on_failed
        try:
            while len(ready) + failed[0] < count:
                while started < count and len(pending) < concurrency and not failed[0]:
                    c = Conn(self, tag)
                    started += 1
                    if c.state != DONE:
                        pending.add(c)
                    else:
                        failed[0] += 1
                if failed[0] and not pending:
                    break
                now = time.perf_counter()
                if now >= deadline:
                    break
                self.poll(min(0.05, deadline - now))
                self.check_deadlines()
        finally:
            self.on_open, self.on_message, self.on_failed = prev_open, prev_msg, prev_failed
        self.cut = len(pending)      # still opening at the deadline: dropped, not failed
        for c in list(pending):
            c._drop()
        return ready

    def close_all(self, conns: list[Conn], timeout: float) -> None:
        for c in conns:
            c.deadline = time.perf_counter() + timeout
            c.close()
        deadline = time.perf_counter() + timeout + 0.5
        self.run_until(lambda: all(c.state == DONE for c in conns), deadline)
        for c in conns:
            if c.state != DONE:
                c.finish()


# -- modes ------------------------------------------------------------------------------------


def _server_pids(server_pid: int | None) -> list[int]:
    return descendants(server_pid) if server_pid else []


# -- the echo loop in C (--engine c) ---------------------------------------------------------

ECHOLOOP_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echoloop.c")
_echoloop: list = []


def echoloop() -> "ctypes.CDLL | None":
    """bench/echoloop.c, compiled once per version of its source (cached under the temporary
    directory); None where there is no C compiler or no zlib header."""
    if _echoloop:
        return _echoloop[0]
    lib = None
    try:
        with open(ECHOLOOP_SRC, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()[:16]
        path = os.path.join(tempfile.gettempdir(), f"wsup-echoloop-{digest}.so")
        if not os.path.exists(path):
            tmp = f"{path}.{os.getpid()}"
            r = subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", ECHOLOOP_SRC,
                                "-lz", "-o", tmp], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"loadgen: cannot build {ECHOLOOP_SRC}: {r.stderr.strip()[:300]}", file=sys.stderr)
                raise OSError(r.stderr)
            os.replace(tmp, path)
        lib = ctypes.CDLL(path)
    except OSError:
        lib = None
    else:
        P, I, L, D, Z = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_double, ctypes.c_size_t
        lib.el_new.restype = P
        lib.el_new.argtypes = [I, ctypes.POINTER(I), ctypes.POINTER(I), ctypes.POINTER(I), I,
                               ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(Z),
                               ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(Z),
                               ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(Z)]
        lib.el_start.argtypes = [P]
        lib.el_run.argtypes, lib.el_run.restype = [P, D, I, I], I
        for name in ("el_lat_n", "el_verified", "el_mismatches"):
            getattr(lib, name).argtypes, getattr(lib, name).restype = [P], L
        lib.el_lat.argtypes, lib.el_lat.restype = [P], ctypes.POINTER(D)
        lib.el_conn.argtypes = [P, I, ctypes.POINTER(I), ctypes.POINTER(L), ctypes.POINTER(D),
                                ctypes.POINTER(ctypes.c_char_p)]
        lib.el_conn.restype = I
        lib.el_free.argtypes = [P]
    _echoloop.append(lib)
    return lib


def _echo_window_c(lib: "ctypes.CDLL", g: "Generator", conns: list["Conn"],
                   args: argparse.Namespace) -> tuple[dict, list[float], int]:
    """The echo mode's warm-up, measured window and drain, in bench/echoloop.c: the same
    messages, the same verification, the same clock (perf_counter is CLOCK_MONOTONIC).
    Afterwards the connections are the Python side's again, to close."""
    sets: dict[tuple[int, bool], int] = {}
    frames: list[bytes] = []
    payloads: list[bytes] = []
    set_of: list[int] = []
    for c in conns:
        key = (id(c.messages), c.deflate)
        if key not in sets:
            sets[key] = len(sets)
            frames.extend(m.deflated if c.deflate else m.plain for m in c.messages)
            payloads.extend(m.payload for m in c.messages)
        set_of.append(sets[key])
    n = len(conns)
    ints = ctypes.c_int * n
    arr = lambda xs: ((ctypes.c_char_p * len(xs))(*xs), (ctypes.c_size_t * len(xs))(*map(len, xs)))
    fr, frl = arr(frames)
    pl, pll = arr(payloads)
    hist, histl = arr([b"".join(c.history)[-32768:] for c in conns])
    modes = ints(*[(0 if not c.deflate else 1 if c.fresh_inflate else 2) for c in conns])
    st = lib.el_new(n, ints(*[c.fd for c in conns]), modes, ints(*set_of), len(g.messages),
                    fr, frl, pl, pll, hist, histl)
    if not st:
        raise MemoryError("el_new")
    try:
        t_start = time.perf_counter()
        lib.el_start(st)
        lib.el_run(st, t_start + args.warmup, 0, 1)
        window = Window(args.server_pid)
        lib.el_run(st, window.w0 + args.duration, 1, 1)
        load = window.end()
        lost = lib.el_run(st, time.perf_counter() + 10, 0, 0)
        k = lib.el_lat_n(st)
        lat = lib.el_lat(st)[:k] if k else []
        g.verified += lib.el_verified(st)
        g.mismatches += lib.el_mismatches(st)
        inflight, cn, csum, why = ctypes.c_int(), ctypes.c_long(), ctypes.c_double(), ctypes.c_char_p()
        for i, c in enumerate(conns):
            state = lib.el_conn(st, i, ctypes.byref(inflight), ctypes.byref(cn), ctypes.byref(csum),
                                ctypes.byref(why))
            c.lat_n, c.lat_sum = cn.value, csum.value
            c.msg = c.messages[0] if inflight.value else None     # lost: still in flight
            reason = (why.value or b"").decode("utf-8", "replace")
            if state == 1:                                          # a mismatch: close, as the Python loop does
                g.note(reason)
                c.close()
            elif state == 2:
                c.abort(reason)
    finally:
        lib.el_free(st)
    return load, lat, lost


def run_echo(args: argparse.Namespace) -> dict:
    g = Generator(args.host, args.port, args.compress, args.size, offer=args.offer)
    t0 = time.perf_counter()
    conns = g.open(args.conns, args.open_concurrency, t0 + args.open_budget, echo_first=True)
    open_s = time.perf_counter() - t0
    out: dict = {"mode": "echo", "conns": args.conns, "compress": args.compress, "size": args.size,
                 "open_seconds": round(open_s, 3), "opened": len(conns),
                 "deflate_negotiated": sum(c.deflate for c in conns),
                 "compressed_size": g.messages[0].compressed_size}
    if len(conns) < args.conns:
        out.update(ok=False, error=f"opened {len(conns)} of {args.conns} connections in {open_s:.1f} s "
                                    f"({g.cut} still opening at the deadline): {g.errors[:3]}", errors=g.errors)
        g.close_all(conns, args.close_timeout)
        return out
    lib = echoloop() if args.engine == "c" and not any(c.rbuf for c in conns) else None
    out["engine"] = "c" if lib is not None else "python"
    verified_before = g.verified
    if lib is not None:
        load, lat, lost = _echo_window_c(lib, g, conns, args)
        spids = _server_pids(args.server_pid)
        return _echo_result(g, conns, args, out, load, lat, lost, spids, verified_before)
    lat: list[float] = []
    state = {"measuring": False, "sending": True, "count": 0, "i": 0}

    def on_message(c: Conn, opcode: int, payload: bytes) -> None:
        t = time.perf_counter()
        sent = c.t_sent
        if not g.check_echo(c, opcode, payload):
            c.close()
            return
        if state["measuring"]:
            lat.append(t - sent)
            c.lat_sum += t - sent
            c.lat_n += 1
        if state["sending"]:
            state["i"] += 1
            g.send_message(c, state["i"])

    g.on_message = on_message
    t_start = time.perf_counter()
    for i, c in enumerate(conns):
        g.send_message(c, i)
    load = measured_window(g, state, t_start, args)
    spids = _server_pids(args.server_pid)
    state["sending"] = False
    # Let the messages in flight come back (and be verified) before closing.
    g.run_until(lambda: all(c.msg is None or c.state != OPEN for c in conns), time.perf_counter() + 10)
    lost = sum(1 for c in conns if c.msg is not None)
    return _echo_result(g, conns, args, out, load, lat, lost, spids, verified_before)


def _echo_result(g: "Generator", conns: list["Conn"], args: argparse.Namespace, out: dict, load: dict,
                 lat: list[float], lost: int, spids: list[int], verified_before: int) -> dict:
    ports = [c.sock.getsockname()[1] if args.per_conn and c.state == OPEN else None for c in conns]
    g.close_all(conns, args.close_timeout)
    wall = load["seconds"]
    lat.sort()
    out.update(load)
    out.update(
        ok=g.failures == 0 and g.mismatches == 0 and lost == 0,
        messages=len(lat), msgs_per_s=round(len(lat) / wall, 1),
        p50_ms=_ms(pct(lat, 0.50)), p90_ms=_ms(pct(lat, 0.90)), p99_ms=_ms(pct(lat, 0.99)),
        max_ms=_ms(lat[-1] if lat else None),
        verified=g.verified - verified_before, mismatches=g.mismatches, failures=g.failures, lost=lost,
        # per connection (its local port): echoes in the window and their mean latency, for
        # telling apart the connections of different server processes (bench/worker_split.py)
        per_conn=[[port, c.lat_n, _ms(c.lat_sum / c.lat_n) if c.lat_n else None]
                  for port, c in zip(ports, conns)] if args.per_conn else None,
        server_closes=g.server_closes, unclean_closes=g.unclean_closes, server_processes=len(spids),
        errors=g.errors)
    return out


def run_setup(args: argparse.Namespace) -> dict:
    g = Generator(args.host, args.port, args.compress, args.size, close_timeout=5.0, offer=args.offer)
    state = {"measuring": False, "running": True, "count": 0}
    lat: list[float] = []

    def on_open(c: Conn) -> None:
        if state["measuring"]:
            state["count"] += 1
            lat.append(c.t_open - c.t_start)
        c.close()

    def next_conn() -> None:
        if state["running"]:
            Conn(g)

    def on_closed(c: Conn, clean: bool) -> None:
        if not clean:
            g.unclean_closes += 1
        g.later.append(next_conn)

    def on_failed(c: Conn) -> None:
        g.later.append(lambda: time.sleep(0.01))   # do not spin against a refusing server
        g.later.append(next_conn)

    g.on_open, g.on_closed, g.on_failed = on_open, on_closed, on_failed
    t_start = time.perf_counter()
    for _ in range(args.workers):
        Conn(g)
    load = measured_window(g, state, t_start, args)
    state["running"] = False
    g.run_until(lambda: not g.conns, time.perf_counter() + 40)
    left = len(g.conns)
    for c in list(g.conns.values()):
        c.finish()
    wall = load["seconds"]
    lat.sort()
    return {"mode": "setup", "workers": args.workers, "compress": args.compress, "ok": g.failures == 0,
            **load, "handshakes": state["count"],
            "handshakes_per_s": round(state["count"] / wall, 1),
            "p50_ms": _ms(pct(lat, 0.5)), "p99_ms": _ms(pct(lat, 0.99)),
            "failures": g.failures, "unclean_closes": g.unclean_closes, "unfinished": left, "errors": g.errors}


def run_hold_spread(args: argparse.Namespace) -> dict:
    """hold with ``--procs N``: N generator processes, each from its own
    127.0.0.x source address (its own ephemeral ports) and with its own
    descriptor limit, hold cap/N each; this one measures the server once they
    all have opened, then has them close."""
    n = args.procs
    base_kib, base_n = pss_kib(descendants(args.server_pid))
    t_start = time.perf_counter()
    kids = []
    for i in range(n):
        cmd = [sys.executable, os.path.abspath(__file__), "hold", "--host", args.host, "--port", str(args.port),
               "--server-pid", str(args.server_pid), "--cap", str(args.cap // n + (1 if i < args.cap % n else 0)),
               "--step", str(max(1, args.step // n)), "--budget", str(args.budget), "--sample", str(args.sample),
               "--mem-floor-gib", str(args.mem_floor_gib), "--offer", args.offer, "--size", str(args.size),
               "--source", f"127.0.0.{i + 1}", "--wait-before-close",
               "--compression" if args.compress else "--no-compression"]
        kids.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    opened = [json.loads(k.stdout.readline() or "{}") for k in kids]   # each: held, before closing
    if args.settle:
        time.sleep(args.settle)
    kib, nproc = pss_kib(descendants(args.server_pid))
    held = sum(o.get("held", 0) for o in opened)
    for k in kids:
        k.stdin.write("close\n")
        k.stdin.flush()
    finals = [json.loads(k.stdout.readline() or "{}") for k in kids]
    for k in kids:
        k.wait(timeout=args.close_timeout + 60)
    stops = [f.get("stop", "?") for f in finals]
    stop = "cap" if all(s == "cap" for s in stops) else next(s for s in stops if s != "cap")
    return {"mode": "hold", "compress": args.compress, "cap": args.cap, "budget": args.budget, "procs": n,
            "ok": all(f.get("ok") for f in finals), "held": held, "stop": stop, "stops": stops,
            "base_pss_kib": base_kib, "base_processes": base_n, "pss_kib": kib, "processes": nproc,
            "per_conn_kib": round((kib - base_kib) / held, 1) if held else None,
            "seconds": round(time.perf_counter() - t_start, 1),
            "deflate_negotiated": sum(f.get("deflate_negotiated", 0) for f in finals),
            "failures": sum(f.get("failures", 0) for f in finals),
            "mismatches": sum(f.get("mismatches", 0) for f in finals),
            "verified": sum(f.get("verified", 0) for f in finals),
            "gen_cpu": round(sum(f.get("gen_cpu", 0) for f in finals), 3),
            "errors": [e for f in finals for e in f.get("errors", [])][:5]}


def run_hold(args: argparse.Namespace) -> dict:
    if args.procs > 1:
        return run_hold_spread(args)
    g = Generator(args.host, args.port, args.compress, args.size, handshake_timeout=60.0, offer=args.offer)
    g.source = args.source
    t_start = time.perf_counter()
    deadline = t_start + args.budget
    floor = int(args.mem_floor_gib * 1024 * 1024)
    base_kib, base_n = pss_kib(descendants(args.server_pid))
    steps = []
    held: list[Conn] = []
    stop = "cap"
    rnd = random.Random(1)
    per_conn_kib = None
    while len(held) < args.cap:
        avail = mem_available_kib()
        want = min(args.step, args.cap - len(held))
        if per_conn_kib is not None and avail - want * per_conn_kib < floor:
            want = int((avail - floor) // per_conn_kib) if per_conn_kib > 0 else want
            if want <= 0:
                stop = f"MemAvailable floor ({args.mem_floor_gib:g} GiB)"
                break
        now = time.perf_counter()
        if now >= deadline:
            stop = f"time budget ({args.budget:g} s)"
            break
        t0 = now
        new = g.open(want, args.open_concurrency, deadline, echo_first=True)
        took = time.perf_counter() - t0
        held.extend(new)
        failed = g.failures + g.mismatches
        # the older connections still work?
        sample = rnd.sample(held[:-len(new)] if new else held, min(args.sample, len(held) - len(new)))
        sample_ok = _echo_sample(g, sample, time.perf_counter() + 30)
        if args.settle:
            g.run_until(lambda: False, time.perf_counter() + args.settle)
        spids = descendants(args.server_pid)
        kib, nproc = pss_kib(spids)
        if held:
            per_conn_kib = max(1.0, (kib - base_kib) / len(held))
        steps.append({"open": len(held), "pss_kib": kib, "processes": nproc,
                      "per_conn_kib": round((kib - base_kib) / len(held), 1) if held else None,
                      "open_seconds": round(took, 2), "opened_per_s": round(len(new) / took, 1) if took else None,
                      "sample_ok": sample_ok, "mem_available_kib": mem_available_kib()})
        if args.progress:
            print(f"hold: {len(held)} open, PSS {kib / 1024:.0f} MiB ({nproc} processes), "
                  f"{len(new) / took if took else 0:.0f} conn/s", file=sys.stderr, flush=True)
        if len(new) < want or failed or not sample_ok:
            if len(new) < want and not failed and sample_ok and time.perf_counter() >= deadline:
                stop = f"time budget ({args.budget:g} s), mid-step"
            else:
                stop = f"failure: {g.errors[:2]}"
            break
    held = [c for c in held if c.state == OPEN]
    gen_cpu = own_cpu()
    elapsed = time.perf_counter() - t_start
    if args.wait_before_close:     # a part of run_hold_spread: report, wait for "close"
        print(json.dumps({"held": len(held), "stop": stop}), flush=True)
        sys.stdin.readline()
    t_close = time.perf_counter()
    g.close_all(held, args.close_timeout)
    close_s = time.perf_counter() - t_close
    good = [s for s in steps if s["sample_ok"]]
    return {"mode": "hold", "compress": args.compress, "cap": args.cap, "budget": args.budget,
            "ok": True, "held": len(held), "stop": stop, "base_pss_kib": base_kib, "base_processes": base_n,
            "steps": steps, "per_conn_kib": good[-1]["per_conn_kib"] if good else None,
            "seconds": round(elapsed, 1), "close_seconds": round(close_s, 1),
            "deflate_negotiated": sum(c.deflate for c in held),
            "failures": g.failures, "mismatches": g.mismatches, "unclean_closes": g.unclean_closes,
            "verified": g.verified, "gen_cpu": round(gen_cpu / max(elapsed, 1e-9), 3), "errors": g.errors}


def _echo_sample(g: Generator, conns: list[Conn], deadline: float) -> bool:
    if not conns:
        return True
    waiting = set(conns)
    ok = [True]
    prev = g.on_message

    def on_message(c: Conn, opcode: int, payload: bytes) -> None:
        if c in waiting:
            waiting.discard(c)
            if not g.check_echo(c, opcode, payload):
                ok[0] = False

    g.on_message = on_message
    try:
        for i, c in enumerate(conns):
            g.send_message(c, i)
        g.run_until(lambda: not waiting or any(c.state != OPEN for c in waiting), deadline)
    finally:
        g.on_message = prev
    return ok[0] and not waiting


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


# -- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("echo", "setup", "hold"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--compression", dest="compress", action=argparse.BooleanOptionalAction, default=True,
                   help="offer permessage-deflate (default on; the server must accept it)")
    p.add_argument("--offer", choices=sorted(OFFERS), default="nct",
                   help="the permessage-deflate offer: nct (default: " + OFFERS["nct"] + ") or takeover ("
                        + OFFERS["takeover"] + ", as browsers)")
    p.add_argument("--size", type=int, default=1024, help="message size in bytes (default 1024)")
    p.add_argument("--conns", type=int, default=10, help="echo: connections (default 10)")
    p.add_argument("--duration", type=float, default=5.0, help="echo/setup: measured seconds (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="echo/setup: seconds before measuring (default 1)")
    p.add_argument("--open-concurrency", type=int, default=16, help="handshakes in flight while opening")
    p.add_argument("--open-budget", type=float, default=120.0, help="echo: seconds allowed to open (default 120)")
    p.add_argument("--close-timeout", type=float, default=30.0, help="seconds for the closing handshakes")
    p.add_argument("--workers", type=int, default=4, help="setup: concurrent workers (default 4)")
    p.add_argument("--server-pid", type=int, default=None,
                   help="the server's main pid: its process tree's CPU (echo/setup) and PSS (hold)")
    p.add_argument("--step", type=int, default=100, help="hold: connections per step (default 100)")
    p.add_argument("--cap", type=int, default=5000, help="hold: stop at this many (default 5000)")
    p.add_argument("--budget", type=float, default=120.0, help="hold: seconds (default 120)")
    p.add_argument("--sample", type=int, default=20, help="hold: older connections echoing per step")
    p.add_argument("--settle", type=float, default=0.0, help="hold: seconds to wait before measuring PSS")
    p.add_argument("--mem-floor-gib", type=float, default=3.0, help="hold: keep MemAvailable above this")
    p.add_argument("--procs", type=int, default=1,
                   help="hold: spread over this many generator processes, each from its own 127.0.0.x "
                        "source address and with its own descriptor limit (default 1)")
    p.add_argument("--source", default=None, help="hold: connect from this local address")
    p.add_argument("--wait-before-close", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, action="append", default=None,
                   help="pin this process to this CPU (repeatable)")
    p.add_argument("--nice", type=int, default=None,
                   help="run at this nice value (negative needs root/CAP_SYS_NICE): so that other load "
                        "on the machine does not keep the generator waiting for its CPU")
    p.add_argument("--progress", action="store_true", help="progress on stderr")
    p.add_argument("--engine", choices=("c", "python"), default="c",
                   help="echo: the measured loop in C (bench/echoloop.c, built on first use; ~10x less "
                        "CPU per echo) or in Python; c falls back to python without a compiler")
    p.add_argument("--per-conn", action="store_true",
                   help="echo: also report each connection's echoes and mean latency, by local port")
    args = p.parse_args(argv)
    nice_error = None
    if args.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        except OSError as exc:
            nice_error = str(exc)
    if args.mode == "hold" and not args.server_pid:
        p.error("hold needs --server-pid")
    if args.cpu:
        os.sched_setaffinity(0, set(args.cpu))
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    return report({"echo": run_echo, "setup": run_setup, "hold": run_hold}[args.mode](args), nice_error)


def report(result: dict, nice_error: str | None) -> int:
    """Print a run's result as one JSON line (with where and how nicely it ran); the exit status."""
    result["affinity"] = sorted(os.sched_getaffinity(0))
    result["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    if nice_error:
        result["nice_error"] = nice_error
    print(json.dumps(result), flush=True)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
