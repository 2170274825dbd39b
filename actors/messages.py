"""Messages between a connection's in-process actors (never pickled: they
stay in one worker; no zlib object is ever in one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CompressionStarted:
    """From a (re)started CompressionActor to its ConnectionActor: ask me to Open."""


@dataclass
class Open:
    """Open the contexts; the inflate one primed with ``zdict`` (the last
    window of plaintext, after a restart with context takeover)."""
    zdict: bytes = b""


@dataclass
class Inflate:
    chunk: bytes
    final: bool


@dataclass
class Inflated:
    data: bytes


@dataclass
class InflateFailed:
    code: int
    reason: str


@dataclass
class Deflate:
    seq: int
    data: bytes


@dataclass
class Deflated:
    seq: int
    payload: bytes | None      # None: send it uncompressed


@dataclass
class Release:
    cause: str


@dataclass
class CompressionLost:
    """From the ConnectionSupervisor: the CompressionActor died (crash or kill)."""
    reason: object
