"""What a counter increment costs: wsup's plain attribute add (wscore.metrics) against
prometheus_client's Counter.inc(), in one process and in its multiprocess mode (an mmap'd
file per process, merged at every scrape).  Each in a fresh interpreter.

    .venv/bin/python bench/metrics_cost.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

N = 2_000_000

CASES = {
    "wsup: METRICS.messages_in += 1": (
        "from wscore.metrics import METRICS as M", "M.messages_in += 1"),
    "prometheus_client Counter.inc()": (
        "from prometheus_client import Counter; c = Counter('x', 'x', ['worker']).labels('1')", "c.inc()"),
    "prometheus_client Counter.inc(), multiprocess mode": (
        "import os; os.environ['PROMETHEUS_MULTIPROC_DIR'] = {dir!r}\n"
        "from prometheus_client import Counter; c = Counter('x', 'x', ['worker']).labels('1')", "c.inc()"),
}

PROG = """
import time
{setup}
def run(n):
    for _ in range(n):
        {stmt}
run(1000)
best = min((lambda t0: (run({n}), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5))
print(best / {n} * 1e9)
"""


def main() -> None:
    print("| increment | ns each |\n|---|---|")
    for label, (setup, stmt) in CASES.items():
        with tempfile.TemporaryDirectory() as d:
            code = PROG.format(setup=setup.format(dir=d), stmt=stmt, n=N)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        print(f"| {label} | {float(out.stdout):.0f} |")
    print("\n(an empty loop's cost is included in each: it is the same for all)")


if __name__ == "__main__":
    main()
