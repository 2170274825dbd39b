"""A real browser: headless Chromium (Debian's package) against wsup, with the
permessage-deflate offer browsers make by themselves."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest
from logutil import contexts_released_once

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def test_chromium_echo_with_compression(make_server, tmp_path):
    server = make_server(app="apps:BrowserApp")
    page = f"file://{HERE}/browser/echo.html?port={server.port}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", page]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        [result] = server.log.wait_for("browser.result", timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # chromium and its helpers: the group we started
        proc.wait()
    assert result["result"].startswith("40/40 extensions=permessage-deflate")
    [up] = server.log.events("connection.upgraded")
    assert up["extensions"] and up["extensions"][0].startswith("permessage-deflate")
    server.log.wait_for("compression.context.released", count=2, timeout=15)
    contexts_released_once(server.log)
