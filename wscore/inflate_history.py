"""What it takes to rebuild a connection's inflate context in a new CompressionActor.

The zlib contexts are the CompressionActor's alone; when it dies (crash or
kill) its successor starts with fresh ones.  A fresh deflate context needs
nothing: after a sync flush, a new compressor's output is valid for the
client's inflater.  The inflate side does: with context takeover the
client's next message may refer back into the last window of plaintext, and
a message may be in progress (some of its chunks inflated and delivered).

So the ConnectionActor keeps, outside the crashing actor, the last window of
plaintext before the message in progress and the compressed chunks of that
message sent so far (plain bytes, never a zlib object).  After a restart the
new inflate context is primed with the window and the chunks are replayed;
the answers for chunks already delivered are dropped, after checking they
add up to what was delivered.  Sans-I/O: :class:`InflateHistory` is driven by
the Session and tested on its own.
"""

from __future__ import annotations


class HistoryMismatch(Exception):
    """A replay produced other output than the first time: the state could not be rebuilt."""


class InflateHistory:
    def __init__(self, window_bits: int, takeover: bool) -> None:
        self.size = 1 << window_bits
        self.takeover = takeover
        self.window = b""          # plaintext window before the message in progress
        self._tail = b""           # the window after the chunks answered so far
        self.chunks: list[tuple[bytes, bool]] = []   # the message in progress, as sent
        self.answered = 0          # chunks of it answered and delivered
        self.produced = 0          # bytes those answers held
        self._skip = 0             # replayed answers still to drop
        self._skip_bytes = 0

    def sent(self, chunk: bytes, final: bool) -> None:
        if not self.chunks:
            self._tail = self.window
        self.chunks.append((chunk, final))

    def answer(self, data: bytes) -> bytes | None:
        """The answer to the oldest chunk not yet answered: the data to
        deliver, or None for the answer to a replayed chunk already delivered."""
        if self._skip:
            self._skip -= 1
            self._skip_bytes -= len(data)
            if self._skip == 0 and self._skip_bytes != 0:
                raise HistoryMismatch("the replayed chunks inflated differently")
            return None
        final = self.chunks[self.answered][1]
        self.answered += 1
        self.produced += len(data)
        if self.takeover:
            n = len(data)
            if n >= self.size:
                self._tail = data[-self.size:]
            elif n:
                self._tail = self._tail[-(self.size - n):] + data if len(self._tail) + n > self.size \
                    else self._tail + data
        if final:
            self.window = self._tail if self.takeover else b""
            self.chunks.clear()
            self.answered = self.produced = 0
        return data

    def failed(self) -> None:
        """Inflating failed (the connection is failing): nothing to replay."""
        self.chunks.clear()
        self.answered = self.produced = self._skip = self._skip_bytes = 0

    def replay(self) -> tuple[bytes, list[tuple[bytes, bool]]]:
        """For a new inflate context: the dictionary to prime it with and the
        chunks to send it again, in order."""
        self._skip, self._skip_bytes = self.answered, self.produced
        return (self.window if self.takeover else b""), list(self.chunks)
