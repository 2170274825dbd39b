"""Random ids for connections and compression contexts.

``secrets.token_hex`` reads os.urandom (a system call) for every id: two or
three per connection, ~1.3% of a worker's CPU while connections arrive.  These
ids name things in the log and in the worker's registry; they are not
secrets.  A per-process PRNG seeded from os.urandom gives the same 48 bits,
and is seeded again after a fork (a forked child must not repeat its parent's
sequence: a restarted worker would reuse its predecessor's ids).
"""

from __future__ import annotations

import os
import random

_rng = random.Random(os.urandom(16))


def _reseed() -> None:
    _rng.seed(os.urandom(16))


os.register_at_fork(after_in_child=_reseed)


def token_hex(nbytes: int) -> str:
    """``nbytes`` random bytes as hex, like secrets.token_hex."""
    return f"{_rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"
