"""Restart intensity: OTP's sliding window, as a plain class.

OTP (supervisor.erl, add_restart/1): on every restart, drop the restarts older
than ``now - period``, add ``now``; if more than ``intensity`` restarts remain,
the supervisor gives up.  The window slides with each restart; it is never
reset as a whole.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable


class RestartIntensity:
    def __init__(self, intensity: int, period: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if intensity < 0:
            raise ValueError("intensity must be >= 0")
        if period <= 0:
            raise ValueError("period must be > 0")
        self.intensity = intensity
        self.period = period
        self._clock = clock
        self._restarts: deque[float] = deque()

    def add_restart(self) -> bool:
        """Record one restart now.  True if it is allowed; False if the
        intensity is exceeded and the supervisor must shut down."""
        now = self._clock()
        threshold = now - self.period
        while self._restarts and self._restarts[0] < threshold:
            self._restarts.popleft()
        self._restarts.append(now)
        return len(self._restarts) <= self.intensity

    def __len__(self) -> int:
        return len(self._restarts)
