"""Headless Chromium (Debian's package) driven over its DevTools protocol: pages are
opened, and their DOM read with Runtime.evaluate — what a test checks in a browser."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from typing import Iterator

from logutil import wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """One page target, over its DevTools WebSocket."""

    def __init__(self, ws) -> None:
        self.ws, self.n = ws, 0

    async def evaluate(self, expression: str):
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": "Runtime.evaluate",
                                       "params": {"expression": expression, "returnByValue": True}}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.n:
                return msg["result"]["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 15.0):
        async with asyncio.timeout(timeout):
            while True:
                got = await self.evaluate(expression)
                if got:
                    return got
                await asyncio.sleep(0.1)


class Chromium:
    def __init__(self, port: int) -> None:
        self.port = port       # its DevTools port

    def targets(self) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as r:
            return json.load(r)

    def page(self, url_part: str, timeout: float = 30.0) -> dict:
        """The page target whose URL contains ``url_part``, once it exists."""
        return wait_until(lambda: next((t for t in self.targets() if t["type"] == "page" and url_part in t["url"]),
                                       None), timeout=timeout, message=f"a page at {url_part} in chromium")

    def open(self, url: str) -> dict:
        """A new page (tab) at ``url``."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?{url}", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)


@contextlib.contextmanager
def chromium(url: str, profile: str) -> Iterator[Chromium]:
    """Headless Chromium showing ``url``; SIGKILLed with its helpers (the process group we started) after."""
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        active = os.path.join(profile, "DevToolsActivePort")

        def port() -> int | None:
            try:
                with open(active) as f:
                    text = f.read()
            except OSError:
                return None
            return int(text.split()[0]) if text.count("\n") >= 1 else None
        yield Chromium(wait_until(port, timeout=30, message="chromium's DevTools port"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
