"""permessage-deflate (RFC 7692), sans-I/O: negotiation and the zlib contexts.

Negotiation walks the client's offers in order and accepts the first
acceptable one; an offer with an unknown, repeated or malformed parameter, a
value where none is allowed, or window bits outside 8..15 is declined (the
next one is tried) — never a crash.

Window bits of 8: zlib's deflate cannot be initialised with an 8-bit window
(``zlib.compressobj(wbits=-8)`` raises; the C library silently uses 9).  A
9-bit deflater never emits a back-reference farther than 512 - 262 = 250
bytes (zlib's MAX_DIST = window size - MIN_LOOKAHEAD), so its output is
decodable by an inflater with a 256-byte window.  wsup therefore accepts
``server_max_window_bits=8``, answers 8 and deflates with 9 —
``tests/test_deflate.py`` checks that every such output inflates with an
8-bit window.  Inflating with 8 bits works directly.

The contexts (:class:`Deflater`, :class:`Inflater`) live only in a
CompressionActor.  ``release(cause)`` is a state transition that drops the
zlib object exactly once and returns False on any later call.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from wscore.protocol import ProtocolFailure

EXTENSION = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"
INFLATE_RATIO_FLOOR = 1 << 20     # below 1 MiB of output a message is never a "bomb"
_WBITS = re.compile(r"^(?:[89]|1[0-5])$")


@dataclass(frozen=True)
class DeflateSettings:
    """The server's compression options (``wsup serve --compression-*``)."""
    enabled: bool = True
    level: int = 1                 # zlib's fastest, as aiohttp: ~2x less CPU than 6, ~3% larger (docs/compression.md)
    mem_level: int = 5
    window_bits: int = 12          # preferred window for both directions (memory per connection)
    threshold: int = 64            # messages shorter than this are sent uncompressed
    max_inflate_ratio: float = 25.0  # inflated/compressed above this (past 1 MiB) -> 1009; 0: off

    def check(self) -> None:
        if not 0 <= self.level <= 9:
            raise ValueError("compression level must be 0..9")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("compression mem level must be 1..9")
        if not 8 <= self.window_bits <= 15:
            raise ValueError("compression window bits must be 8..15")
        if self.threshold < 0 or self.max_inflate_ratio < 0:
            raise ValueError("compression threshold and ratio must be >= 0")


@dataclass(frozen=True)
class DeflateParams:
    """What was agreed with one client."""
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    deflate_window_bits: int = 15    # the window our deflater may use (agreed or preferred)
    inflate_window_bits: int = 15    # the window the client may use
    response: str = EXTENSION
    agreed: dict = field(default_factory=dict)


# -- parsing (RFC 7230 / 6455 section 9.1) ------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class _Malformed(Exception):
    pass


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quoted strings."""
    if '"' not in text:
        return text.split(sep)      # nothing quoted (every offer seen in practice): the same split
    parts, cur, quoted, esc = [], [], False, False
    for ch in text:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            esc = True
        elif ch == '"':
            cur.append(ch)
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _param(text: str) -> tuple[str, str | None]:
    name, eq, value = text.partition("=")
    name = name.strip()
    if not _TOKEN.fullmatch(name):
        raise _Malformed(text)
    if not eq:
        return name.lower(), None
    value = value.strip()
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise _Malformed(text)
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    if not _TOKEN.fullmatch(value):
        raise _Malformed(text)  # RFC 7692: a quoted value must still be a token
    return name.lower(), value


def parse_offers(header: str) -> list[tuple[str, Any]]:
    """[(extension name, [(param, value | None), ...] or None if malformed)]"""
    offers = []
    for element in _split_top(header, ","):
        if not element.strip():
            continue
        pieces = _split_top(element, ";")
        name = pieces[0].strip().lower()
        try:
            if not _TOKEN.fullmatch(name):
                raise _Malformed(name)
            params = [_param(p) for p in pieces[1:]]
        except _Malformed:
            params = None
        offers.append((name, params))
    return offers


# -- negotiation ---------------------------------------------------------------------


def _accept(params: list[tuple[str, str | None]], settings: DeflateSettings) -> DeflateParams | None:
    seen: set[str] = set()
    snct = cnct = False
    smwb: int | None = None
    cmwb: Any = None   # None: not offered; True: offered bare; int: offered with a value
    for name, value in params:
        if name in seen:
            return None
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
            if name == "server_no_context_takeover":
                snct = True
            else:
                cnct = True
        elif name == "server_max_window_bits":
            if value is None or not _WBITS.match(value):
                return None
            smwb = int(value)
        elif name == "client_max_window_bits":
            if value is None:
                cmwb = True
            elif _WBITS.match(value):
                cmwb = int(value)
            else:
                return None
        else:
            return None
    response = [EXTENSION]
    agreed: dict[str, Any] = {}
    if snct:
        response.append("server_no_context_takeover")
        agreed["server_no_context_takeover"] = True
    if cnct:
        response.append("client_no_context_takeover")
        agreed["client_no_context_takeover"] = True
    deflate_bits = settings.window_bits
    if smwb is not None:
        deflate_bits = min(deflate_bits, smwb)
        response.append(f"server_max_window_bits={deflate_bits}")
        agreed["server_max_window_bits"] = deflate_bits
    if cmwb is None:
        inflate_bits = 15   # the client did not offer the parameter: it may use 15
    else:
        inflate_bits = settings.window_bits if cmwb is True else min(cmwb, settings.window_bits)
        response.append(f"client_max_window_bits={inflate_bits}")
        agreed["client_max_window_bits"] = inflate_bits
    return DeflateParams(snct, cnct, deflate_bits, inflate_bits, "; ".join(response), agreed)


def negotiate(header: str, settings: DeflateSettings) -> DeflateParams | None:
    """The first acceptable permessage-deflate offer in ``header``, or None."""
    if not settings.enabled:
        return None
    for name, params in parse_offers(header):
        if name != EXTENSION or params is None:
            continue
        accepted = _accept(params, settings)
        if accepted is not None:
            return accepted
    return None


# -- contexts ---------------------------------------------------------------------------


class ContextReleased(RuntimeError):
    """A released context was used: a bug the structure is meant to make impossible."""


class CompressionError(ProtocolFailure):
    """Fails the connection with ``code`` (1007 bad data, 1009 too big, 1011)."""


class _Context:
    direction = ""

    def __init__(self, context_id: str, window_bits: int) -> None:
        self.context_id = context_id
        self.window_bits = window_bits
        self.released_cause: str | None = None
        self._obj: Any = self._new()

    def _new(self) -> Any:
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        return self.released_cause is None

    def release(self, cause: str) -> bool:
        """Drop the zlib stream.  True the first time; False (and nothing
        happens) on any later call."""
        if self.released_cause is not None:
            return False
        self._obj = None          # the zlib object is freed here, once
        self.released_cause = cause
        return True

    def _live(self) -> Any:
        if self._obj is None:
            raise ContextReleased(f"{self.direction} context {self.context_id} was released "
                                  f"({self.released_cause})")
        return self._obj


class Deflater(_Context):
    direction = "deflate"

    def __init__(self, context_id: str, window_bits: int, level: int, mem_level: int,
                 no_context_takeover: bool) -> None:
        self.level, self.mem_level, self.no_context_takeover = level, mem_level, no_context_takeover
        super().__init__(context_id, window_bits)

    def _new(self) -> Any:
        # zlib refuses an 8-bit raw deflate window; 9 stays within 250 bytes (see above).
        return zlib.compressobj(self.level, zlib.DEFLATED, -max(self.window_bits, 9), self.mem_level)

    def compress(self, data: bytes) -> bytes:
        obj = self._live()
        # No context takeover: Z_FULL_FLUSH ends the message as Z_SYNC_FLUSH does and
        # resets the compression state, so the next message refers to nothing before it
        # (zlib.h: "decompression can restart from this point").  One stream for the
        # connection instead of a new compressobj per message (aiohttp does the same):
        # 9.2 -> 6.6 us per 1 KiB message, ten connections in turn (2026-12-04).
        out = obj.compress(data) + obj.flush(zlib.Z_FULL_FLUSH if self.no_context_takeover
                                             else zlib.Z_SYNC_FLUSH)
        if out.endswith(TAIL):
            out = out[:-4]
        return out or b"\x00"  # an empty message deflates to one empty stored block


class Inflater(_Context):
    """Inflates one message at a time, in bounded steps: output beyond
    ``max_message_size`` or a ratio beyond ``max_ratio`` stops it (1009)."""

    direction = "inflate"

    def __init__(self, context_id: str, window_bits: int, no_context_takeover: bool,
                 max_message_size: int | None, max_ratio: float, zdict: bytes = b"") -> None:
        self.no_context_takeover = no_context_takeover
        self.max_message_size = max_message_size
        self.max_ratio = max_ratio
        self._zdict = zdict
        self.msg_in = 0
        self.msg_out = 0
        super().__init__(context_id, window_bits)

    def _new(self) -> Any:
        if self._zdict:
            obj = zlib.decompressobj(-self.window_bits, zdict=self._zdict)
            self._zdict = b""  # priming is for the first stream only
            return obj
        return zlib.decompressobj(-self.window_bits)

    def inflate(self, data: bytes, final: bool) -> bytes:
        obj = self._live()
        if final:
            data = data + TAIL
        self.msg_in += len(data)
        limit = self.max_message_size
        out = []
        while True:
            room = (limit - self.msg_out + 1) if limit is not None else 1 << 20
            try:
                chunk = obj.decompress(data, max(room, 1))
            except zlib.error as exc:
                raise CompressionError(1007, f"invalid compressed data: {exc}") from None
            self.msg_out += len(chunk)
            out.append(chunk)
            if limit is not None and self.msg_out > limit:
                raise CompressionError(1009, f"message inflates to more than {limit} bytes")
            if (self.max_ratio and self.msg_out > INFLATE_RATIO_FLOOR
                    and self.msg_out > self.max_ratio * self.msg_in):
                raise CompressionError(1009, f"inflate ratio over {self.max_ratio:g}")
            data = obj.unconsumed_tail
            if not data and len(chunk) < room:
                break  # all input consumed and no output left pending
        if obj.eof:
            # The client ended the stream (BFINAL): the next message starts a new one.
            self._obj = self._new()
        if final:
            self.msg_in = self.msg_out = 0
            if self.no_context_takeover:
                self._obj = self._new()
        return b"".join(out)
