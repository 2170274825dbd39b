"""Mailbox: hand things from any thread to a Thespian actor's own thread.

An actor that runs I/O in a thread of its own (blocking sockets are much
cheaper than Thespian's loop per event) still must send Thespian messages,
stop and crash from its Thespian thread.  The thread ``put``s an item; the
actor watches ``fileno()`` (ThespianWatch), and when it is readable calls
``drain()`` in its handler.  An exception put with ``crash()`` is re-raised by
``drain()`` there, so a failing thread crashes the actor like any handler.
"""

from __future__ import annotations

import os
import queue
from typing import Any, Iterator


class _Crash:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Mailbox:
    def __init__(self) -> None:
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)

    def fileno(self) -> int:
        return self._r

    def put(self, item: Any) -> None:
        """From any thread."""
        self._items.put(item)
        try:
            os.write(self._w, b"x")
        except OSError:
            pass  # closed: the actor is gone

    def crash(self, exc: BaseException) -> None:
        self.put(_Crash(exc))

    def drain(self, raise_crash: bool = True) -> Iterator[Any]:
        """Yield what is there, in order; a crash is re-raised where it
        stands (or skipped, if ``raise_crash`` is false)."""
        try:
            os.read(self._r, 4096)
        except OSError:
            pass
        while True:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Crash):
                if raise_crash:
                    raise item.exc
                continue
            yield item

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
