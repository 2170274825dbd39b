"""The opening handshake's HTTP parsing (wscore/handshake.py), sans-I/O.

Our request-head parser replaced h11 on the setup path; h11 (installed with
wsproto) stays the reference: the differential test feeds both the same
heads, valid and broken, and checks they agree on accept/reject and on every
header field."""

from __future__ import annotations

import base64

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wscore.handshake import BadRequest, ServerHandshake, accept_key, parse_request_head

KEY = base64.b64encode(b"0123456789abcdef").decode()


def request(extra: str = "", target: str = "/chat?room=1", version: str = "1.1", method: str = "GET") -> bytes:
    return (f"{method} {target} HTTP/{version}\r\nHost: example\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
            f"{extra}\r\n").encode("latin-1")


def test_accepts_an_upgrade_and_keeps_the_bytes_after_it():
    hs = ServerHandshake()
    res = hs.receive_data(request() + b"\x81\x80frame")
    assert res.accepted and res.status == 101
    assert (res.path, res.query, res.trailing) == ("/chat", "room=1", b"\x81\x80frame")
    assert f"Sec-WebSocket-Accept: {accept_key(KEY)}".encode() in res.response
    assert res.headers["upgrade"] == "websocket"


@pytest.mark.parametrize("cut", [1, 5, 17, 40, -4, -3, -2, -1])
def test_any_split_gives_the_same_result(cut):
    raw = request()
    hs = ServerHandshake()
    assert hs.receive_data(raw[:cut]) is None
    res = hs.receive_data(raw[cut:])
    assert res.accepted and res.path == "/chat"


def test_byte_by_byte():
    raw = request("Origin: http://a\r\n")
    hs = ServerHandshake()
    results = [hs.receive_data(raw[i:i + 1]) for i in range(len(raw))]
    assert all(r is None for r in results[:-1]) and results[-1].accepted


def test_repeated_fields_are_joined():
    res = ServerHandshake(subprotocols=["b"]).receive_data(
        request("Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n"))
    assert res.headers["sec-websocket-protocol"] == "a, b" and res.subprotocol == "b"


@pytest.mark.parametrize("raw, status", [
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 400),                    # no Host
    (request().replace(b"Upgrade: websocket", b"Upgrade : websocket"), 400),  # space before colon
    (request().replace(b"Host: example\r\n", b"\tHost: example\r\n"), 400),   # folding the request line
    (request().replace(b"Host: example", b"Host: exa\x00mple"), 400),
    (request().replace(b"Host: example", b"Ho(st: example"), 400),
    (request(version="1.0"), 400),
    (request(version="2.0"), 400),
    (request(method="POST"), 400),
    (request("Content-Length: 5\r\n"), 400),
    (request("Transfer-Encoding: chunked\r\n"), 400),
    (request().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), 426),
])
def test_bad_requests(raw, status):
    res = ServerHandshake().receive_data(raw)
    assert res is not None and not res.accepted and res.status == status
    assert res.response.startswith(b"HTTP/1.1 %d " % status)


def test_oversized_head_is_431_before_its_end():
    hs = ServerHandshake(max_request_bytes=1024)
    assert hs.receive_data(b"GET / HTTP/1.1\r\n") is None
    res = hs.receive_data(b"X-Filler: " + b"a" * 2000)
    assert res.status == 431


def test_eof_before_the_end_is_400():
    hs = ServerHandshake()
    assert hs.receive_data(request()[:30]) is None
    assert hs.receive_data(b"").status == 400


def test_obsolete_line_folding_is_unfolded():
    res = ServerHandshake().receive_data(request().replace(b"Connection: Upgrade\r\n",
                                                            b"Connection: keep-alive,\r\n\t Upgrade\r\n"))
    assert res.accepted and res.headers["connection"] == "keep-alive, Upgrade"


def test_origin_allow_list_is_403():
    hs = ServerHandshake(origins=["https://ok.example"])
    assert hs.receive_data(request("Origin: https://evil.example\r\n")).status == 403
    assert ServerHandshake(origins=["https://ok.example/"]).receive_data(
        request("Origin: https://OK.example\r\n")).accepted


def test_absolute_form_target():
    res = ServerHandshake().receive_data(request(target="http://example/a/b?x=1"))
    assert res.accepted and (res.path, res.query) == ("/a/b", "x=1")


# -- differential: h11 as the reference ----------------------------------------

def h11_parse(head: bytes):
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head + b"\r\n\r\n")
    try:
        ev = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(ev, h11.Request):
        return None
    headers: dict[str, str] = {}
    for name, value in ev.headers:
        k, v = name.decode("latin-1"), value.decode("latin-1")
        headers[k] = headers[k] + ", " + v if k in headers else v
    return ev.method.decode(), ev.target.decode(), ev.http_version.decode(), headers


def ours(head: bytes):
    try:
        r = parse_request_head(head)
    except (BadRequest, UnicodeDecodeError):
        return None
    return r.method, r.target, r.http_version, r.headers


_name = st.sampled_from(["Host", "Upgrade", "X-A", "x-a", "Sec-WebSocket-Key", "Bad Name", "Bad:Name", "", "Ü",
                               "Content-Length"])
_value = st.text(alphabet=st.sampled_from(list("abc ,=/\t\x00\x7f\xe9:;") + ["\r"]), max_size=12)
_line = st.one_of(st.builds(lambda n, v, sep: f"{n}{sep}{v}", _name, _value, st.sampled_from([":", ": ", " :"])),
                  st.sampled_from([" folded", "\tfolded", "garbage"]))
_start = st.sampled_from(["GET / HTTP/1.1", "GET /a?b HTTP/1.1", "GET / HTTP/1.0", "GET  / HTTP/1.1",
                          "GE T / HTTP/1.1", "GET / HTTP/2.0", "GET / http/1.1", "GET /\x7f HTTP/1.1",
                          "G(T / HTTP/1.1", "GET / HTTP/1.1 ", "\r\nGET / HTTP/1.1"])


@settings(max_examples=400, deadline=None)
@given(_start, st.lists(_line, max_size=5), st.booleans())
def test_agrees_with_h11(start, lines, host):
    head = "\r\n".join([start] + (["Host: h"] if host else []) + lines).encode("latin-1")
    assert ours(head) == h11_parse(head)
