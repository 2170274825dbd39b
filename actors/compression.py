"""CompressionActor (in-process): the only holder of one connection's zlib contexts.

Started (or restarted by its ConnectionSupervisor after a crash or a
kill), it tells its ConnectionActor, which answers Open — with the last
window of plaintext to prime the inflate context after a restart
(wscore.inflate_history) — and it opens them: write-ahead, the worker's ledger
records them before the zlib objects exist.  It uses them for the Inflate/Deflate requests
of its ConnectionActor (in-process Thespian messages, answered in order), and
releases them in exactly one place, :meth:`_release_all`: on Release (the
close frame arrived) or in ``terminate`` (crash, shutdown).  A second release
is a logged no-op (Bandit #478).  Killed (no terminate), its contexts are
recorded released with cause ``owner_died`` by the ledger's death hook.
"""

from __future__ import annotations

import os
from typing import Any

from actors.messages import (CompressionStarted, Deflate, Deflated, Inflate, Inflated, InflateFailed,
                                    Open, Release)
from supervisors import SHUTDOWN, Error, SupervisedActor, faults
from wscore.ids import token_hex
from wscore.deflate import CompressionError, ContextReleased, Deflater, DeflateParams, DeflateSettings, Inflater
from wscore.ledger import worker_ledger


def new_context_id() -> str:
    return "z" + token_hex(6)


class CompressionActor(SupervisedActor):
    deflater: Deflater | None = None
    inflater: Inflater | None = None

    def init(self, connection_id: str, params: DeflateParams, settings: DeflateSettings,
             max_message_size: int | None, owner: Any) -> None:
        self.connection_id = connection_id
        self.params, self.settings, self.max_message_size = params, settings, max_message_size
        self.send(owner, CompressionStarted())

    def _open(self, zdict: bytes) -> None:
        if self.deflater is not None:
            return
        p, s = self.params, self.settings
        ids = (new_context_id(), new_context_id())
        self.ledger = worker_ledger()
        self.ledger.opened([
            {"context_id": ids[0], "direction": "deflate", "window_bits": p.deflate_window_bits, "primed_bytes": 0},
            {"context_id": ids[1], "direction": "inflate", "window_bits": p.inflate_window_bits,
             "primed_bytes": len(zdict)}], os.getpid(), owner=self.actor_id,
            connection_id=self.connection_id)
        if faults.ACTIVE:
            faults.point("compression.open")
        self.deflater = Deflater(ids[0], p.deflate_window_bits, s.level, s.mem_level, p.server_no_context_takeover)
        self.inflater = Inflater(ids[1], p.inflate_window_bits, p.client_no_context_takeover,
                                 self.max_message_size, s.max_inflate_ratio, zdict=zdict)

    def handle_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, Inflate):
            if faults.ACTIVE:
                faults.point("compression.inflate")
            try:
                self.send(sender, Inflated(self.inflater.inflate(message.chunk, message.final)))
            except CompressionError as exc:
                self.send(sender, InflateFailed(exc.code, exc.reason))
            except ContextReleased as exc:   # a request after the release: the connection is ending
                self.send(sender, InflateFailed(1011, str(exc)))
        elif isinstance(message, Deflate):
            if faults.ACTIVE:
                faults.point("compression.deflate")
            try:
                payload = self.deflater.compress(message.data)
            except ContextReleased:
                payload = None     # uncompressed is always valid under permessage-deflate
            self.send(sender, Deflated(message.seq, payload))
        elif isinstance(message, Open):
            self._open(message.zdict)
        elif isinstance(message, Release):
            self._release_all(message.cause)

    def _release_all(self, cause: str) -> None:
        """The one place contexts are released."""
        if faults.ACTIVE:
            faults.point("compression.release", cause=cause)
        for ctx in (self.deflater, self.inflater):
            if ctx is None:
                continue
            first_cause = ctx.released_cause
            if ctx.release(cause):
                self.ledger.released(ctx.context_id, cause, os.getpid())
            else:
                self.log.info("compression.release.ignored", context_id=ctx.context_id,
                              why=f"already released ({first_cause})", cause=cause)

    def terminate(self, reason: Any) -> None:
        if isinstance(reason, Error):
            cause = "error"
        elif reason == SHUTDOWN or (isinstance(reason, tuple) and reason[:1] == (SHUTDOWN,)):
            cause = "shutdown"
        else:
            cause = "close"
        self._release_all(cause)
