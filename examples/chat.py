"""A chat server on wsup's pub/sub: rooms, join/leave notices, the last messages of a room.

    .venv/bin/wsup serve --app examples.chat:ChatApp        # then open http://127.0.0.1:8765/

Open the page in two browsers (or tabs): their connections land on different
workers (the kernel spreads them), and every message still reaches everyone
in the room — through the process tier, and across nodes in a cluster
(docs/cluster.md).

The protocol, JSON text messages:

* the client connects to ``/chat?room=ROOM&name=NAME`` and gets
  ``{"type": "history", "room": ..., "messages": [...]}`` (the last
  :data:`HISTORY` messages of the room), then what the room says;
* it sends ``{"say": TEXT}`` (or plain text) to speak, ``{"join": ROOM}`` to
  change rooms;
* everyone in the room gets ``{"type": "message", "room", "name", "text",
  "worker", "t"}`` and ``{"type": "join" | "leave", "room", "name", "worker"}``.

Where the history lives: every worker keeps the last messages of every room
(``HISTORIES``), fed by a worker-level listener on one topic, ``chat.log``,
to which every message is also published — so a newcomer on any worker gets
the whole recent history without asking anyone.  A restarted worker starts
with an empty history (an example, not a database).
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs

from wsup.app import App, listen

HISTORY = 50
MAX_TEXT = 2000
LOG_TOPIC = "chat.log"
ROOM = re.compile(r"^[\w-]{1,64}$")
PAGE = Path(__file__).with_name("chat.html")

HISTORIES: dict[str, deque] = {}      # this worker's: room -> its last messages (dicts)
_worker = 0


def _remember(_topic: str, message: str | bytes) -> None:
    event = json.loads(message)
    HISTORIES.setdefault(event["room"], deque(maxlen=HISTORY)).append(event)


def _room_topic(room: str) -> str:
    return f"room:{room}"


class ChatApp(App):
    @staticmethod
    def http_get(path: str) -> tuple[str, bytes] | None:
        if path in ("/", "/index.html"):
            return "text/html; charset=utf-8", PAGE.read_bytes()
        return None

    @classmethod
    def worker_started(cls, worker: int) -> None:
        global _worker
        _worker = worker
        listen(LOG_TOPIC, _remember)

    def init(self, conn) -> None:
        query = parse_qs(conn.query)
        self.name = (query.get("name", [""])[0].strip() or f"guest-{conn.connection_id[-4:]}")[:32]
        self.room = ""
        self._join(conn, query.get("room", ["lobby"])[0])

    def _join(self, conn, room: str) -> None:
        if not ROOM.match(room):
            conn.send(json.dumps({"type": "error", "error": "a room name is 1-64 letters, digits, _ or -"}))
            return
        if self.room:
            self._notice(conn, "leave")
            conn.unsubscribe(_room_topic(self.room))
        self.room = room
        conn.subscribe(_room_topic(room))
        conn.send(json.dumps({"type": "history", "room": room, "name": self.name, "worker": _worker,
                              "messages": list(HISTORIES.get(room, ()))}))
        self._notice(conn, "join")

    def _notice(self, conn, kind: str) -> None:
        conn.publish(_room_topic(self.room), json.dumps({"type": kind, "room": self.room, "name": self.name,
                                                         "worker": _worker}), exclude_self=True)

    def handle_in(self, conn, data) -> None:
        if not isinstance(data, str):
            return
        try:
            msg = json.loads(data) if data.startswith("{") else {"say": data}
        except ValueError:
            msg = {"say": data}
        if isinstance(msg.get("join"), str):
            self._join(conn, msg["join"])
        elif isinstance(msg.get("say"), str) and msg["say"].strip():
            event = json.dumps({"type": "message", "room": self.room, "name": self.name,
                                "text": msg["say"][:MAX_TEXT], "worker": _worker, "t": time.time()})
            conn.publish(_room_topic(self.room), event)    # to everyone in the room, the sender too
            conn.publish(LOG_TOPIC, event)                  # to every worker's history

    def terminate(self, conn, reason) -> None:
        if self.room:
            self._notice(conn, "leave")
