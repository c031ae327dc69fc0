"""What Ledger.record stores is exactly the mapper's bytes, on both backends (PostgreSQL sends them in binary)."""

from __future__ import annotations

import pytest

from tests.ledger.conftest import make_exchange


def test_stored_state_is_byte_identical_to_the_encoded_event(ledger):
    ex = make_exchange(7, subject="æøå-\u2028-\x00-subject")
    pending = list(ex.pending_events)
    expected = [ledger.mapper.to_stored_event(e).state for e in pending]
    ledger.record([ex])
    stored = ledger.recorder.select_events(ex.id)
    assert [bytes(s.state) for s in stored] == expected
    assert ledger.get_exchange(ex.id).subject == "æøå-\u2028-\x00-subject"


def test_postgres_sends_the_events_array_in_binary(ledger):
    if not ledger.tables.is_postgres:
        pytest.skip("SQLite binds bytes natively")
    statement = ledger.recorder.insert_events_statement
    assert "unnest(%b::" in statement.as_string(None)


def _request_decided(ex, **kw):
    """eventsourcing's own path to the gate's one event: the RequestDecided creation event class
    chosen through ``_create``, as the library lets an aggregate with several creation events do."""
    from ledger.domain import Exchange

    fields = {k: getattr(ex, k) for k in ("sender", "message_id", "source", "summary", "subject",
                                         "message_digest", "sealed_message")}
    return Exchange._create(Exchange.RequestDecided, id=ex.id, decision=ex.decision, **{**fields, **kw})


def test_exchange_decided_stores_what_eventsourcing_stores(ledger, monkeypatch):
    """Exchange.decided (the gate's direct path) gives the same event, byte for byte, and the same
    aggregate as eventsourcing's own path to a RequestDecided event, also when read back; and that
    aggregate's state is the state of Exchange(...) followed by .decide(...) (the two events of
    older ledgers), but for the version."""
    from datetime import datetime, timezone

    from ledger.domain import Exchange, exchange_id

    stamps = iter([datetime(2026, 11, 30, 12, 0, s, tzinfo=timezone.utc) for s in range(6)])
    for cls in (Exchange.Requested, Exchange.Decided, Exchange.RequestDecided):
        monkeypatch.setattr(cls, "create_timestamp", staticmethod(lambda: next(stamps)))
    legacy = make_exchange(5, subject="æøå-subject")  # stamps 0 and 1
    slow = _request_decided(legacy)  # 2
    fields = {k: getattr(slow, k) for k in ("sender", "message_id", "source", "summary", "subject",
                                           "message_digest", "sealed_message")}
    fast = Exchange.decided(slow.decision, id=exchange_id(slow.sender, slow.message_id), **fields)  # 3
    stored = [[ledger.mapper.to_stored_event(e) for e in ex.pending_events] for ex in (slow, fast)]
    assert [(s.originator_id, s.originator_version, s.topic) for s in stored[0]] == \
        [(s.originator_id, s.originator_version, s.topic) for s in stored[1]] == \
        [(fast.id, 1, "ledger.domain:Exchange.RequestDecided")]
    # Only the timestamps differ (02 against 03 seconds).
    assert [s.state.replace(b":02+", b":03+") for s in stored[0]] == [s.state for s in stored[1]]
    assert (fast.id, fast.version, fast.decision, fast.reviews, fast.verdicts) == \
        (slow.id, slow.version, slow.decision, [], []) == (legacy.id, 1, legacy.decision, [], [])

    # The whole state, in eventsourcing's attribute order, of the aggregate and of its event (the
    # direct path fills their dicts itself): only the timestamps differ.
    def state(obj):
        return [(k, v) for k, v in vars(obj).items() if k not in ("timestamp", "_created_on", "_modified_on",
                                                                  "_pending_events")]
    assert state(fast) == state(slow)
    # The state the two events of older ledgers make, attribute for attribute, but for the version.
    assert [(k, v) for k, v in state(fast) if k != "_version"] == [(k, v) for k, v in state(legacy) if k != "_version"]
    assert [state(e) for e in fast.pending_events] == [state(e) for e in slow.pending_events]
    assert [type(e) for e in fast.pending_events] == [type(e) for e in slow.pending_events] == [Exchange.RequestDecided]
    assert fast.created_on == fast.modified_on == fast.pending_events[0].timestamp
    with pytest.raises(ValueError, match="already decided"):
        fast.decide({"results": []})
    ledger.record([fast])
    back = ledger.get_exchange(fast.id)
    assert (back.version, back.decision, back.sealed_message, back.reviews, back.verdicts) == \
        (1, slow.decision, slow.sealed_message, [], [])
    assert state(back) == [(k, v) for k, v in state(fast) if k != "_pending_events"]
    # The history goes on as before: a review is version 2.
    back.review({"action": "UPHOLD", "reviewer": "x"})
    ledger.save(back)
    again = ledger.get_exchange(fast.id)
    assert (again.version, again.reviews, again.decision) == (2, [{"action": "UPHOLD", "reviewer": "x"}], slow.decision)


def test_an_older_ledgers_two_events_still_replay(ledger):
    """Exchange(...) then .decide(...) still make the Requested and Decided events older ledgers hold,
    and such an exchange reads back with the state a RequestDecided one has, at version 2."""
    legacy = make_exchange(6)
    assert [type(e).__name__ for e in legacy.pending_events] == ["Requested", "Decided"]
    ledger.record([legacy])
    back = ledger.get_exchange(legacy.id)
    assert (back.version, back.decision, back.reviews, back.verdicts) == (2, legacy.decision, [], [])
    assert [n.topic for n in ledger.all_notifications()] == ["ledger.domain:Exchange.Requested",
                                                             "ledger.domain:Exchange.Decided"]
    assert ledger.counts()["requests"] == 1


class _FixedSealer:
    """Deterministic stand-in (AES-GCM nonces differ per call): what both paths must seal alike."""

    def seal(self, subject, data, aad=b""):
        import base64
        import hashlib

        return base64.b64encode(hashlib.sha256(subject.encode() + data + aad).digest()).decode()

    def batch(self, subjects):
        from contextlib import nullcontext

        return nullcontext(self)


def _main_build_exchange(w, sealer):
    """main's GatePipeline._build_exchange (Exchange(...) then .decide), kept as the reference for the
    request's and the decision's content."""
    from ledger.domain import Exchange, exchange_id, sealed_message_aad

    env = w.envelope
    summary = {
        "occurred_at": env["occurred_at"], "sender": env["sender"], "recipients": env["recipients"],
        "context": env["context"], "underlying_basis": env["underlying_basis"],
        "cooperation_id": env["cooperation_id"], "purpose": env["purpose"],
        "declared_categories": sorted(env["data_categories"]), "present_categories": sorted(w.present),
        "payload_type": env["payload_type"], "mandatory": env["mandatory"],
        "has_consent": env["consent"] is not None, "has_provenance": env["provenance"] is not None,
        "signer_key_id": w.signed["key_id"],
    }
    exchange = Exchange(
        sender=env["sender"]["org"], message_id=env["message_id"], source=w.msg.source, summary=summary,
        subject=w.subject, message_digest=w.msg.digest,
        sealed_message=sealer.seal(w.subject, w.msg.value,
                                   sealed_message_aad(exchange_id(env["sender"]["org"], env["message_id"]))),
    )
    exchange.decide(w.decision)
    return exchange


def test_the_gate_stores_what_main_stored_for_every_kind_of_decision(ledger, monkeypatch):
    """The gate's own path (Exchange.decided) against main's, over the simulated week's cases (allowed,
    denied, escalated, several recipients, consent and provenance), compared as stored bytes."""
    from datetime import date, datetime, timezone

    from ledger.domain import Exchange
    from policies.engine import PolicyEngine
    from schemas.codec import AvroCodec
    from services.agency import Publisher
    from services.config import Settings
    from services.gate import GatePipeline, Inbound, Work
    from services.keyring import DEV_KEY_ID, dev_private_key
    from services.keyset import DEV_KEYSET, KeySet
    from services.simulation import build_week, declared_categories, occurred

    at = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    codec = AvroCodec()
    values, day0 = [], date(2026, 11, 30)
    for i, (day, case) in enumerate(build_week(day0)):
        if case.tamper:
            continue
        request = dict(case.request)
        request.setdefault("data_categories", declared_categories(codec, request))
        pub = Publisher(*case.sender, producer=None, key=dev_private_key(case.sender[0]), key_id=DEV_KEY_ID, codec=codec)
        values.append(pub.signed_bytes(pub.envelope(occurred_at=occurred(day, i), message_id=f"week-msg-{i:04d}", **request)))
    settings = Settings.development()
    p = GatePipeline(PolicyEngine.load_default(), _FixedSealer(), settings.pseudonym_secret.encode(),
                     KeySet.load(DEV_KEYSET), codec, clock=lambda: at)
    worked = [w for w in p._run_batch([Inbound("exchange.requests", i % 3, i, v) for i, v in enumerate(values)])
              if isinstance(w, Work)]
    outcomes = {r["outcome"] for w in worked for r in w.decision["results"]}
    assert {"ALLOW", "DENY", "ESCALATE"} <= outcomes, outcomes
    assert any(len(w.envelope["recipients"]) > 1 for w in worked)

    stamp = datetime(2026, 11, 30, 12, 0, 1, tzinfo=timezone.utc)
    for cls in (Exchange.Requested, Exchange.Decided, Exchange.RequestDecided):
        monkeypatch.setattr(cls, "create_timestamp", staticmethod(lambda: stamp))
    for w in worked:
        fast = p._exchange(w, _FixedSealer())
        main = _main_build_exchange(w, _FixedSealer())
        slow = _request_decided(main)
        assert [ledger.mapper.to_stored_event(e) for e in fast.pending_events] == \
            [ledger.mapper.to_stored_event(e) for e in slow.pending_events]
        assert fast.__dict__ == slow.__dict__ | {"_pending_events": fast.__dict__["_pending_events"]}
        # What main recorded in its two events, recorded in the one: the request's attributes, the
        # decision (trace, statute, policy and directory version, request digest) unchanged.
        [one] = [ledger.mapper.to_stored_event(e) for e in fast.pending_events]
        requested, decided = [ledger.mapper.to_stored_event(e) for e in main.pending_events]
        t = ledger.mapper.transcoder
        assert t.decode(one.state) == {**t.decode(requested.state), "decision": t.decode(decided.state)["decision"]}
        assert fast.__dict__ == main.__dict__ | {"_version": 1, "_pending_events": fast.__dict__["_pending_events"]}
