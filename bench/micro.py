"""Micro-measurements used to judge individual data-path changes.

    .venv/bin/python bench/micro.py [--n 300]

1. echo round trip on one connection (raw client, pre-compressed frames when
   compressed), 32 B and 1 KiB, with and without permessage-deflate, and the
   CPU each server actor spent per message;
2. one inflate call over the compression channel (client in this process,
   CompressionActor in its own), the cost a ConnectionActor pays per frame.

Not a comparison with other servers (that is bench/run.py, `wsup bench`): a
before/after yardstick for one change at a time, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from rawws import RawClient, deflate_payload  # noqa: E402
from recording import RecordingSupervisor  # noqa: E402

from supervisors import ChildSpec, LogConfig, Runtime, SupFlags, supervisor_spec  # noqa: E402
from wsup.config import ServerConfig  # noqa: E402
from wsup.deflate import DeflateParams, DeflateSettings  # noqa: E402
from wsup.server import Server  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frame(payload: bytes, rsv1: bool) -> bytes:
    b0 = 0x81 | (0x40 if rsv1 else 0)
    n = len(payload)
    head = bytes([b0, 0x80 | n]) if n < 126 else struct.pack("!BBH", b0, 0x80 | 126, n)
    return head + b"\0\0\0\0" + payload     # a zero mask: no masking work in the client


def echo(n: int, tmp: str) -> list[str]:
    log = os.path.join(tmp, "echo.jsonl")
    server = Server(ServerConfig(port=0, ping_interval=None, log=LogConfig(path=log)))
    _host, port = server.start()
    rows = []
    try:
        for compressed in (False, True):
            headers = ({"Sec-WebSocket-Extensions":
                        "permessage-deflate; client_no_context_takeover; server_no_context_takeover"}
                       if compressed else {})
            c = RawClient("127.0.0.1", port, headers=headers)
            for size in (32, 1024):
                msg = (b"hello world %d " * 200)[:size]
                payload = deflate_payload(msg) if compressed else msg
                data = frame(payload, compressed)
                c.send_raw(data)
                c.recv_frame()
                actors = {}
                with open(log) as f:
                    for line in f:
                        r = json.loads(line)
                        if r["event"] == "actor.started":
                            actors[r["pid"]] = r["actor"]
                pids = [p for p in server.runtime.processes() if actors.get(p) in
                        ("ConnectionActor", "CompressionActor")]
                before = {p: cpu_seconds(p) for p in pids}
                times = []
                for _ in range(n):
                    t = time.perf_counter()
                    c.send_raw(data)
                    c.recv_frame()
                    times.append(time.perf_counter() - t)
                cpu = {actors[p]: (cpu_seconds(p) - before[p]) / n * 1e6 for p in pids}
                rows.append(f"| {'deflate' if compressed else 'none'} | {size} B | "
                            f"{statistics.median(times) * 1e6:.0f} us | "
                            f"{cpu.get('ConnectionActor', 0):.0f} us | {cpu.get('CompressionActor', 0):.0f} us |")
            c.close()
    finally:
        server.stop()
    return rows


def channel(n: int, tmp: str) -> float:
    from actors.compression import CompressionActor
    from wsup.zchannel import CompressionClient
    params = DeflateParams(client_no_context_takeover=True, deflate_window_bits=12, inflate_window_bits=15)
    name = f"micro-{os.getpid()}-z"
    with Runtime(log=LogConfig(path=os.path.join(tmp, "chan.jsonl"))) as rt:
        rt.start(supervisor_spec("root", SupFlags(), [
            ChildSpec("z", (CompressionActor, ("micro", name, params, DeflateSettings(), 1 << 20)))],
            actor_class=RecordingSupervisor))
        client = CompressionClient(name, params, 64)
        client.connect()
        payload = deflate_payload(b"hello world " * 85)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            client.decompress(payload, True)
            times.append(time.perf_counter() - t)
        client.close()
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="wsup-micro-")
    print(f"# micro ({time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f})\n")
    print("| compression | message | echo round trip (median) | ConnectionActor CPU/msg | "
          "CompressionActor CPU/msg |\n|---|---|---|---|---|")
    for row in echo(args.n, tmp):
        print(row)
    print(f"\ncompression channel, one inflate call (~1 KiB): {channel(args.n, tmp):.0f} us median")


if __name__ == "__main__":
    main()
