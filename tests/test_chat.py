"""examples/chat.py: rooms, join/leave notices and history over real clients, and two
headless Chromium pages chatting through different workers."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request

import pytest
import websockets
from websockets.sync.client import connect

from devtools import CHROMIUM, DevTools, chromium

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # connect() outside a with


def events(ws, until_type, name=None, timeout=5):
    """Messages until one of ``until_type`` (from ``name``, if given): that one."""
    while True:
        ev = json.loads(ws.recv(timeout=timeout))
        if ev["type"] == until_type and name in (None, ev.get("name")):
            return ev


def join(sp_or_url, room, name):
    ws = connect(f"{sp_or_url}/chat?room={room}&name={name}", open_timeout=10)
    return ws, events(ws, "history")


def test_chat_rooms_notices_and_history_across_workers(serve):
    sp = serve("--app", "examples.chat:ChatApp", "--workers", "2", cwd=ROOT)
    with urllib.request.urlopen(f"http://127.0.0.1:{sp.port}/", timeout=5) as r:   # the page, same port
        assert r.status == 200 and b"new WebSocket" in r.read()
    members = [join(sp.url, "r1", f"u{i}") for i in range(6)]
    assert {h["worker"] for _, h in members} == {1, 2}, "both workers serve the room"
    alice = members[0][0]
    alice.send(json.dumps({"say": "hello room"}))
    for ws, _ in members:
        ev = events(ws, "message")
        assert (ev["name"], ev["text"], ev["room"]) == ("u0", "hello room", "r1")
    # another room hears nothing of r1
    other_room, h = join(sp.url, "r2", "bob")
    assert h["messages"] == []
    # a newcomer gets the history, from whichever worker it lands on
    for i in range(4):
        late, h = join(sp.url, "r1", f"late{i}")
        assert [m["text"] for m in h["messages"]] == ["hello room"]
        for ws, _ in members:
            events(ws, "join", f"late{i}")
        late.close()
        for ws, _ in members:
            events(ws, "leave", f"late{i}")
    other_room.send("plain text is a message too")
    assert events(other_room, "message")["text"] == "plain text is a message too"
    for ws, _ in members:
        ws.close()
    other_room.close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_two_chromium_pages_chat_through_different_workers(serve, tmp_path):
    sp = serve("--app", "examples.chat:ChatApp", "--workers", "2", cwd=ROOT)
    base = f"http://127.0.0.1:{sp.port}/"
    with chromium(base + "?name=ann&room=lobby", str(tmp_path / "profile")) as browser:
        page_a = browser.page("name=ann")
        page_b = browser.open(base + "?name=ben&room=lobby")

        async def run():
            async with websockets.connect(page_a["webSocketDebuggerUrl"], max_size=None) as wa, \
                    websockets.connect(page_b["webSocketDebuggerUrl"], max_size=None) as wb:
                a, b = DevTools(wa), DevTools(wb)
                worker = "document.body.dataset.worker"
                wa_worker = await a.wait_for(worker)
                # reconnect page b (a new connection each time) until the kernel puts it on the other worker
                for _ in range(40):
                    wb_worker = await b.wait_for(worker)
                    if wb_worker != wa_worker:
                        break
                    await b.evaluate("delete document.body.dataset.worker; document.getElementById('join').click()")
                assert wb_worker != wa_worker, "page b never landed on the other worker"
                await b.wait_for("document.getElementById('status').textContent.startsWith('room lobby')")

                async def say(page, text):
                    await page.evaluate(f"document.getElementById('text').value = {json.dumps(text)};"
                                        "document.getElementById('form').requestSubmit(); true")

                def shown(text, from_worker):
                    return ("[...document.querySelectorAll('#log li.message')].some(li => "
                            f"li.textContent.includes({json.dumps(text)}) && "
                            f"li.textContent.includes('(worker {from_worker})'))")
                await say(a, "hi from ann")
                assert await b.wait_for(shown("ann: hi from ann", wa_worker))
                await say(b, "hi back from ben")
                assert await a.wait_for(shown("ben: hi back from ben", wb_worker))
                assert await a.wait_for(shown("ann: hi from ann", wa_worker))      # the sender sees its own too

        asyncio.run(run())
