"""The observer's plain classes, without processes: its view of the workers
(health, readiness, restarts, rates), the metrics port's request reader, and the
workers' counters' bounded labels."""

from __future__ import annotations

from observe.http import FeedSocket, RequestReader
from observe.state import ObserverState
from wscore.metrics import WorkerMetrics, code_label, limit_kind, supervisor_label


def stats(pid, t, accepted=0, messages_in=0):
    counters = WorkerMetrics().snapshot()
    counters.update(accepted=accepted, upgraded=accepted, messages_in=messages_in)
    return {"pid": pid, "t": t, "connections_open": 0, "pending_handshakes": 0, "contexts_open": 0,
            "counters": counters}


def test_readiness_starting_ready_degraded_and_shutting_down():
    s = ObserverState(2, pid=1)
    assert s.readiness() == (503, {"status": "starting", "waiting_for": ["worker-1", "worker-2"]})
    assert s.health()[0] == 503
    s.linked(1, stats(101, 1.0))
    assert s.readiness()[0] == 503 and s.health()[0] == 503
    s.linked(2, stats(102, 1.0))
    assert s.readiness() == (200, {"status": "ready"}) and s.health()[0] == 200
    s.unlinked(1)
    assert s.health() == (503, {"status": "unhealthy", "workers": {"worker-1": False, "worker-2": True}})
    assert s.readiness()[1]["status"] == "degraded"
    assert s.linked(1, stats(201, 2.0)) is True            # a new pid in that place: a restart
    assert s.worker_restarts() == {1: 1, 2: 0}
    assert s.linked(2, stats(102, 2.0)) is False           # the same process again: not a restart
    assert s.readiness()[0] == 200
    s.event({"event": "worker.stopping", "worker": 2, "t": 3.0})
    assert s.readiness() == (503, {"status": "shutting down"})
    assert s.health()[0] == 200                             # still up while it closes its connections


def test_rates_from_successive_stats_and_reset_on_restart():
    s = ObserverState(1, pid=1)
    s.linked(1, stats(101, 10.0, accepted=0, messages_in=0))
    s.stats(1, stats(101, 12.0, accepted=10, messages_in=1000))
    assert s.summary()["rates"]["upgraded"] == 5.0 and s.summary()["rates"]["messages_in"] == 500.0
    s.unlinked(1)
    s.linked(1, stats(202, 13.0, accepted=1))               # restarted: its counters began again
    assert s.summary()["rates"]["upgraded"] == 0.0


def test_request_reader_routes_and_refuses():
    r = RequestReader()
    assert r.feed(b"GET /metrics?x=1 HTTP/1.1\r\nHo") is None
    req = r.feed(b"st: a\r\n\r\n")
    assert (req.method, req.path, req.query, req.error) == ("GET", "/metrics", {"x": "1"}, "")
    assert RequestReader().feed(b"NOT HTTP\r\n\r\n").error.startswith("bad HTTP request")
    assert RequestReader().feed(b"").error
    assert RequestReader().feed(b"G" * 20000).error == "request header too large"


def test_feed_socket_refuses_a_plain_get_and_frames_json():
    head = (b"GET /live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    f = FeedSocket(head)
    assert f.handshake.accepted and f.handshake.response.startswith(b"HTTP/1.1 101")
    f.send({"type": "summary"})
    assert f.data_to_send() == b"\x81\x12" + b'{"type":"summary"}'
    assert not FeedSocket(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n").handshake.accepted


def test_labels_are_bounded():
    assert [code_label(c) for c in (None, 1000, 1006, 1011, 3000, 3999, 4001, 4999)] == \
        ["none", "1000", "1006", "1011", "3xxx", "3xxx", "4xxx", "4xxx"]
    assert limit_kind(1009, "frame of 99 bytes is over the limit of 10") == "frame_size"
    assert limit_kind(1009, "message over the limit of 10 bytes") == "message_size"
    assert limit_kind(1009, "message inflates to more than 10 bytes") == "inflated_size"
    assert limit_kind(1009, "inflate ratio over 25") == "inflate_ratio"
    assert limit_kind(1000, "") is None
    assert supervisor_label("connection-1-abcdef012345") == "connection"
    assert supervisor_label("connections") == "connections"
    m = WorkerMetrics()
    for i in range(1000):
        m.connection_closed(4000 + i, "client", "")
    assert m.snapshot()["closed"] == [["4xxx", "client", 1000]]
