"""What supervised subtrees cost on the in-process tier (simpleSystemBase).

    .venv/bin/python bench/inprocess_facts.py            # N = 10,000 subtrees
    .venv/bin/python bench/inprocess_facts.py --n 2000   # quicker

Builds what a worker will host: one simple_one_for_one supervisor over N
subtrees, each a Supervisor (one_for_one, auto_shutdown any_significant)
with two SupervisedActor children (connection-like and compression-like),
all through the supervisors library (Init/InitAck, reports, structlog to a
file), in this one process.  Prints a markdown table: start per subtree,
a request/reply between two actors, memory per subtree, a kill and restart of
one child, and the ordered shutdown of all N.  Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from supervisors import (ANY_SIGNIFICANT, ONE_FOR_ONE, SIMPLE_ONE_FOR_ONE, TEMPORARY, TRANSIENT,  # noqa: E402
                         ChildSpec, LogConfig, Runtime, SupervisedActor, Supervisor, SupFlags,
                         supervisor_spec)
from supervisors import inprocess  # noqa: E402
from supervisors.runtime import IN_PROCESS_BASE  # noqa: E402


class Peer(SupervisedActor):
    def init(self, role: str) -> None:
        self.role = role
        self.buf = b""

    def handle_message(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "req":
            self.send(sender, ("rep", msg[1]))
        elif isinstance(msg, tuple) and msg[0] == "ping":   # relay to a peer and back
            self.back = sender
            self.send(msg[1], ("req", msg[2]))
        elif isinstance(msg, tuple) and msg[0] == "rep":
            self.send(self.back, msg[1])


class Subtree(Supervisor):
    def configure(self, n: int):
        flags = SupFlags(strategy=ONE_FOR_ONE, intensity=3, period=5, auto_shutdown=ANY_SIGNIFICANT,
                         name=f"connection-{n}")
        return flags, [ChildSpec("connection", (Peer, ("connection",)), restart=TEMPORARY, significant=True,
                                 log_context={"connection_id": str(n)}),
                       ChildSpec("compression", (Peer, ("compression",)), restart=TRANSIENT,
                                 log_context={"connection_id": str(n)})]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    args = ap.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "run.jsonl")
        rt = Runtime(log=LogConfig(path=log), base=IN_PROCESS_BASE)
        rows = []
        try:
            conns = rt.start(supervisor_spec("connections", SupFlags(
                strategy=SIMPLE_ONE_FOR_ONE, intensity=100, period=1, name="connections"),
                [ChildSpec("c", (Subtree, ()), restart=TEMPORARY, type="supervisor")]))
            before = rss_kib()
            t0 = time.perf_counter()
            refs = []
            for i in range(n):
                result = rt.start_child(conns, (i,))
                refs.append(result[1])
            took = time.perf_counter() - t0
            after = rss_kib()
            rows.append(("start a subtree (3 actors, 5 log records), via start_child", f"{took / n * 1e6:.0f} us"))
            rows.append(("memory per subtree (RSS growth / N)", f"{(after - before) / n:.1f} KiB"))
            kids = rt.which_children(refs[0])
            conn, comp = kids[0][1], kids[1][1]
            m = 2000
            t0 = time.perf_counter()
            for i in range(m):
                rt.ask(conn, ("ping", comp.address, i))
            rows.append(("request/reply between two actors (+ external ask)", f"{(time.perf_counter() - t0) / m * 1e6:.1f} us"))
            tier = inprocess.tier(rt.system)
            t0 = time.perf_counter()
            tier.kill_address(comp.address)
            rt.which_children(refs[0])
            rows.append(("kill a child and restart it", f"{(time.perf_counter() - t0) * 1e3:.2f} ms"))
            t0 = time.perf_counter()
            exit = rt.stop(timeout=600)
            took = time.perf_counter() - t0
            rows.append((f"ordered shutdown of all {n} subtrees", f"{took:.2f} s ({took / n * 1e6:.0f} us each)"
                         + ("" if exit and exit.requested else " (did not finish)")))
        finally:
            rt.shutdown()
        lines = sum(1 for _ in open(log))
    print(f"| in-process tier, N = {n} subtrees | |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(f"| log records written | {lines} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
