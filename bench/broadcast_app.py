"""The application of ``wsup bench --parts broadcast`` (bench/broadcast.py drives it).

    wsup serve --app-dir bench --app broadcast_app:BroadcastApp --workers 2

* a connection to ``/sub`` subscribes to the topic ``bench``: every message
  published there is sent to its client (``App.handle_publish``'s default,
  compressed per connection when permessage-deflate was agreed);
* a message received on a ``/pub`` connection is published to ``bench``
  (``exclude_self=True``): to every subscriber in every worker;
* anything else echoes (so a subscriber can check it is up: it echoes too).

The same protocol as ``bench/peers.py websockets --broadcast`` (websockets'
``broadcast()``).
"""

from __future__ import annotations

from wsup.app import App

TOPIC = "bench"


class BroadcastApp(App):
    def init(self, conn) -> None:
        self.publisher = conn.path == "/pub"
        if conn.path == "/sub":
            conn.subscribe(TOPIC)

    def handle_in(self, conn, data) -> None:
        if self.publisher:
            conn.publish(TOPIC, data, exclude_self=True)
        else:
            conn.send(data)
