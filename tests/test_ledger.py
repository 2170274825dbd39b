"""The compression context ledger (wscore.ledger): exactly-once records, plain class."""

from __future__ import annotations

from wsup.tools import logs
from wscore.ledger import ContextLedger


def make():
    records = []
    ledger = ContextLedger(lambda event, **kw: records.append(
        {"event": event, "level": "info", "timestamp": "2026-12-04T00:00:00.000000Z", "pid": 10,
         "actor": "ConnectionSupervisor", "supervisor": "connection-c1", "connection_id": "c1", **kw}))
    return ledger, records


def ctxs(*ids):
    return [{"context_id": i, "direction": "deflate" if n == 0 else "inflate", "window_bits": 15,
             "primed_bytes": 0} for n, i in enumerate(ids)]


def test_each_context_is_released_once_whatever_asks_again():
    ledger, records = make()
    assert ledger.opened(ctxs("z1", "z2"), 11) == ("z1", "z2")
    assert ledger.opened(ctxs("z1"), 11) == ()                     # already on record
    assert ledger.released("z1", "close", 11)
    assert not ledger.released("z1", "shutdown", 11)               # #478: the second close
    assert ledger.owner_died(11, 10) == ["z2"]
    assert ledger.owner_died(11, 10) == []
    events = [(r["event"], r["context_id"], r.get("cause")) for r in records]
    assert events == [("compression.context.opened", "z1", None), ("compression.context.opened", "z2", None),
                      ("compression.context.released", "z1", "close"),
                      ("compression.context.released", "z2", "owner_died")]
    assert all(not logs.schema_problems(r) for r in records)
    assert (ledger.opened_total, ledger.released_total) == (2, 2)


def test_owner_died_releases_only_that_owners_contexts():
    ledger, records = make()
    ledger.opened(ctxs("a1", "a2"), 10, owner="10/A~a~b")
    ledger.opened(ctxs("b1", "b2"), 10, owner="10/A~a~c")
    assert sorted(ledger.owner_died("10/A~a~b", 10)) == ["a1", "a2"]
    assert sorted(ledger.open_contexts()) == ["b1", "b2"]
    opened = [r for r in records if r["event"] == "compression.context.opened"]
    assert {r["owner_actor_id"] for r in opened} == {"10/A~a~b", "10/A~a~c"}
    assert all(r["owner_pid"] == 10 for r in opened)


def test_a_log_the_ledger_wrote_passes_the_check():
    ledger, records = make()
    ledger.opened(ctxs("z1", "z2"), 11)
    ledger.released("z1", "close", 11)
    ledger.released("z2", "close", 11)
    result = logs.check(records)
    assert result.ok, result


def test_a_process_ending_with_open_contexts_releases_each_once():
    records = []
    ledger = ContextLedger(lambda event, **kw: records.append((event, kw)))
    ledger.opened([{"context_id": "a", "direction": "deflate", "window_bits": 12},
                   {"context_id": "b", "direction": "inflate", "window_bits": 12}], 7, owner="7/x")
    ledger.released("a", "close", 7)
    assert ledger.process_ending(7) == ["b"]
    assert ledger.process_ending(7) == []
    released = [kw for ev, kw in records if ev == "compression.context.released"]
    assert [(r["context_id"], r["cause"]) for r in released] == [("a", "close"), ("b", "owner_died")]
