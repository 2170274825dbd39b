"""ObserverActor: owns the metrics port (--metrics-port) and the server's live view.

A process-tier actor (the first child of ``wsup``, one_for_one beside
``workers``) that owns, in a loop thread of its own (a wscore.ioloop
WorkerLoop, the same I/O loop as the workers'):

* the metrics listening socket (loopback unless --metrics-host says
  otherwise), serving ``GET /metrics`` (Prometheus text), ``/healthz``,
  ``/readyz``, ``/`` (the live page, observe/live.html) and ``/live`` (the
  page's WebSocket feed: wsup's own handshake and protocol);
* one *link* per worker: a connection to the worker's control socket that
  asked to ``watch`` — supervision events are pushed on it as they happen,
  and the observer asks ``stats`` and ``tree`` every second (and ``stats`` at
  each scrape, so a scrape is exact).  A link that drops is a worker down
  (/healthz 503 at once); a link that comes back with a new pid is a worker
  restart.

What to answer is decided by observe.state.ObserverState (plain class); this
actor only moves bytes.  A crash of the loop thread is a crash of this actor:
its supervisor restarts it, the workers go on.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from importlib import resources
from typing import Any, Callable

from thespian.actors import WatchMessage

from actors.worker import control_name
from observe.exposition import CONTENT_TYPE, process_families, render, worker_families
from observe.http import FeedSocket, RequestReader, json_response, response
from observe.state import ObserverState
from supervisors import SupervisedActor
from supervisors.mailbox import Mailbox
from wscore.config import ServerConfig
from wscore.ioloop import Port, WorkerLoop

TICK = 1.0                 # stats and tree from every worker, summary to every page
RELINK = 0.1               # a worker without a link: try again this often
SCRAPE_TIMEOUT = 2.0
TREE_LIMIT = 50            # connections listed per worker on the page


def metrics_socket(config: ServerConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.metrics_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.metrics_host, config.metrics_port))
    sock.listen(128)
    return sock


class ObserverActor(SupervisedActor):
    def init(self, config: ServerConfig) -> None:
        self.config = config
        self.mailbox = Mailbox()      # loop thread -> this thread (a crash of the loop)
        self.loop = WorkerLoop()
        self.state = ObserverState(config.workers, os.getpid())
        self.page = resources.files("observe").joinpath("live.html").read_bytes()
        self._refs = itertools.count(1)
        self._replies: dict[int, Callable[[dict], None]] = {}
        self._links: dict[int, Port] = {}             # worker index -> its control link
        self._link_bufs: dict[Port, bytearray] = {}
        self._requests: dict[Port, RequestReader] = {}
        self._feeds: dict[Port, FeedSocket] = {}
        self._round: set[int] = set()                 # workers whose tree this tick still waits for
        self.loop.listen(metrics_socket(config), self._accept)
        self.loop.call_later(0, self._tick)
        self.loop.call_later(0, self._relink)
        self.thread = threading.Thread(target=self._run_loop, name="observer-loop", daemon=True)
        self.thread.start()
        self.log.info("observer.listening", host=config.metrics_host, port=config.metrics_port)

    def _run_loop(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:   # the loop is this actor: its crash is ours
            self.mailbox.crash(exc)

    # -- worker links (loop thread) -------------------------------------------------------

    def _relink(self) -> None:
        for index in self.state.workers:
            if index not in self._links:
                self._link(index)
        if not self.state.stopping:
            self.loop.call_later(RELINK, self._relink)

    def _link(self, index: int) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(0.5)
            sock.connect("\0" + control_name(self.config, index))
        except OSError:
            sock.close()
            return
        port = self.loop.loop_port(sock, lambda p, data: self._link_data(index, p, data))
        self._links[index] = port
        self._link_bufs[port] = bytearray()
        self._ask(index, {"op": "watch"}, lambda answer: self._linked(index, answer))

    def _linked(self, index: int, answer: dict) -> None:
        if self.state.linked(index, answer):
            self.log.info("observer.worker_restarted", worker=index, pid=answer.get("pid"))

    def _ask(self, index: int, request: dict, then: Callable[[dict], None]) -> bool:
        port = self._links.get(index)
        if port is None:
            return False
        ref = next(self._refs)
        self._replies[ref] = then
        port.write(json.dumps({**request, "ref": ref}).encode() + b"\n")
        return True

    def _link_data(self, index: int, port: Port, data: bytes) -> None:
        buf = self._link_bufs.get(port)
        if buf is None:
            return
        if not data:
            self._unlink(index, port)
            return
        buf += data
        while True:
            n = buf.find(b"\n")
            if n < 0:
                return
            line = bytes(buf[:n])
            del buf[:n + 1]
            msg = json.loads(line)
            if "ref" in msg:
                then = self._replies.pop(msg["ref"], None)
                if then is not None:
                    then(msg)
            elif "event" in msg:
                self.state.event(msg)
                self._broadcast({"type": "event", **msg})

    def _unlink(self, index: int, port: Port) -> None:
        self._link_bufs.pop(port, None)
        if self._links.get(index) is port:
            del self._links[index]
        port.close()
        self.state.unlinked(index)
        self._round.discard(index)
        self._broadcast({"type": "event", "event": "worker.down", "worker": index,
                         "t": time.time()})

    def _tick(self) -> None:
        if self._round:              # last round's answers did not all come: push what we have
            self._push_summary()
        self._round = set()
        for index in list(self._links):
            self._ask(index, {"op": "stats"}, lambda a, i=index: self.state.stats(i, a))
            if self._ask(index, {"op": "tree", "limit": TREE_LIMIT}, lambda a, i=index: self._tree(i, a)):
                self._round.add(index)
        if not self._round:
            self._push_summary()
        self.loop.call_later(TICK, self._tick)

    def _tree(self, index: int, answer: dict) -> None:
        self.state.tree(index, answer)
        self._round.discard(index)
        if not self._round:
            self._push_summary()

    def _push_summary(self) -> None:
        if self._feeds:
            self._broadcast(self.state.summary())

    # -- HTTP (loop thread) ---------------------------------------------------------------

    def _accept(self, client: socket.socket, _peer: Any) -> None:
        port = self.loop.loop_port(client, self._http_data)
        self._requests[port] = RequestReader()

    def _http_data(self, port: Port, data: bytes) -> None:
        feed = self._feeds.get(port)
        if feed is not None:
            self._feed_data(port, feed, data)
            return
        reader = self._requests.get(port)
        if reader is None:
            return
        req = reader.feed(data)
        if req is None:
            return
        del self._requests[port]
        if req.error:
            self._reply(port, response(400, req.error + "\n"))
        elif req.method != "GET":
            self._reply(port, response(405, "GET only\n", headers=(("Allow", "GET"),)))
        elif req.path == "/metrics":
            self._scrape(port)
        elif req.path == "/healthz":
            self._reply(port, json_response(*self.state.health()))
        elif req.path == "/readyz":
            self._reply(port, json_response(*self.state.readiness()))
        elif req.path in ("/", "/index.html"):
            self._reply(port, response(200, self.page, "text/html; charset=utf-8"))
        elif req.path == "/live":
            self._open_feed(port, req.raw)
        else:
            self._reply(port, response(404, "not found: try /, /metrics, /healthz, /readyz, /live\n"))

    def _reply(self, port: Port, data: bytes) -> None:
        port.write(data)
        port.close_when_flushed()

    def _scrape(self, port: Port) -> None:
        """Fresh stats from every linked worker, then the text (or what came in SCRAPE_TIMEOUT)."""
        waiting = set(self._links)
        done = [False]

        def finish() -> None:
            if done[0]:
                return
            done[0] = True
            s = self.state
            ready = s.readiness()[0] == 200
            families = worker_families(s.snapshots(), s.worker_restarts(),
                                       {i: w.linked for i, w in s.workers.items()}, ready)
            families += process_families(s.pids())
            self._reply(port, response(200, render(families), CONTENT_TYPE))

        def answered(index: int, answer: dict) -> None:
            self.state.stats(index, answer)
            waiting.discard(index)
            if not waiting:
                finish()

        for index in list(waiting):
            if not self._ask(index, {"op": "stats"}, lambda a, i=index: answered(i, a)):
                waiting.discard(index)
        if not waiting:
            finish()
        else:
            self.loop.call_later(SCRAPE_TIMEOUT, finish)

    # -- the live feed (loop thread) -------------------------------------------------------

    def _open_feed(self, port: Port, head: bytes) -> None:
        feed = FeedSocket(head)
        if not feed.handshake.accepted:
            self._reply(port, feed.handshake.response)
            return
        port.write(feed.handshake.response)
        self._feeds[port] = feed
        feed.send({"type": "hello", "workers": len(self.state.workers), "events": list(self.state.events),
                   "server": {"host": self.config.host, "port": self.config.port}})
        feed.send(self.state.summary())
        self._flush_feed(port, feed)

    def _feed_data(self, port: Port, feed: FeedSocket, data: bytes) -> None:
        if not data:
            self._close_feed(port)
            return
        for req in feed.receive(data):
            if req.get("op") == "inspect":
                index, cid = req.get("worker"), req.get("connection_id")
                if not (isinstance(index, int) and isinstance(cid, str)) or not self._ask(
                        index, {"op": "inspect", "connection_id": cid},
                        lambda a, p=port: self._to_feed(p, {"type": "inspect", "worker": index, **a})):
                    feed.send({"type": "inspect", "connection_id": cid, "found": False})
        self._flush_feed(port, feed)

    def _to_feed(self, port: Port, obj: dict) -> None:
        feed = self._feeds.get(port)
        if feed is not None:
            feed.send(obj)
            self._flush_feed(port, feed)

    def _broadcast(self, obj: dict) -> None:
        for port, feed in list(self._feeds.items()):
            feed.send(obj)
            self._flush_feed(port, feed)

    def _flush_feed(self, port: Port, feed: FeedSocket) -> None:
        data = feed.data_to_send()
        if data and not port.write(data):
            self._close_feed(port)
        elif feed.closed:
            self._close_feed(port)

    def _close_feed(self, port: Port) -> None:
        self._feeds.pop(port, None)
        port.close_when_flushed()

    def _stop(self) -> None:   # loop thread
        self.state.stopping = True
        self.loop.stop_listening()
        self.loop.stop()

    # -- the Thespian thread ------------------------------------------------------------------

    def watched_fds(self) -> list[int]:
        return [self.mailbox.fileno()]

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, WatchMessage) and self.mailbox.fileno() in message.ready:
            self.mailbox.drain()      # a crash of the loop re-raises here

    def terminate(self, reason: Any) -> None:
        if self.thread.is_alive():
            self.loop.post(self._stop)
            self.thread.join(timeout=5.0)
        self.mailbox.close()
