"""Node's `ws` client (the npm package most Node programs use) against wsup,
with permessage-deflate as ws offers it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from logutil import contexts_released_once

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ws")),
    reason="node or the ws package is missing (npm install --prefix tests/node)")


def test_node_ws_echo_with_compression(server):
    r = subprocess.run([NODE, os.path.join(NODE_DIR, "echo_client.js"), server.url + "/node", "40"],
                       capture_output=True, text=True, timeout=60)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, (result, r.stderr)
    assert result["ok"] == 40 and result["code"] == 1000
    assert "permessage-deflate" in result["extensions"]
    server.log.wait_for("compression.context.released", count=2, timeout=15)
    contexts_released_once(server.log)
