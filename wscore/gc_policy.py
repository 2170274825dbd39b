"""The cycle collector's policy in a worker: freeze what survives a full collection.

A full (generation 2) collection scans every tracked object of the process.
A worker holding 5,000 connections holds ~350,000, and CPython 3.11 runs a
full collection each time the objects promoted since the last one exceed 25 %
of the old generation: every few seconds under churn or broadcast load, each
pausing every connection of the worker for ~300 ms (docs/performance.md).

Objects that survived a full collection are, right then, not garbage.
:class:`FreezeSurvivors` moves them to the permanent generation
(``gc.freeze()``) at the end of each full collection, so the next one scans
only what is newer.  Frozen objects are still freed by reference counting —
how every wsup connection ends (InProcessTier.died breaks its cycles) — but a
*cycle* among frozen objects (an application's, say) would wait: so every
``thaw_every`` seconds :meth:`tick` unfreezes everything and runs one full
collection (one long pause per ``thaw_every`` instead of one every few
seconds), after which the survivors are frozen again.
"""

from __future__ import annotations

import gc
import time
from typing import Callable


class FreezeSurvivors:
    """``thaw_every=None``: no freezing, only the counts (full collections, the longest)."""

    def __init__(self, thaw_every: float | None = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.thaw_every = thaw_every
        self._clock = clock
        self._last_thaw = clock()
        self.freezes = 0
        self.thaws = 0
        self.installed = False
        self.full_collections = 0
        self.longest_full = 0.0        # seconds: the longest full collection seen (thaws included)
        self._started = 0.0

    def install(self) -> "FreezeSurvivors":
        if not self.installed:
            gc.callbacks.append(self._after_collection)
            self.installed = True
        return self

    def uninstall(self) -> None:
        if self.installed:
            gc.callbacks.remove(self._after_collection)
            self.installed = False
            gc.unfreeze()

    def _after_collection(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.full_collections += 1
        self.longest_full = max(self.longest_full, time.perf_counter() - self._started)
        if self.thaw_every is not None:
            gc.freeze()
            self.freezes += 1

    def tick(self) -> bool:
        """Call now and then (the worker's loop: once a second).  True if it thawed."""
        now = self._clock()
        if self.thaw_every is None or now - self._last_thaw < self.thaw_every:
            return False
        self.collect_all()
        return True

    def collect_all(self) -> int:
        """Unfreeze, and one full collection of everything (its survivors are
        frozen again).  The number of objects it found unreachable."""
        self._last_thaw = self._clock()
        self.thaws += 1
        gc.unfreeze()
        return gc.collect()
