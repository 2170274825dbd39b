"""CompressionActor: the only owner of one connection's zlib contexts.

It creates the deflate and inflate contexts (wsup.deflate) when its
ConnectionActor connects over the direct channel (wsup.zchannel), uses them
for that connection's frames, and releases them in exactly one place,
:meth:`_release_all` — on the ConnectionActor's request (the close frame
arrived), or from ``terminate`` (crash, shutdown).  A release is a state
transition of the context: the second request for the same context is a
no-op, logged as ``compression.release.ignored`` (Bandit #478).

The ConnectionActor never holds a zlib object.  The records
``compression.context.opened`` / ``.released`` are written by the
ConnectionSupervisor from this actor's notices and exit report (and, if this
actor is killed, with cause ``owner_died``): one writer, so each context is
recorded released exactly once.  Opening is write-ahead: the contexts' ids
are recorded by the supervisor (which answers the notice) before the zlib
objects exist, so a context this actor dies holding is always on record and
gets its ``owner_died`` release.

Threads: Thespian's loop costs ~0.3 ms per watched-socket event, ten times a
socket round trip, so the channel is served by one thread of this actor with
blocking I/O, while the actor's Thespian thread keeps the lifecycle.  Every
use of a context and its release happen under one lock.  What the channel
thread cannot do itself (send Thespian messages, crash the actor) it hands
to the Thespian thread through a self-pipe that thread watches: an exception
in the channel thread crashes the actor, as it would in a handler.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import threading
from typing import Any

from thespian.actors import WatchMessage

from supervisors import SHUTDOWN, Error, NoticeReply, SupervisedActor, faults
from supervisors.mailbox import Mailbox
from wsup.deflate import (CompressionError, ContextReleased, Deflater, DeflateParams,
                          DeflateSettings, Inflater)
from wsup.zchannel import (ERR, FLAG_FINAL, OK, OP_DEFLATE, OP_INFLATE, OP_OPEN, OP_RELEASE, REQ,
                           encode_reply)


RECV_SIZE = 65536
RECORD_TIMEOUT = 10.0   # the supervisor takes note of new contexts within this


def new_context_id() -> str:
    return "z" + secrets.token_hex(6)


class CompressionActor(SupervisedActor):
    def init(self, connection_id: str, name: str, params: DeflateParams, settings: DeflateSettings,
             max_message_size: int | None) -> None:
        self.connection_id = connection_id
        self.params = params
        self.settings = settings
        self.max_message_size = max_message_size
        self.listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listen.bind("\0" + name)
        self.listen.listen(4)
        self.chan: socket.socket | None = None
        self.deflater: Deflater | None = None
        self.inflater: Inflater | None = None
        self.released: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.recorded = threading.Event()   # the supervisor has the open on record
        self.mailbox = Mailbox()   # channel thread -> Thespian thread
        self.thread = threading.Thread(target=self._serve_channel, name=f"zchannel-{connection_id}",
                                       daemon=True)
        self.thread.start()

    # -- Thespian thread ------------------------------------------------------

    def watched_fds(self) -> list[int]:
        return [self.mailbox.fileno()]

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, WatchMessage) and self.mailbox.fileno() in message.ready:
            for notice in self.mailbox.drain():   # a crash of the channel thread re-raises here
                self.notify_supervisor(notice)
        elif (isinstance(message, NoticeReply) and sender == self.supervisor
              and message.payload == ("compression.recorded", self._pending_ids)):
            self.recorded.set()

    # -- channel thread -------------------------------------------------------

    def _serve_channel(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    chan, _ = self.listen.accept()
                except OSError:
                    return  # the listening socket was shut down: we are stopping
                if not self._peer_is_us(chan):
                    chan.close()
                    continue
                self.chan = chan
                try:
                    self._serve_one(chan)
                finally:
                    self.chan = None
                    chan.close()
        except Exception as exc:  # a crash of the channel thread is a crash of the actor
            # Stop serving at once, so the ConnectionActor turns to our successor.
            for sock in (self.chan, self.listen):
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.mailbox.crash(exc)

    @staticmethod
    def _peer_is_us(chan: socket.socket) -> bool:
        _pid, uid, _gid = struct.unpack("3i", chan.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
        return uid == os.getuid()

    def _serve_one(self, chan: socket.socket) -> None:
        buf = bytearray()
        chunk = bytearray(RECV_SIZE)   # reused: recv(n) would allocate n bytes per call
        view = memoryview(chunk)
        while not self.stopping.is_set():
            try:
                got = chan.recv_into(chunk)
            except OSError:
                return
            if not got:
                return  # the ConnectionActor closed its end
            buf += view[:got]
            while len(buf) >= REQ.size:
                op, flags, n = REQ.unpack_from(buf)
                if len(buf) < REQ.size + n:
                    break
                payload = bytes(buf[REQ.size:REQ.size + n])
                del buf[:REQ.size + n]
                reply = self._handle(op, flags, payload)
                try:
                    chan.sendall(reply)
                except OSError:
                    return

    def _handle(self, op: int, flags: int, payload: bytes) -> bytes:
        with self.lock:
            try:
                if op == OP_INFLATE:
                    if faults.ACTIVE:
                        faults.point("compression.inflate")
                    return encode_reply(OK, 0, self._inflater().inflate(payload, bool(flags & FLAG_FINAL)))
                if op == OP_DEFLATE:
                    if faults.ACTIVE:
                        faults.point("compression.deflate")
                    return encode_reply(OK, 0, self._deflater().compress(payload))
                if op == OP_OPEN:
                    self._open(payload)
                    ids = {"deflate": self.deflater.context_id, "inflate": self.inflater.context_id}
                    return encode_reply(OK, 0, json.dumps(ids).encode())
                if op == OP_RELEASE:
                    self._release_all(payload.decode() or "close")
                    return encode_reply(OK)
                return encode_reply(ERR, 1011, b"unknown request")
            except CompressionError as exc:
                return encode_reply(ERR, exc.code, exc.reason.encode())
            except ContextReleased as exc:
                return encode_reply(ERR, 1011, str(exc).encode())

    def _deflater(self) -> Deflater:
        if self.deflater is None:
            raise ContextReleased("no deflate context")
        return self.deflater

    def _inflater(self) -> Inflater:
        if self.inflater is None:
            raise ContextReleased("no inflate context")
        return self.inflater

    _pending_ids: tuple = ()

    def _open(self, zdict: bytes) -> None:
        """Open this actor's contexts (once; a second OPEN reuses them).

        Write-ahead: first the supervisor records them (and answers), then
        the zlib objects are made.  Dying in between leaves contexts on
        record that never existed, released as owner_died: never the
        reverse, a context in use that the log does not know."""
        if self.deflater is not None:
            return
        p, s = self.params, self.settings
        ids = (new_context_id(), new_context_id())
        self._pending_ids = ids
        self.recorded.clear()
        self.mailbox.put(("compression.opened", [
            {"context_id": ids[0], "direction": "deflate", "window_bits": p.deflate_window_bits,
             "owner": os.getpid(), "primed_bytes": 0},
            {"context_id": ids[1], "direction": "inflate", "window_bits": p.inflate_window_bits,
             "owner": os.getpid(), "primed_bytes": len(zdict)}]))
        deadline = RECORD_TIMEOUT
        while not self.recorded.wait(0.05):
            if self.stopping.is_set():
                raise ContextReleased("stopping before the contexts were opened")
            deadline -= 0.05
            if deadline <= 0:
                raise RuntimeError("the supervisor did not record the new contexts in "
                                   f"{RECORD_TIMEOUT:.0f} s")
        if faults.ACTIVE:
            faults.point("compression.open")
        self.deflater = Deflater(ids[0], p.deflate_window_bits, s.level, s.mem_level,
                                 p.server_no_context_takeover)
        self.inflater = Inflater(ids[1], p.inflate_window_bits, p.client_no_context_takeover,
                                 self.max_message_size, s.max_inflate_ratio, zdict=zdict)

    # -- release: either thread, under the lock ---------------------------------

    def _release_all(self, cause: str) -> None:
        """The one place contexts are released (caller holds the lock)."""
        if faults.ACTIVE:
            faults.point("compression.release", cause=cause)
        newly = []
        for ctx in (self.deflater, self.inflater):
            if ctx is None:
                continue
            first_cause = ctx.released_cause
            if ctx.release(cause):
                newly.append((ctx.context_id, cause, os.getpid()))
            else:
                self.log.info("compression.release.ignored", connection_id=self.connection_id,
                              context_id=ctx.context_id, why=f"already released ({first_cause})",
                              cause=cause)
        if newly:
            self.released.extend(newly)
            self.mailbox.put(("compression.released", newly))

    def terminate(self, reason: Any) -> None:
        if isinstance(reason, Error):
            cause = "error"
        elif reason == SHUTDOWN or (isinstance(reason, tuple) and reason[:1] == (SHUTDOWN,)):
            cause = "shutdown"
        else:
            cause = "close"
        self.stopping.set()
        for sock in (self.listen, self.chan):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with self.lock:
            self._release_all(cause)
        self.thread.join(timeout=1.0)
        self.listen.close()
        # What the channel thread left (the exit report repeats the releases).
        for notice in self.mailbox.drain(raise_crash=False):
            self.notify_supervisor(notice)
        self.mailbox.close()

    def exit_details(self) -> Any:
        return {"released": list(self.released)}
