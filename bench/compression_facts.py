"""Measures the compression data path and memory per compressed connection.

    .venv/bin/python bench/compression_facts.py [--quick]

1. The direct channel: round trip of an inflate call from a client to a
   CompressionActor (what a ConnectionActor pays per compressed frame), next
   to the round trip of a Thespian message between two actors.
2. Echo round trip on one connection, 1 KiB text, compressed and not, with a
   cheap raw client (pre-compressed, pre-masked frames).
3. Memory per compressed connection at window bits 8..15: PSS of the
   CompressionActor processes and of the whole server, per connection,
   against uncompressed connections.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from rawws import deflate_payload  # noqa: E402
from recording import RecordingSupervisor  # noqa: E402
from supervisors import (ChildSpec, LogConfig, Runtime, SupervisedActor, SupFlags,  # noqa: E402
                         supervisor_spec)
from wsup.config import ServerConfig  # noqa: E402
from wsup.deflate import DeflateParams, DeflateSettings  # noqa: E402
from wsup.server import Server  # noqa: E402


def pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def actor_of(pid: int) -> str:
    """Which actor a server process is, from the log's actor.started records."""
    return ACTORS.get(pid, "?")


ACTORS: dict[int, str] = {}


# -- 1. channel vs Thespian message ---------------------------------------------------


class Echo(SupervisedActor):
    def handle_message(self, msg, sender):
        self.send(sender, msg)


class Pinger(SupervisedActor):
    """Sends n messages to its sibling Echo one after the other; reports the time."""

    def handle_message(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "run":
            _, self.target, self.n = msg
            self.asker, self.left, self.t0 = sender, self.n, time.perf_counter()
            self.send(self.target, b"x" * 100)
        elif isinstance(msg, bytes):
            self.left -= 1
            if self.left:
                self.send(self.target, msg)
            else:
                self.send(self.asker, (time.perf_counter() - self.t0) / self.n)


def channel_vs_message(n: int, log: str) -> dict:
    from actors.compression import CompressionActor
    from wsup.zchannel import CompressionClient
    params = DeflateParams(client_no_context_takeover=True, deflate_window_bits=12, inflate_window_bits=15)
    name = f"bench-{os.getpid()}-z"
    with Runtime(log=LogConfig(path=log)) as rt:
        root = rt.start(supervisor_spec("root", SupFlags(), [
            ChildSpec("z", (CompressionActor, ("bench", name, params, DeflateSettings(), 1 << 20))),
            ChildSpec("echo", (Echo, ())), ChildSpec("pinger", (Pinger, ()))], actor_class=RecordingSupervisor))
        kids = {cid: ref for cid, ref, _, _ in rt.which_children(root)}
        client = CompressionClient(name, params, 64)
        client.connect()
        payload = deflate_payload(b"hello world " * 85)   # ~1 KiB
        times = []
        for _ in range(n):
            t = time.perf_counter()
            client.decompress(payload, True)
            times.append(time.perf_counter() - t)
        client.close()
        per_msg = rt.ask(kids["pinger"], ("run", kids["echo"].address, n), 120)
    return {"channel_rtt_us": statistics.median(times) * 1e6,
            "channel_p99_us": sorted(times)[int(len(times) * 0.99)] * 1e6,
            "thespian_rtt_us": per_msg * 1e6}


# -- 2 & 3. against a server ------------------------------------------------------------


def handshake(port: int, offer: str | None) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    hdrs = ["GET / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if offer:
        hdrs.append(f"Sec-WebSocket-Extensions: {offer}")
    s.sendall(("\r\n".join(hdrs) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101"), buf[:100]
    return s


def masked_frame(payload: bytes, rsv1: bool) -> bytes:
    key = b"\x00\x00\x00\x00"   # a zero mask: masking is a no-op, the frame is still valid
    b0 = 0x81 | (0x40 if rsv1 else 0)
    n = len(payload)
    head = bytes([b0, 0x80 | n]) if n < 126 else struct.pack("!BBH", b0, 0x80 | 126, n)
    return head + key + payload


def read_frame(s: socket.socket) -> bytes:
    def exactly(k):
        b = b""
        while len(b) < k:
            part = s.recv(k - len(b))
            if not part:
                raise EOFError
            b += part
        return b
    h = exactly(2)
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return exactly(n)


def echo_rtt(port: int, compressed: bool, n: int) -> float:
    s = handshake(port, "permessage-deflate; client_no_context_takeover" if compressed else None)
    msg = b"hello world " * 85
    payload = deflate_payload(msg) if compressed else msg
    frame = masked_frame(payload, compressed)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(frame)
        read_frame(s)
        times.append(time.perf_counter() - t)
    s.close()
    return statistics.median(times) * 1e6


def server_pss(server: Server) -> tuple[int, dict[str, int]]:
    total, by_actor = 0, {}
    for pid in server.runtime.processes():
        p = pss(pid)
        total += p
        by_actor.setdefault(actor_of(pid), 0)
        by_actor[actor_of(pid)] += p
    return total, by_actor


def load_actor_names(log: str) -> None:
    import json
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "actor.started":
                ACTORS[r["pid"]] = r["actor"]


def memory_per_connection(bits: int | None, mem_level: int, n: int, tmp: str) -> dict:
    log = os.path.join(tmp, f"mem-{bits}-{mem_level}.jsonl")
    settings = DeflateSettings(enabled=bits is not None, window_bits=bits or 12, mem_level=mem_level)
    server = Server(ServerConfig(port=0, ping_interval=None, compression=settings, log=LogConfig(path=log)))
    _host, port = server.start()
    try:
        base, _ = server_pss(server)
        socks = []
        offer = "permessage-deflate; client_max_window_bits" if bits else None
        text = b"lorem ipsum dolor sit amet " * 40
        for _ in range(n):
            s = handshake(port, offer)
            if bits:
                s.sendall(masked_frame(deflate_payload(text, wbits=max(bits, 9)), True))
            else:
                s.sendall(masked_frame(text, False))
            read_frame(s)
            socks.append(s)
        time.sleep(0.5)   # let every process settle after its first message
        load_actor_names(log)
        total, by_actor = server_pss(server)
        for s in socks:
            s.close()
    finally:
        server.stop()
    z = by_actor.get("CompressionActor", 0) / n if bits else 0
    return {"bits": bits, "mem_level": mem_level, "per_conn": (total - base) / n,
            "compression_actor": z, "connection_actor": by_actor.get("ConnectionActor", 0) / n,
            "connection_supervisor": by_actor.get("ConnectionSupervisor", 0) / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 300 if args.quick else 3000
    conns = 10 if args.quick else 40
    tmp = tempfile.mkdtemp(prefix="wsup-zbench-")
    print(f"# compression facts ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}, zlib {zlib.ZLIB_RUNTIME_VERSION})\n")
    r = channel_vs_message(n, os.path.join(tmp, "chan.jsonl"))
    print("| data path, ~1 KiB | median round trip |\n|---|---|")
    print(f"| direct channel (inflate call to the CompressionActor) | {r['channel_rtt_us']:.0f} us "
          f"(p99 {r['channel_p99_us']:.0f} us) |")
    print(f"| Thespian message, actor to actor and back | {r['thespian_rtt_us']:.0f} us |\n")

    server = Server(ServerConfig(port=0, ping_interval=None, log=LogConfig(path=os.path.join(tmp, "rtt.jsonl"))))
    _h, port = server.start()
    try:
        plain = echo_rtt(port, False, n)
        comp = echo_rtt(port, True, n)
    finally:
        server.stop()
    print("| echo, 1 KiB text, one connection | median round trip |\n|---|---|")
    print(f"| uncompressed | {plain:.0f} us |\n| permessage-deflate (inflate + deflate calls) | {comp:.0f} us |\n")

    rows = [memory_per_connection(None, 5, conns, tmp)]
    for bits, mem in ([(8, 5), (12, 5), (15, 8)] if args.quick
                      else [(8, 1), (8, 5), (9, 5), (10, 5), (11, 5), (12, 5), (13, 5), (14, 5), (15, 5), (15, 8)]):
        rows.append(memory_per_connection(bits, mem, conns, tmp))
    print(f"| window bits | memLevel | PSS per connection | of which CompressionActor | ConnectionActor | "
          f"ConnectionSupervisor |\n|---|---|---|---|---|---|")
    for row in rows:
        label = "no compression" if row["bits"] is None else str(row["bits"])
        print(f"| {label} | {row['mem_level'] if row['bits'] else '-'} | {row['per_conn'] / 1024:.0f} KiB | "
              f"{row['compression_actor'] / 1024:.0f} KiB | {row['connection_actor'] / 1024:.0f} KiB | "
              f"{row['connection_supervisor'] / 1024:.0f} KiB |")
    print(f"\n({conns} idle connections per row, each after one echoed message)")


if __name__ == "__main__":
    main()
