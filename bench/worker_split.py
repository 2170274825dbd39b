"""Echo latency per worker: which of wsup's workers served each connection, and how fast.

    python bench/worker_split.py [--workers 2] [--conns 100] [--duration 5] [--gen-nice -10] [--server-cpus 0]

Starts ``wsup serve`` (deflate on, --ping-interval off), drives it with bench/loadgen.py echo
pinned to the last CPU (as ``wsup bench`` does), and joins the generator's per-connection mean
latencies (by local port) with the server log's ``connection.accepted`` records (the worker
index is the connection id's prefix).  Prints, per worker: connections, echoes, their share,
and the mean of the per-connection mean latencies; and each worker's CPU time.  Measures why
wsup's p99 with two workers on a two-core machine is what it is (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--gen-nice", type=int, default=-10)
    p.add_argument("--server-cpus", default=None, help="taskset -c list for the server (default: all)")
    a = p.parse_args()
    tmp = tempfile.mkdtemp()
    log = os.path.join(tmp, "s.jsonl")
    py = sys.executable
    pin = ["taskset", "-c", a.server_cpus] if a.server_cpus else []
    srv = subprocess.Popen(pin + [py, "-m", "wsup.cli", "serve", "--port", "0", "--log-file", log, "--ping-interval", "off",
                            "--max-connections", "100000", "--workers", str(a.workers)],
                           stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        port = None
        for line in srv.stdout:
            if "listening" in line:
                port = int(line.rsplit(":", 1)[1])
                break
        time.sleep(1.0)
        last = max(os.sched_getaffinity(0))
        gen = [py, os.path.join(ROOT, "bench", "loadgen.py"), "echo", "--port", str(port), "--conns", str(a.conns),
               "--duration", str(a.duration), "--warmup", "0.5", "--per-conn"]
        cpu0 = worker_cpu(log)
        out = subprocess.run(["taskset", "-c", str(last), "nice", "-n", str(a.gen_nice)] + gen,
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
        cpu1 = worker_cpu(log)
        res = json.loads(out)
    finally:
        srv.terminate()
        srv.wait(30)
    worker_of_port: dict[int, str] = {}
    with open(log, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "connection.accepted":
                worker_of_port[int(r["peer"].rsplit(":", 1)[1])] = r["connection_id"].split("-", 1)[0]
    by_worker: dict[str, list] = defaultdict(list)
    for lport, n, mean_ms in res["per_conn"]:
        by_worker[worker_of_port.get(lport, "?")].append((n, mean_ms))
    total = sum(n for rows in by_worker.values() for n, _ in rows)
    print(f"msgs/s {res['msgs_per_s']:.0f}  p50 {res['p50_ms']} p90 {res['p90_ms']} p99 {res['p99_ms']} ms  "
          f"(N={a.conns}, {a.workers} workers, generator nice {a.gen_nice} on CPU {last})")
    for w in sorted(by_worker):
        rows = by_worker[w]
        n = sum(r[0] for r in rows)
        means = sorted(r[1] for r in rows if r[1] is not None)
        cpu = cpu1.get(w, 0) - cpu0.get(w, 0)
        print(f"  worker {w}: {len(rows)} connections, {n} echoes ({100 * n / total:.0f}%), "
              f"per-connection mean latency {means[0]:.2f}-{means[-1]:.2f} ms (median {means[len(means) // 2]:.2f}), "
              f"CPU {cpu:.2f} s")


def worker_pids(log: str) -> dict[str, int]:
    pids: dict[str, int] = {}
    with open(log, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "worker.listening":
                pids[str(r.get("child_id", "?")).replace("worker-", "")] = r["pid"]
    return pids


def worker_cpu(log: str) -> dict[str, float]:
    """CPU seconds (user+system) of each worker process so far, by worker index."""
    pids = worker_pids(log)
    out = {}
    tck = os.sysconf("SC_CLK_TCK")
    for w, pid in pids.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[w] = (int(fields[11]) + int(fields[12])) / tck
        except OSError:
            pass
    return out


if __name__ == "__main__":
    main()
