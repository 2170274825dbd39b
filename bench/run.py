"""Benchmark wsup against its peers (websockets, aiohttp) in one interleaved run.

    .venv/bin/python bench/run.py              # full run
    .venv/bin/python bench/run.py --quick      # CI-sized, < ~2 min
    .venv/bin/python bench/run.py --help       # every option

The same as `wsup bench`; the logic is in wsup/tools/bench.py (so that the `wsup`
command can offer it), the load generator in bench/loadgen.py and the peers'
echo servers in bench/peers.py.  Results and their meaning:
docs/performance.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsup.tools.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
