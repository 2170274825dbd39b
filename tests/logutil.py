"""Reading the JSON-lines lifecycle log in tests."""

from __future__ import annotations

import json
import time
from typing import Any, Callable


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class Log:
    def __init__(self, path) -> None:
        self.path = str(path)

    def records(self, strict: bool = False) -> list[dict]:
        # One read of bytes: a prefix of the file at some moment.  Iterating the file by
        # lines would not be: a line iterator that meets a momentary EOF inside a record
        # being written yields the record's head, then reads on and yields its tail as a
        # "line" of its own (seen in CI with a record across offset 8192).
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        tail = lines.pop()          # b"" when the file ends with a newline
        if tail and strict:
            raise AssertionError(f"{self.path}:{len(lines) + 1}: unterminated (torn) line: {tail!r}")
        out = []
        for n, line in enumerate(lines, 1):
            try:
                out.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise AssertionError(f"{self.path}:{n}: not JSON: {line!r}") from None
        return out

    def events(self, event: str | None = None, **match: Any) -> list[dict]:
        return [r for r in self.records()
                if (event is None or r.get("event") == event)
                and all(r.get(k) == v for k, v in match.items())]

    def wait_for(self, event: str, count: int = 1, timeout: float = 10.0, **match: Any) -> list[dict]:
        return wait_until(lambda: (lambda ev: ev if len(ev) >= count else None)(self.events(event, **match)),
                          timeout, message=f"{count} x {event} {match}")


def contexts_released_once(log: "Log") -> dict[str, str]:
    """The log's proof: every compression context opened was released exactly
    once, and nothing was released that was not opened.  Returns id -> cause."""
    opened = [r["context_id"] for r in log.events("compression.context.opened")]
    released = [r["context_id"] for r in log.events("compression.context.released")]
    assert len(opened) == len(set(opened)), "a context id was opened twice"
    dup = {c for c in released if released.count(c) > 1}
    assert not dup, f"released more than once: {dup}"
    assert set(released) == set(opened), (
        f"opened but never released: {set(opened) - set(released)}; "
        f"released but never opened: {set(released) - set(opened)}")
    return {r["context_id"]: r["cause"] for r in log.events("compression.context.released")}
