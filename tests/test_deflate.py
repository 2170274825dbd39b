"""permessage-deflate, sans-I/O: negotiation (RFC 7692) and the contexts."""

from __future__ import annotations

import os
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rawws import deflate_payload

from wscore.deflate import (CompressionError, ContextReleased, Deflater, DeflateSettings, Inflater,
                          negotiate, parse_offers)

S = DeflateSettings()   # preferred window 12


def resp(header, settings=S):
    p = negotiate(header, settings)
    return None if p is None else p.response


# -- negotiation ---------------------------------------------------------------------------


def test_default_browser_and_websockets_offer():
    p = negotiate("permessage-deflate; client_max_window_bits", S)
    assert p.response == "permessage-deflate; client_max_window_bits=12"
    assert (p.deflate_window_bits, p.inflate_window_bits) == (12, 12)


def test_plain_offer_leaves_the_client_window_at_15():
    p = negotiate("permessage-deflate", S)
    assert p.response == "permessage-deflate"
    assert (p.deflate_window_bits, p.inflate_window_bits) == (12, 15)  # we may deflate smaller


@pytest.mark.parametrize("offer,response,deflate_bits,inflate_bits", [
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover", 12, 15),
    ("permessage-deflate; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover", 12, 15),
    ("permessage-deflate; server_max_window_bits=10",
     "permessage-deflate; server_max_window_bits=10", 10, 15),
    ("permessage-deflate; server_max_window_bits=15",     # answered with what we use (<= offer)
     "permessage-deflate; server_max_window_bits=12", 12, 15),
    ("permessage-deflate; client_max_window_bits=9",
     "permessage-deflate; client_max_window_bits=9", 12, 9),
    ("permessage-deflate; client_max_window_bits=15",
     "permessage-deflate; client_max_window_bits=12", 12, 12),
    ('permessage-deflate; server_max_window_bits="11"',   # a quoted token is allowed
     "permessage-deflate; server_max_window_bits=11", 11, 15),
    ("permessage-deflate; server_max_window_bits=8",      # see test_window_8_* below
     "permessage-deflate; server_max_window_bits=8", 8, 15),
    ("permessage-deflate; client_max_window_bits=8",
     "permessage-deflate; client_max_window_bits=8", 12, 8),
    ("PerMessage-Deflate; Server_No_Context_Takeover; client_max_window_bits",
     "permessage-deflate; server_no_context_takeover; client_max_window_bits=12", 12, 12),
])
def test_each_parameter(offer, response, deflate_bits, inflate_bits):
    p = negotiate(offer, S)
    assert p.response == response
    assert (p.deflate_window_bits, p.inflate_window_bits) == (deflate_bits, inflate_bits)


@pytest.mark.parametrize("offer", [
    "permessage-deflate; unknown_param",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits=10; client_max_window_bits=11",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; client_no_context_takeover=true",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=09",
    "permessage-deflate; server_max_window_bits=abc",
    "permessage-deflate; client_max_window_bits=1.5",
    "permessage-deflate; client_max_window_bits=",
    "permessage-deflate; =3",
    'permessage-deflate; server_max_window_bits="1 0"',
    'permessage-deflate; server_max_window_bits="10',
])
def test_malformed_offers_are_declined(offer):
    assert negotiate(offer, S) is None


def test_first_acceptable_offer_wins_in_order():
    header = ("x-webkit-deflate-frame, permessage-deflate; bogus, "
              "permessage-deflate; client_no_context_takeover, permessage-deflate")
    assert resp(header) == "permessage-deflate; client_no_context_takeover"


def test_disabled_and_other_extensions():
    assert negotiate("permessage-deflate", DeflateSettings(enabled=False)) is None
    assert negotiate("x-other; a=1", S) is None
    assert parse_offers('a; b="xy"; c, d') == [("a", [("b", "xy"), ("c", None)]), ("d", [])]
    assert parse_offers('a; b="x,y", d') == [("a", None), ("d", [])]  # not a token: malformed


@given(st.text(max_size=200))
def test_negotiation_never_crashes(header):
    p = negotiate(header, S)
    assert p is None or p.response.startswith("permessage-deflate")


@given(st.lists(st.sampled_from([
    "server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits=10",
    "server_max_window_bits=8", "client_max_window_bits", "client_max_window_bits=9",
    "server_max_window_bits", "junk", "client_max_window_bits=16"]), max_size=5))
def test_accepted_response_only_echoes_what_was_offered(params):
    p = negotiate("; ".join(["permessage-deflate"] + params), S)
    names = [x.split("=")[0] for x in params]
    if p is None:
        assert len(set(names)) != len(names) or any(
            x in ("server_max_window_bits", "junk", "client_max_window_bits=16") for x in params)
        return
    for part in p.response.split("; ")[1:]:
        assert part.split("=")[0] in names  # RFC 7692: never a parameter the client did not offer


# -- contexts --------------------------------------------------------------------------------


def client_deflate(messages, wbits=15, takeover=True):
    """What a client sends: raw deflate, sync flush, tail stripped."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = []
    for m in messages:
        data = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        out.append(data[:-4])
        if not takeover:
            c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    return out


def client_inflate(payloads, wbits=15):
    d = zlib.decompressobj(-wbits)
    return [d.decompress(p + b"\x00\x00\xff\xff") for p in payloads]


@pytest.mark.parametrize("takeover", [True, False])
def test_roundtrip_across_messages(takeover):
    msgs = [b"hello " * 50, b"hello world " * 40, b"", os.urandom(300), b"hello " * 50]
    inf = Inflater("i", 15, not takeover, 1 << 20, 25)
    assert [inf.inflate(p, True) for p in client_deflate(msgs, takeover=takeover)] == msgs
    dfl = Deflater("d", 12, 6, 5, not takeover)
    assert client_inflate([dfl.compress(m) for m in msgs]) == msgs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"", b"hello " * 50, b"hello world " * 40, b"abc" * 3000, b"x"]),
                min_size=1, max_size=8),
       st.sampled_from([(12, 6, 5), (15, 1, 8), (9, 9, 9)]))
def test_no_context_takeover_messages_inflate_each_with_a_fresh_inflater(msgs, config):
    """server_no_context_takeover: every message decodes on its own, although one
    zlib stream deflates them all (repeated messages tempt back-references)."""
    wbits, level, mem = config
    dfl = Deflater("d", wbits, level, mem, True)
    for m in msgs:
        payload = dfl.compress(m)
        assert zlib.decompressobj(-max(wbits, 9)).decompress(payload + b"\x00\x00\xff\xff") == m
    # and a client that keeps one inflater decodes them too
    dfl = Deflater("d", wbits, level, mem, True)
    assert client_inflate([dfl.compress(m) for m in msgs], wbits=max(wbits, 9)) == msgs


def test_inflate_in_fragments():
    [payload] = client_deflate([b"abc" * 10000])
    inf = Inflater("i", 15, False, 1 << 20, 25)
    parts = [payload[i:i + 7] for i in range(0, len(payload), 7)]
    out = b"".join(inf.inflate(p, i == len(parts) - 1) for i, p in enumerate(parts))
    assert out == b"abc" * 10000


def repeating(block_len, total):
    block = os.urandom(block_len)
    return (block * (total // block_len + 1))[:total]


@settings(max_examples=60, deadline=None)
@given(st.integers(257, 520), st.integers(300, 20000), st.booleans())
def test_window_8_deflate_output_inflates_with_an_8_bit_window(block, total, no_takeover):
    """server_max_window_bits=8: we deflate with zlib's 9 (it refuses 8), whose
    matches reach at most 250 bytes back: an 8-bit (256-byte) inflater decodes it."""
    dfl = Deflater("d", 8, 9, 9, no_takeover)
    msgs = [repeating(block, total), repeating(block, total // 2), b"x" * 1000]
    assert client_inflate([dfl.compress(m) for m in msgs], wbits=8) == msgs


def test_window_8_inflate():
    msgs = [repeating(200, 5000), b"hello " * 100]
    inf = Inflater("i", 8, False, 1 << 20, 25)
    # a zlib-based client asked for an 8-bit window compresses with 9 (distance <= 250)
    c = zlib.compressobj(6, zlib.DEFLATED, -9)
    payloads = [deflate_payload(m, c) for m in msgs]
    assert [inf.inflate(p, True) for p in payloads] == msgs


def test_inflate_bomb_stops_at_the_message_limit_with_bounded_memory():
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = c.compress(bytes(64 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)   # 64 MiB of zeros
    assert len(bomb) < 100_000
    inf = Inflater("i", 15, False, 1 << 20, 25)
    tracemalloc.start()
    with pytest.raises(CompressionError) as info:
        inf.inflate(bomb[:-4], True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.value.code == 1009
    assert peak < 8 << 20, peak   # never the 64 MiB


def test_inflate_ratio_limit():
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = c.compress(bytes(3 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(CompressionError) as info:
        Inflater("i", 15, False, None, 25).inflate(zeros[:-4], True)
    assert info.value.code == 1009 and "ratio" in info.value.reason
    assert Inflater("i", 15, False, None, 0).inflate(zeros[:-4], True) == bytes(3 << 20)


def test_invalid_compressed_data_is_1007():
    with pytest.raises(CompressionError) as info:
        Inflater("i", 15, False, 1 << 20, 25).inflate(b"\xff\xff\xff\xff", True)
    assert info.value.code == 1007


def test_release_is_a_once_only_transition():
    d = Deflater("d", 12, 6, 5, False)
    assert d.is_open
    assert d.release("close") is True
    assert d.release("shutdown") is False   # the second release does nothing
    assert d.released_cause == "close"
    with pytest.raises(ContextReleased):
        d.compress(b"x")                    # never touches a released zlib stream
    i = Inflater("i", 12, False, 100, 25)
    assert i.release("error") and not i.release("error")
    with pytest.raises(ContextReleased):
        i.inflate(b"", True)


def test_primed_inflater_continues_a_stream():
    """Rebuilding an inflate context from the last window of plaintext."""
    msgs = [b"the quick brown fox " * 30, b"the quick brown fox jumps " * 30]
    p1, p2 = client_deflate(msgs, wbits=12)
    window = msgs[0][-(1 << 12):]
    fresh = Inflater("i2", 12, False, 1 << 20, 25, zdict=window)
    assert fresh.inflate(p2, True) == msgs[1]
