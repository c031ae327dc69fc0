"""The relay and the read models read events as dicts (ledger.transcoder.event_state), orjson alone
where that is exact: the same attributes as the event objects eventsourcing builds, for every event
kind and for rows orjson cannot read exactly, and the same read models (both backends)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import ledger.readmodels as readmodels
from ledger.domain import Exchange, RejectedMessage, SubjectErasure
from ledger.readmodels import TABLES, ReadModels, replay_prefix
from ledger.transcoder import event_state
from tests.ledger.conftest import make_exchange, make_rejection


def _old_state(mapper: Any, n: Any, **_: Any) -> dict[str, Any]:
    """What the projections read before: the event object's attributes, its timestamp as ISO text
    (with their policy traces, which the projections do not read)."""
    e = mapper.to_domain_event(n)
    return {**vars(e), "timestamp": e.timestamp.isoformat()}


def _typed(value: Any) -> str:
    # An int and a float of the same value compare equal: their JSON text does not.
    return json.dumps(value, sort_keys=True, default=repr)


def _record_every_kind(ledger) -> None:
    subjects = [hashlib.sha256(f"s{i}".encode()).hexdigest() for i in range(3)]
    exchanges = []
    for i in range(6):
        e = make_exchange(i, subject=subjects[i % 3])
        e.summary.update({"occurred_at": f"2026-03-1{i}T09:00:00Z", "context": "KSP", "cooperation_id": "ksp:x",
                          "declared_categories": ["health"], "underlying_basis": "rpl § 115 — “quoted” \\ æøå"})
        if i % 2 == 0:
            e.decision["results"].append({"recipient": "kommune:202", "outcome": "ESCALATE", "rule": "R9",
                                          "reason": "NEEDS_REVIEW", "citation": "c", "warnings": ["w1", "w2"]})
        if i % 3 != 2:  # as the gate records it, one RequestDecided event; every third as older ledgers hold it
            e = Exchange.decided(e.decision, id=e.id, **{k: getattr(e, k) for k in (
                "sender", "message_id", "source", "summary", "subject", "message_digest", "sealed_message")})
        exchanges.append(e)
    rejected_known = RejectedMessage(source={"topic": "exchange.requests", "partition": 1, "offset": 7},
                                     reason="FORGED", detail="field x", message_digest="d" * 64, size=10,
                                     sender="politikreds:koebenhavn", message_id="msg-r")
    # An integer beyond 64 bits: the plain encoder writes it, and orjson alone would read a float.
    huge = RejectedMessage(source={"topic": "exchange.requests", "partition": 2, "offset": 2**70 + 1},
                           reason="TOO_LARGE", detail="big", message_digest="e" * 64, size=2**70 + 1)
    ledger.record([*exchanges, make_rejection(1), rejected_known, huge])
    again = [ledger.get_exchange(e.id) for e in exchanges]
    for n, e in enumerate(again):
        e.review({"action": ["UPHOLD", "OVERTURN", "FLAG", "NOTE"][n % 4], "recipient": None if n % 2 else "kommune:101"})
    open_approval = {"recipient": "kommune:202", "verdict": "APPROVE", "officer": "jurist-a", "status": "OPEN"}
    closing = {"recipient": "kommune:202", "verdict": "APPROVE", "officer": "jurist-b", "status": "APPROVED",
               "result": {"recipient": "kommune:202", "outcome": "ALLOW", "rule": "L1", "citation": "cit"},
               "policy_version": "p" * 64, "request_digest": "r" * 64}
    refused = {"recipient": "kommune:202", "verdict": "REFUSE", "officer": "jurist-c", "status": "REFUSED",
               "result": {"recipient": "kommune:202", "outcome": "DENY", "rule": "L2", "reason": "REFUSED"},
               "policy_version": "p" * 64, "request_digest": "r" * 64}
    again[0].record_verdict(open_approval)
    again[0].record_verdict(closing)
    again[2].record_verdict(refused)
    ledger.record(again)
    ledger.record([SubjectErasure(subject=subjects[1], key_id="ab" * 16, reason="court order")])


def test_event_state_is_what_the_event_objects_hold(ledger):
    _record_every_kind(ledger)
    notes = ledger.notifications(1, 1000)
    kinds = {n.topic.rsplit(":", 1)[1] for n in notes}
    assert kinds >= {"Exchange.RequestDecided", "Exchange.Requested", "Exchange.Decided", "Exchange.Reviewed",
                     "Exchange.EscalationVerdict", "RejectedMessage.Rejected", "SubjectErasure.Erased"}
    old = {n.id: _typed(_old_state(ledger.mapper, n)) for n in notes}
    fell_back = []
    real = ledger.mapper.to_domain_event
    ledger.mapper.to_domain_event = lambda n: fell_back.append(n) or real(n)
    try:
        for n in notes:
            assert _typed(event_state(ledger.mapper, n)) == old[n.id], n.topic
    finally:
        del ledger.mapper.to_domain_event
    # orjson alone read every event but the one with the long integer.
    assert [str(2**70 + 1).encode() in n.state for n in fell_back] == [True]
    huge = [event_state(ledger.mapper, n) for n in notes if n.topic.endswith("Rejected")]
    assert 2**70 + 1 in [s["size"] for s in huge] and all(type(s["size"]) is int for s in huge)


def test_read_models_equal_those_projected_from_the_event_objects(ledger, monkeypatch):
    _record_every_kind(ledger)
    fast = ReadModels(ledger, replay_prefix("fast"), tracked=False, page_size=7)
    fast.catch_up()
    monkeypatch.setattr(readmodels, "event_state", _old_state)
    old = ReadModels(ledger, replay_prefix("old"), tracked=False, page_size=7)
    old.catch_up()
    try:
        got, want = ({t: m.rows(t) for t in TABLES} for m in (fast, old))
        assert got == want
        # Every table is filled: the comparison covers each projection.
        assert all(want[t] for t in TABLES), [t for t in TABLES if not want[t]]
        assert [r[15] for r in want["escalations"] if r[16]] and {r[15] for r in want["escalations"]} >= {"APPROVED",
                                                                                                        "REFUSED"}
    finally:
        fast.drop()
        old.drop()


def test_integers_at_the_edges_of_what_orjson_reads_exactly(ledger):
    # orjson reads integers from -2**63 to 2**64 - 1 as ints and any beyond as floats: those are read
    # through the event objects, the others by orjson alone, and all come back as the ints recorded.
    values = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**19, -(10**19), 10**25]
    ledger.record([RejectedMessage(source={"topic": "exchange.requests", "partition": 0, "offset": i}, reason="R",
                                   detail="d", message_digest="e" * 64, size=v) for i, v in enumerate(values)])
    notes = ledger.notifications(1, 100)
    fell_back = []
    real = ledger.mapper.to_domain_event
    ledger.mapper.to_domain_event = lambda n: fell_back.append(n) or real(n)
    try:
        got = [event_state(ledger.mapper, n) for n in notes]
    finally:
        del ledger.mapper.to_domain_event
    assert [s["size"] for s in got] == values and all(type(s["size"]) is int for s in got)
    assert [_typed(s) for s in got] == [_typed(_old_state(ledger.mapper, n)) for n in notes]
    assert len(fell_back) == 4  # 2**64, -(2**63) - 1, -(10**19) and 10**25


def _without_trace_lists(value: Any) -> Any:
    """``value`` with every list under a key "trace" empty, as ``event_state(..., traces=False)`` reads it."""
    if isinstance(value, dict):
        return {k: [] if k == "trace" and isinstance(v, list) else _without_trace_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_trace_lists(v) for v in value]
    return value


_TRACES = [
    [],
    [{"step": "C7", "name": "Afsender er kendt", "passed": True, "detail": "kommune:101 gyldig 2026-12-01"}],
    # Brackets inside strings: the cut ends at the first "]" outside one.
    [{"step": "C4", "detail": "kategorier: HEALTH] ]]"}, {"step": "P", "detail": "a ] b", "n": 3}],
    # A "[" anywhere in the trace (here in a string): read whole.
    [{"step": "C4", "detail": "[masked]"}],
    # A nested array: read whole.
    [{"step": "C1", "detail": "x", "list": [1, [2]]}],
    # A quote or backslash in the event (escaped in JSON): read whole.
    [{"step": "H1", "detail": 'say "trace":[1] \\ done'}],
    # An integer orjson reads as a float, inside the cut: not read at all.
    [{"step": "X", "n": 2**70}],
]


def test_event_state_without_traces_is_the_event_with_its_traces_empty(ledger):
    exchanges = []
    for i, trace in enumerate(_TRACES):
        e = make_exchange(100 + i)
        e.decision["results"][0]["trace"] = trace
        # A second recipient's trace, and "trace" keys that are no list or lie inside a string.
        e.decision["results"].append({"recipient": "kommune:202", "outcome": "DENY", "rule": "R9",
                                      "trace": [{"step": "Z", "detail": f"trace {i}"}]})
        e.summary["note"] = {"trace": "not a list"}
        e.summary["text"] = "trace:[1]"
        exchanges.append(Exchange.decided(e.decision, id=e.id, **{k: getattr(e, k) for k in (
            "sender", "message_id", "source", "summary", "subject", "message_digest", "sealed_message")}))
    _record_every_kind(ledger)
    ledger.record(exchanges)
    notes = ledger.notifications(1, 1000)
    fell_back = []
    real = ledger.mapper.to_domain_event
    ledger.mapper.to_domain_event = lambda n: fell_back.append(n) or real(n)
    try:
        got = {n.id: event_state(ledger.mapper, n, traces=False) for n in notes}
    finally:
        del ledger.mapper.to_domain_event
    for n in notes:
        assert _typed(got[n.id]) == _typed(_without_trace_lists(_old_state(ledger.mapper, n))), n.topic
    decided = {n.id: n for n in notes if n.topic.endswith("RequestDecided") and b'"trace"' in n.state}
    assert len(decided) == len(_TRACES)
    # Read whole: the "[" in a string, the nested array, the escaped quote (and the long integer of
    # _record_every_kind, outside any trace); the big integer inside a trace is cut out unread.
    assert sorted(n.id for n in fell_back if n.id in decided) == sorted(decided)[3:6]
    assert [s["summary"]["note"] for i, s in got.items() if i in decided] == [{"trace": "not a list"}] * len(_TRACES)
