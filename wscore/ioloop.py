"""A worker's I/O loop: the one place where sockets are read and written.

Erlang runs many processes in a few OS threads and gives each socket to one
process as a *port*; this is the same for Thespian's in-process base.  A
:class:`WorkerLoop` owns one thread, a selector and one in-process actor
system (supervisors.inprocess), and nothing else runs that system:

* readiness: a readable :class:`Port` is read here and its owner actor is
  told :class:`PortData` (``data == b""``: the peer closed); a port with
  output pending is flushed when writable;
* timers: actors use Thespian's ``wakeupAfter``; the loop sleeps no longer
  than the system's next wakeup and delivers what is due;
* other threads hand work in with :meth:`WorkerLoop.post` (a self-pipe).

A Port is owned by exactly one actor.  The actor writes (``port.write``,
buffered, never blocking) and closes it; if the actor dies without closing
it — an in-process kill skips ``terminate`` — the loop closes it from the
tier's death hook, as Erlang closes a dead process's ports.  Release happens
in :meth:`Port.close` only, once.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import time
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from supervisors import inprocess
from wscore.pubsub import PubSub

READ_SIZE = 65536


@dataclass
class PortData:
    """Bytes read from the owner's port; ``b""``: the peer closed its side."""
    port: "Port"
    data: bytes


class Port:
    """A socket owned by one actor (or by the loop), read by the loop.

    With ``tls`` (an ssl.SSLContext), the port speaks TLS over memory BIOs
    (sans-I/O: the socket stays a plain non-blocking one, ssl only
    transforms bytes): the handshake runs as bytes arrive, the owner sees and
    writes plaintext only."""

    __slots__ = ("loop", "sock", "fd", "owner", "owner_id", "out", "reading", "closed", "peer_closed",
                 "_events", "upgrade", "tls", "_tls_in", "_tls_out", "_tls_ready", "_close_when_flushed")

    def __init__(self, loop: "WorkerLoop", sock: socket.socket, owner: Any, owner_id: str,
                 tls: ssl.SSLContext | None = None) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.owner = owner            # the owner's Thespian address, or a callable(port, data) of the loop's
        self.owner_id = owner_id
        self.out = bytearray()
        self.reading = True
        self.closed = False
        self.peer_closed = False
        self._events = 0
        self._close_when_flushed = False
        self.upgrade: Any = None      # what the loop learnt before handing it over (a handshake)
        self.tls: ssl.SSLObject | None = None
        self._tls_ready = False
        if tls is not None:
            self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = tls.wrap_bio(self._tls_in, self._tls_out, server_side=True)

    # -- what the owner calls ------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Queue ``data``; sent at once if the socket takes it.  False if the
        port is closed or the connection broke."""
        if self.closed:
            return False
        if self.tls is not None:
            try:
                self.tls.write(data)
            except ssl.SSLError:
                self.close()
                return False
            return self._send_raw(self._tls_out.read())
        return self._send_raw(data)

    def _send_raw(self, data: bytes) -> bool:
        if not data:
            return True
        if not self.out:
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.close()
                return False
            if n == len(data):
                return True
            data = memoryview(data)[n:]
        self.out += data
        self._update()
        return True

    @property
    def pending_output(self) -> int:
        return len(self.out)

    def pause_reading(self) -> None:
        self.reading = False
        self._update()

    def resume_reading(self) -> None:
        if not self.peer_closed:
            self.reading = True
            self._update()

    def close_when_flushed(self) -> None:
        """Close once what is queued has been written (a reply, then EOF)."""
        if not self.out:
            self.close()
        else:
            self._close_when_flushed = True
            self.pause_reading()

    def close(self) -> None:
        """The one place the socket is released (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.loop._forget(self)
        if self.tls is not None and not self.out:
            try:   # close_notify, if the socket takes it now (never waited for)
                self.tls.unwrap()
            except (ssl.SSLError, ValueError):
                pass
            try:
                self.sock.send(self._tls_out.read())
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass

    # -- the loop's side -----------------------------------------------------

    def _update(self) -> None:
        if self.closed:
            return
        events = (selectors.EVENT_READ if self.reading else 0) | (selectors.EVENT_WRITE if self.out else 0)
        if events == self._events:
            return
        sel = self.loop.selector
        if self._events and events:
            sel.modify(self.fd, events, self)
        elif events:
            sel.register(self.fd, events, self)
        else:
            sel.unregister(self.fd)
        self._events = events

    def _on_writable(self) -> None:
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.out.clear()
            if self._close_when_flushed:
                self.close()
                return
            self._update()
            return
        del self.out[:n]
        if not self.out and self._close_when_flushed:
            self.close()
            return
        self._update()

    def _on_readable(self) -> bytes | None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""   # reset by the peer: an end like EOF
        if self.tls is not None:
            data = self._tls_received(data)
            if data is None:
                return None
        if not data:
            self.peer_closed = True
            self.reading = False
            self._update()
        return data


    def _tls_received(self, raw: bytes) -> bytes | None:
        """Raw bytes in, plaintext out (None: nothing yet; b"": the peer is
        gone — EOF, close_notify, or a failed handshake)."""
        tls = self.tls
        if raw:
            self._tls_in.write(raw)
        else:
            self._tls_in.write_eof()
        plain = []
        try:
            if not self._tls_ready:
                tls.do_handshake()
                self._tls_ready = True
            while True:
                chunk = tls.read(READ_SIZE)
                if not chunk:
                    break
                plain.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            plain.append(b"")
            self._send_raw(self._tls_out.read())
            return b"".join(plain) or b""
        except ssl.SSLError as exc:
            self.loop.tls_failures += 1
            self.loop.last_tls_error = str(exc)
            return b""
        self._send_raw(self._tls_out.read())
        if plain:
            return b"".join(plain)
        return b"" if not raw else None


_CURRENT: "WorkerLoop | None" = None


def current() -> "WorkerLoop":
    """The loop of this worker process (the in-process actors' one)."""
    if _CURRENT is None:
        raise RuntimeError("no worker loop in this process")
    return _CURRENT


class WorkerLoop:
    def make_current(self) -> "WorkerLoop":
        global _CURRENT
        _CURRENT = self
        return self

    def __init__(self, system: Any = None) -> None:
        self.system = system if system is not None else inprocess.start_system()
        self.tier = inprocess.tier(self.system)
        self.tier.on_death(self._owner_died)
        self.selector = selectors.DefaultSelector()
        self.ports: dict[int, Port] = {}
        self._by_owner: dict[str, set[Port]] = {}
        self._listeners: dict[int, tuple[socket.socket, Callable[[socket.socket, Any], None]]] = {}
        self._posted: deque = deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stopping = False
        self._closed = False
        self.thread: threading.Thread | None = None
        self._held: dict[str, Any] = {}   # sockets or loop-owned ports, not yet claimed by an actor
        self._timers: list = []           # loop-level timers (before any actor exists): (due, n, fn)
        self._timer_seq = itertools.count()
        self.after_each: Callable[[], None] | None = None   # runs after every batch of events
        self._names: dict[str, Any] = {}        # register/whereis: name -> in-process address
        self._names_of: dict[str, set[str]] = {}   # actor id -> its names (dropped when it dies)
        self.worker_address: Any = None         # the process-tier actor that runs this loop
        self.worker_index: int | None = None
        self.route: Callable[[str, Any, Any], None] | None = None   # to other workers (set by it)
        self.tls_failures = 0
        self.last_tls_error = ""
        # this worker's subscriptions (by registered name); dropped with their actor
        self.pubsub = PubSub(lambda addresses, msg: inprocess.post_many(self.system, addresses, msg))

    # -- set-up (loop thread, or before it runs) --------------------------------

    def listen(self, sock: socket.socket, on_accept: Callable[[socket.socket, Any], None]) -> None:
        """Accept on ``sock``; ``on_accept(client, peer)`` runs in the loop."""
        sock.setblocking(False)
        self._listeners[sock.fileno()] = (sock, on_accept)
        self.selector.register(sock.fileno(), selectors.EVENT_READ, "listen")

    def stop_listening(self) -> None:
        for fd, (sock, _cb) in list(self._listeners.items()):
            self.selector.unregister(fd)
            sock.close()
        self._listeners.clear()

    def open_port(self, sock: socket.socket, owner: Any) -> Port:
        """Give ``sock`` to the actor at ``owner`` (its only owner from now)."""
        sock.setblocking(False)
        port = Port(self, sock, owner, self.tier.actor_id(owner))
        self.ports[port.fd] = port
        self._by_owner.setdefault(port.owner_id, set()).add(port)
        port._update()
        return port

    def hold(self, key: str, sock: Any) -> None:
        """Keep an accepted socket (or a port the loop owns) until the actor
        made for it claims it."""
        self._held[key] = sock

    def claim(self, key: str, owner: Any) -> Port:
        """The actor at ``owner`` takes the socket or port held under ``key``."""
        held = self._held.pop(key)
        if isinstance(held, Port):
            self.transfer(held, owner)
            return held
        return self.open_port(held, owner)

    def drop_held(self, key: str) -> Any:
        """What is held under ``key`` if nobody claimed it (its actor did not start)."""
        return self._held.pop(key, None)

    def register(self, name: str, address: Any) -> None:
        """Erlang's register/2 for this worker's in-process actors: ``name``
        finds ``address`` until it unregisters or dies."""
        self._names[name] = address
        self._names_of.setdefault(self.tier.actor_id(address), set()).add(name)

    def unregister(self, name: str) -> None:
        address = self._names.pop(name, None)
        if address is not None:
            names = self._names_of.get(self.tier.actor_id(address))
            if names is not None:
                names.discard(name)

    def whereis(self, name: str) -> Any:
        return self._names.get(name)

    def loop_port(self, sock: socket.socket, on_data: Callable[[Port, bytes], None],
                  tls: ssl.SSLContext | None = None) -> Port:
        """A port the loop itself owns (e.g. before the handshake, no actor yet)."""
        sock.setblocking(False)
        port = Port(self, sock, on_data, "loop", tls=tls)
        self.ports[port.fd] = port
        self._by_owner.setdefault("loop", set()).add(port)
        port._update()
        return port

    def transfer(self, port: Port, owner: Any) -> None:
        """Give a port to the actor at ``owner``."""
        owned = self._by_owner.get(port.owner_id)
        if owned is not None:
            owned.discard(port)
        port.owner, port.owner_id = owner, self.tier.actor_id(owner)
        self._by_owner.setdefault(port.owner_id, set()).add(port)

    def call_later(self, delay: float, fn: Callable[[], None]) -> list:
        """Run ``fn()`` in the loop after ``delay`` s; cancel by setting the
        returned handle's [2] to None."""
        entry = [time.monotonic() + delay, next(self._timer_seq), fn]
        heapq.heappush(self._timers, entry)
        return entry

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            fn = heapq.heappop(self._timers)[2]
            if fn is not None:
                fn()

    def _timeout(self) -> float | None:
        timeout = inprocess.next_wakeup_in(self.system)
        if self._timers:
            t = max(0.0, self._timers[0][0] - time.monotonic())
            timeout = t if timeout is None else min(timeout, t)
        return timeout

    # -- any thread -------------------------------------------------------------

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` in the loop thread, soon (dropped once the loop has ended)."""
        if self._closed:
            return
        self._posted.append(fn)
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass   # already awake
        except OSError:
            pass   # the loop ended meanwhile and closed its pipe

    def stop(self) -> None:
        self.post(self._stop)

    # -- the loop -----------------------------------------------------------------

    def start(self, name: str = "worker-loop") -> threading.Thread:
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)
        self.thread.start()
        return self.thread

    def run(self) -> None:
        try:
            while not self._stopping:
                inprocess.run_due(self.system)
                self._run_timers()
                for key, events in self.selector.select(self._timeout()):
                    what = key.data
                    if what == "wake":
                        self._run_posted()
                    elif what == "listen":
                        self._accept(key.fd)
                    else:
                        self._on_port(what, events)
                    if self._stopping:
                        break
                if self.after_each is not None:
                    inprocess.run_due(self.system)
                    self.after_each()
        finally:
            self._close_all()

    def _stop(self) -> None:
        self._stopping = True

    def _run_posted(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self._posted:
            self._posted.popleft()()

    def _accept(self, fd: int) -> None:
        sock, on_accept = self._listeners[fd]
        for _ in range(64):   # a burst, not forever: the other sockets wait
            try:
                client, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return   # EMFILE and friends: try again on the next readiness
            on_accept(client, peer)

    def _on_port(self, port: Port, events: int) -> None:
        if events & selectors.EVENT_WRITE and not port.closed:
            port._on_writable()
        if events & selectors.EVENT_READ and not port.closed and port.reading:
            data = port._on_readable()
            if data is not None:
                if callable(port.owner):
                    port.owner(port, data)
                else:
                    # the system base's tell: ActorSystem.tell only checks the address, and a
                    # port's owner is always an in-process ActorAddress (claim/transfer)
                    self.system._systemBase.tell(port.owner, PortData(port, data))

    def _forget(self, port: Port) -> None:
        if port._events:
            try:
                self.selector.unregister(port.fd)
            except (KeyError, ValueError):
                pass
            port._events = 0
        self.ports.pop(port.fd, None)
        owned = self._by_owner.get(port.owner_id)
        if owned is not None:
            owned.discard(port)
            if not owned:
                del self._by_owner[port.owner_id]

    def _owner_died(self, actor_id: str, killed: bool) -> None:
        for name in self._names_of.pop(actor_id, ()):
            self._names.pop(name, None)
            self.pubsub.drop(name)
        for port in list(self._by_owner.get(actor_id, ())):
            port.close()

    def _close_all(self) -> None:
        self._closed = True
        for port in list(self.ports.values()):
            port.close()
        for held in self._held.values():
            held.close()
        self._held.clear()
        self.stop_listening()
        self.selector.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
