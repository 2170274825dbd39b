"""The broadcast load generator: one publisher, N subscribers with permessage-deflate,
every delivery inflated and verified, the delay from publish to receipt.

    python bench/broadcast.py --port P --subs 1000 [--size 256] [--window 4] [--duration 5]
                              [--server-pid PID] [--cpu 1] [--progress]

The server speaks the protocol of ``bench/broadcast_app.py`` (wsup) and of
``bench/peers.py websockets --broadcast``: a connection to ``/sub`` is a
subscriber (it echoes what it gets, as a liveness check); every message on a
``/pub`` connection goes to every subscriber.  Prints one JSON object on
stdout, as ``bench/loadgen.py``'s modes (progress, if asked, on stderr).

How it works (the standard library only; one process, raw non-blocking
sockets on one epoll, the handshakes and the framing of ``bench/loadgen.py``):

* Opens ``--subs`` subscribers to ``/sub`` with the offer browsers make,
  ``permessage-deflate; client_max_window_bits`` (context takeover both ways:
  the server keeps one deflate stream per subscriber, and every subscriber
  here one ``zlib.decompressobj`` for the connection's life).  Each echoes one
  message before it counts as open (so its subscription is in place).  Then
  one publisher to ``/pub`` (uncompressed: one inflate per publish at the
  server, against N deflates).
* The publisher keeps at most ``--window`` messages published and not yet
  received by every subscriber (closed loop): each time the oldest one has
  reached everyone, the next goes out.  A message is ``--size`` bytes of
  compressible text: ``SEQ(10) MONOTONIC_NS(19) `` then one of 16 fixed
  texts; the timestamp is ``time.monotonic_ns()`` just before the send.
* Every subscriber reads with one ``recv`` per readiness (all the frames it
  holds), inflates every frame in its own stream and compares the result with
  the exact bytes published under the sequence number it expects next: every
  delivery is verified (content, and order: nothing skipped, repeated or
  reordered).  The receipt time is taken once per ``recv``.
* After ``--warmup`` seconds of publishing, a window of ``--duration``
  seconds: deliveries/s (messages × subscribers received), publishes/s, the
  delay publish → receipt over every delivery in the window (p50/p90/p99/max),
  the delay to the last subscriber per message ("fan-out"), the mean compressed
  payload per delivery ("wire_bytes_per_delivery"), this process's
  CPU and run-queue wait and the server tree's CPU (``loadgen.Window``).
  Then publishing stops, everything still in flight is awaited and verified,
  and the connections close cleanly.

One process: 10,000 subscribers need 10,001 descriptors (the soft
RLIMIT_NOFILE is raised to the hard one, 20,000 here) and as many ephemeral
ports of 127.0.0.1 (~28,000).  No ``--procs``: ``wsup bench`` pins the
generator to one core, where more processes would not buy it any CPU; its
CPU is measured, and a run where it was ≥ 90% busy is marked.
"""

from __future__ import annotations

import argparse
import array
import os
import resource
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen as lg  # noqa: E402

TAIL = lg.TAIL
RING = 1024                 # sequence numbers kept (payload, publish time, receipts left): > window
MASK = RING - 1
HEADER = 31                 # b"%010d %019d " % (seq, t_ns)
READ_SIZE = 65536
FIN_RSV1_TEXT = 0xC1


class Sub:
    """A subscriber in the measured loop: what the hot path touches."""

    __slots__ = ("conn", "recv", "inflate", "rbuf", "next")

    def __init__(self, conn: "lg.Conn") -> None:
        self.conn = conn
        self.recv = conn.sock.recv
        self.inflate = conn.inflater.decompress if conn.inflater is not None else None
        self.rbuf = conn.rbuf
        conn.rbuf = b""
        self.next = 0


def fillers(size: int) -> list[bytes]:
    body = max(0, size - HEADER)
    return [lg.make_payload(body, 100 + i) if body else b"" for i in range(16)]


class Broadcast:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.g = lg.Generator(args.host, args.port, True, args.size, handshake_timeout=60.0,
                              close_timeout=args.close_timeout, offer="takeover")
        self.fill = fillers(args.size)
        self.ring: list[bytes] = [b""] * RING
        self.tpub = [0] * RING
        self.remaining = [0] * RING
        self.subs: dict[int, Sub] = {}
        self.pub: lg.Conn | None = None
        self.n = 0
        self.published = 0          # sequence numbers handed out (the next one to publish)
        self.done = 0               # messages received by every subscriber (they complete in order)
        self.delivered = 0
        self.recvs = 0
        self.wire = 0               # payload bytes of the frames received (compressed), all of them
        self.publishing = False
        self.measuring = False
        self.lat = array.array("q")      # publish -> receipt, ns, every delivery in the window
        self.fanout = array.array("q")   # publish -> receipt by the last subscriber, ns, per message
        self.failed = False
        self.mismatches = 0
        self.stray = 0                   # data frames on the publisher's connection

    # -- setup --

    def open(self) -> tuple[list["lg.Conn"], str | None]:
        a, g = self.args, self.g
        t0 = time.perf_counter()
        deadline = t0 + a.open_budget
        g.path = "/sub"
        conns: list[lg.Conn] = []
        while len(conns) < a.subs:
            step = min(a.subs - len(conns), 1000)
            new = g.open(step, a.open_concurrency, deadline, echo_first=True)
            conns.extend(new)
            if a.progress:
                print(f"broadcast: {len(conns)} subscribers open ({time.perf_counter() - t0:.1f} s)",
                      file=sys.stderr, flush=True)
            if len(new) < step:
                return conns, (f"opened {len(conns)} of {a.subs} subscribers in {time.perf_counter() - t0:.1f} s "
                               f"({g.cut} still opening at the deadline): {g.errors[:3]}")
        no_deflate = sum(1 for c in conns if not c.deflate or c.inflater is None)
        if no_deflate:
            return conns, f"{no_deflate} subscribers without permessage-deflate with context takeover"
        g.path, g.compress = "/pub", False
        pubs = g.open(1, 1, deadline)
        g.path, g.compress = "/sub", True
        if not pubs:
            return conns, f"the publisher did not open: {g.errors[:3]}"
        self.pub = pubs[0]
        return conns, None

    # -- the hot path --

    def publish(self) -> None:
        seq = self.published
        i = seq & MASK
        t = time.monotonic_ns()
        payload = b"%010d %019d " % (seq, t) + self.fill[seq & 15]
        self.ring[i] = payload
        self.tpub[i] = t
        self.remaining[i] = self.n
        self.published = seq + 1
        self.pub.send(lg.client_frame(0x1, payload))

    def completed(self, seq: int, t: int) -> None:
        """Every subscriber has message ``seq``: the next one(s) may go."""
        self.done = seq + 1
        if self.measuring:
            self.fanout.append(t - self.tpub[seq & MASK])
        window = self.args.window
        while self.publishing and self.published - self.done < window:
            self.publish()

    def run(self, until_ns: int) -> None:
        """The loop until ``until_ns`` (monotonic), a failure, or (not
        publishing) everything published was received everywhere."""
        poll = self.g.ep.poll
        subs = self.subs
        mono = time.monotonic_ns
        ring, tpub, remaining = self.ring, self.tpub, self.remaining
        lat = self.lat.append
        measuring = self.measuring
        delivered = recvs = wire = 0
        try:
            while not self.failed:
                now = mono()
                if now >= until_ns or (not self.publishing and self.done == self.published):
                    break
                for fd, ev in poll(min(0.05, (until_ns - now) / 1e9)):
                    s = subs.get(fd)
                    if s is None:
                        self.other_event(fd, ev)
                        continue
                    try:
                        data = s.recv(READ_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        self.fail(s, f"recv: {exc!r}")
                        break
                    t = mono()
                    recvs += 1
                    if not data:
                        self.fail(s, "EOF from the server")
                        break
                    if s.rbuf:
                        data = s.rbuf + data
                        s.rbuf = b""
                    pos, end = 0, len(data)
                    while end - pos >= 2:
                        b0 = data[pos]
                        n = data[pos + 1]
                        if n < 126:
                            off = pos + 2
                        elif n == 126:
                            if end - pos < 4:
                                break
                            n = (data[pos + 2] << 8) | data[pos + 3]
                            off = pos + 4
                        else:
                            if end - pos < 10 or n & 0x80:
                                if n & 0x80:
                                    self.fail(s, "protocol: masked frame from the server")
                                break
                            n = int.from_bytes(data[pos + 2:pos + 10], "big")
                            off = pos + 10
                        e = off + n
                        if e > end:
                            break
                        pos = e
                        wire += n
                        if b0 == FIN_RSV1_TEXT:
                            try:
                                payload = s.inflate(data[off:e] + TAIL)
                            except zlib.error as exc:
                                self.fail(s, f"inflate: {exc}")
                                break
                        else:
                            payload = self.other_frame(s, b0, data[off:e])
                            if payload is None:
                                if self.failed:
                                    break
                                continue
                        seq = s.next
                        i = seq & MASK
                        if payload != ring[i]:
                            self.mismatch(s, seq, payload)
                            break
                        s.next = seq + 1
                        delivered += 1
                        if measuring:
                            lat(t - tpub[i])
                        left = remaining[i] - 1
                        remaining[i] = left
                        if not left:
                            self.completed(seq, t)
                    if pos < end and not self.failed:
                        s.rbuf = data[pos:]
                    if self.failed:
                        break
        finally:
            self.delivered += delivered
            self.recvs += recvs
            self.wire += wire

    # -- the rest --

    def other_frame(self, s: Sub, b0: int, payload: bytes) -> bytes | None:
        """A frame other than one whole compressed text message: a ping (answered), an
        uncompressed text message (returned), anything else a failure."""
        opcode, fin, rsv1 = b0 & 0x0F, b0 & 0x80, b0 & 0x40
        if opcode == 0x9:
            s.conn.send(lg.client_frame(0xA, payload))
            return None
        if opcode == 0xA:
            return None
        if opcode == 0x1 and fin and not rsv1:
            return payload
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self.fail(s, f"the server closed a subscriber: code {code} {payload[2:80]!r}")
        else:
            self.fail(s, f"unexpected frame: first byte {b0:#04x}, {len(payload)} bytes "
                         "(fragmented or binary broadcasts are not expected)")
        return None

    def other_event(self, fd: int, ev: int) -> None:
        c = self.g.conns.get(fd)
        if c is not None:
            c.on_event(ev)          # the publisher: its socket as loadgen.Conn handles it
        if self.pub is not None and self.pub.state != lg.OPEN and not self.failed:
            self.failed = True
            self.g.note(f"the publisher's connection ended: {self.g.errors[-1:]}")

    def mismatch(self, s: Sub, seq: int, payload: bytes) -> None:
        self.mismatches += 1
        head = payload[:HEADER]
        got = head.split(b" ")[0]
        if got.isdigit() and int(got) != seq:
            why = f"out of order: message {int(got)} where {seq} was due"
        else:
            exp = self.ring[seq & MASK]
            why = (f"content: {len(payload)} bytes {payload[:40]!r}..., expected {len(exp)} bytes "
                   f"{exp[:40]!r}... (message {seq})")
        self.fail(s, f"broadcast mismatch on a subscriber: {why}")

    def fail(self, s: Sub, why: str) -> None:
        self.failed = True
        self.g.failures += 1
        self.g.note(why)


def run_broadcast(args: argparse.Namespace) -> dict:
    b = Broadcast(args)
    g = b.g
    t0 = time.perf_counter()
    conns, error = b.open()
    open_s = time.perf_counter() - t0
    out: dict = {"mode": "broadcast", "subs": args.subs, "size": args.size, "window": args.window,
                 "offer": lg.OFFERS["takeover"], "opened": len(conns), "open_seconds": round(open_s, 2),
                 "deflate_negotiated": sum(c.deflate for c in conns)}
    if error:
        out.update(ok=False, error=error, errors=g.errors)
        g.close_all(conns + ([b.pub] if b.pub else []), args.close_timeout)
        return out
    b.n = len(conns)
    for c in conns:
        b.subs[c.fd] = Sub(c)
    g.on_message = lambda c, opcode, payload: setattr(b, "stray", b.stray + 1)   # only the publisher's socket
    if args.settle:
        time.sleep(args.settle)
    # warm-up: publishing, not measured
    mono = time.monotonic_ns
    b.publishing = True
    for _ in range(args.window):
        b.publish()
    b.run(mono() + int(args.warmup * 1e9))
    # the measured window
    d0, p0, r0 = b.delivered, b.published, b.recvs
    window = lg.Window(args.server_pid)
    b.measuring = True
    b.run(mono() + int(args.duration * 1e9))
    b.measuring = False
    load = window.end()
    deliveries, publishes, recvs = b.delivered - d0, b.published - p0, b.recvs - r0
    # drain: everything published must reach everyone (and is verified)
    b.publishing = False
    b.run(mono() + int(args.drain_timeout * 1e9))
    lost = 0 if b.failed else (b.published - b.done)
    # hand the sockets back to loadgen.Conn, to close
    for s in b.subs.values():
        s.conn.rbuf = s.rbuf
    g.close_all(conns + [b.pub], args.close_timeout)
    wall = max(load["seconds"], 1e-9)     # ~0 when a failure ended the run before the window
    lat = sorted(b.lat)
    fan = sorted(b.fanout)
    ms = lambda x: None if x is None else round(x / 1e6, 3)   # noqa: E731
    expected = b.published * b.n
    out.update(load)
    out.update(
        ok=not b.failed and g.failures == 0 and b.mismatches == 0 and lost == 0 and b.stray == 0
        and b.delivered == expected,
        deliveries=deliveries, deliveries_per_s=round(deliveries / wall, 1),
        publishes=publishes, publishes_per_s=round(publishes / wall, 2),
        p50_ms=ms(lg.pct(lat, 0.50)), p90_ms=ms(lg.pct(lat, 0.90)), p99_ms=ms(lg.pct(lat, 0.99)),
        max_ms=ms(lat[-1] if lat else None),
        fanout_p50_ms=ms(lg.pct(fan, 0.50)), fanout_p99_ms=ms(lg.pct(fan, 0.99)),
        frames_per_recv=round(deliveries / recvs, 2) if recvs else None,
        wire_bytes_per_delivery=round(b.wire / b.delivered, 1) if b.delivered else None,
        published_total=b.published, verified=b.delivered, expected_deliveries=expected,
        mismatches=b.mismatches, lost=lost, stray=b.stray, failures=g.failures,
        server_closes=g.server_closes, unclean_closes=g.unclean_closes,
        server_processes=len(lg.descendants(args.server_pid)) if args.server_pid else None,
        errors=g.errors)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--subs", type=int, default=1000, help="subscribers (default 1000)")
    p.add_argument("--size", type=int, default=256,
                   help=f"message size in bytes of compressible text, ≥ {HEADER} (default 256)")
    p.add_argument("--window", type=int, default=4,
                   help="messages published and not yet received by every subscriber, at most (default 4)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of publishing before measuring (default 1)")
    p.add_argument("--settle", type=float, default=0.2, help="seconds between opening and publishing")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="seconds allowed, after the window, for what is in flight to arrive (default 60)")
    p.add_argument("--open-concurrency", type=int, default=64, help="handshakes in flight while opening")
    p.add_argument("--open-budget", type=float, default=300.0, help="seconds allowed to open (default 300)")
    p.add_argument("--close-timeout", type=float, default=60.0, help="seconds for the closing handshakes")
    p.add_argument("--server-pid", type=int, default=None, help="the server's main pid: its process tree's CPU")
    p.add_argument("--cpu", type=int, action="append", default=None, help="pin to this CPU (repeatable)")
    p.add_argument("--nice", type=int, default=None, help="run at this nice value")
    p.add_argument("--progress", action="store_true", help="progress on stderr")
    args = p.parse_args(argv)
    if args.size < HEADER:
        p.error(f"--size must be at least {HEADER}")
    if not 1 <= args.window < RING:
        p.error(f"--window must be 1..{RING - 1}")
    nice_error = None
    if args.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        except OSError as exc:
            nice_error = str(exc)
    if args.cpu:
        os.sched_setaffinity(0, set(args.cpu))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.subs + 16 > hard:
        p.error(f"--subs {args.subs}: one process may hold {hard} descriptors here (hard RLIMIT_NOFILE)")
    return lg.report(run_broadcast(args), nice_error)


if __name__ == "__main__":
    sys.exit(main())
