"""Take docs/img/live.png: the live page of a server with a few connections, one of
which had its CompressionActor killed (and restarted), in headless Chromium.

    .venv/bin/python scripts/live_screenshot.py [OUT.png]
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from actors.worker import control_name  # noqa: E402
from supervisors import LogConfig  # noqa: E402
from wscore.config import ServerConfig  # noqa: E402
from wsup.server import Server  # noqa: E402
from wsup.tools.control import control  # noqa: E402


async def main(out: str) -> None:
    tmp = tempfile.mkdtemp(prefix="wsup-shot-")
    server = Server(ServerConfig(port=0, workers=2, metrics_port=0, log=LogConfig(path=f"{tmp}/log.jsonl")))
    server.start()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1400,900",
                             f"--user-data-dir={tmp}/profile", f"http://127.0.0.1:{server.config.metrics_port}/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        conns = [await websockets.connect(f"ws://127.0.0.1:{server.address[1]}") for _ in range(12)]

        async def chatter():
            while True:
                for ws in conns:
                    await ws.send("lorem ipsum dolor sit amet " * 10)
                    await ws.recv()
                await asyncio.sleep(0.01)
        task = asyncio.create_task(chatter())
        await asyncio.sleep(1.0)
        for i in (1, 2):
            tree = control(control_name(server.config, i), {"op": "tree"})
            if tree.get("connections"):
                cid = tree["connections"][0]["connection_id"]
                control(control_name(server.config, i), {"op": "kill", "kind": "CompressionActor",
                                                         "connection_id": cid})
        active = f"{tmp}/profile/DevToolsActivePort"
        while not os.path.exists(active):
            time.sleep(0.1)
        port = int(open(active).read().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as dt:
            await asyncio.sleep(5)       # a few summaries: rates and the sparkline
            await dt.send(json.dumps({"id": 1, "method": "Runtime.evaluate", "params": {"expression":
                "document.querySelector('li.conn details').open = true; "
                "document.querySelector('li.conn details').dispatchEvent(new Event('toggle'))"}}))
            await asyncio.sleep(2.5)
            await dt.send(json.dumps({"id": 2, "method": "Page.captureScreenshot", "params": {"format": "png"}}))
            while True:
                msg = json.loads(await dt.recv())
                if msg.get("id") == 2:
                    break
        with open(out, "wb") as f:
            f.write(base64.b64decode(msg["result"]["data"]))
        task.cancel()
        for ws in conns:
            await ws.close()
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
        server.stop()
    print(out)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "img", "live.png")))
