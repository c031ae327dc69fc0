"""One lawful and one unlawful KSP release notice, end to end over the real broker, on both ledger backends."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledger.domain import Exchange, RejectedMessage
from schemas.codec import AvroCodec
from services import topics
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.runtime import Runtime
from tests.harness import ksp_runtime, read_topic, running, wait_for

NOW = datetime.now(timezone.utc)


def decisions(rt: Runtime) -> dict[str, dict]:
    out = {}
    for n in rt.ledger.notifications(1, 10_000):
        if n.topic.endswith("Exchange.RequestDecided"):
            exchange = rt.ledger.get_exchange(n.originator_id)
            out[exchange.message_id] = exchange.decision
    return out


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings) as runtime:
        yield runtime


def publish_pair(rt: Runtime):
    publisher = rt.dev_publisher(*KSP_SENDER)
    lawful = release_notice(NOW.date(), cpr="1203911234", name="Test Person A", release_in_days=21, age=34)
    unlawful = release_notice(NOW.date(), cpr="0508882345", name="Test Person B", release_in_days=4 * 365, age=37)
    sent_ok = publisher.publish(occurred_at=NOW, **lawful)
    sent_denied = publisher.publish(occurred_at=NOW, **unlawful)
    publisher.producer.close()
    return lawful, sent_ok, sent_denied


def test_lawful_exchange_reaches_inbox_unchanged_and_unlawful_one_is_denied(rt, broker):
    lawful, sent_ok, sent_denied = publish_pair(rt)
    relay = rt.relay()
    with running(rt.gate_worker(), relay):
        assert wait_for(lambda: len(decisions(rt)) == 2)
        inbox = rt.inbox(KALUNDBORG_SOCIAL[0])
        received = []
        assert wait_for(lambda: received.extend(inbox.poll(200)) or len(received) >= 1)
        inbox.consumer.close()
        # The two decisions may fall in two of the relay's pages: stop it only after both receipts.
        assert wait_for(lambda: relay.stats["receipts"] >= 2)

    assert len(received) == 1
    delivered = received[0]
    assert delivered.record["message_id"] == sent_ok.message_id
    assert delivered.record["rule"] == "P5"
    assert delivered.record["citation"] == "rpl § 115, stk. 1, nr. 3, litra a"
    assert delivered.payload_type == "dk.xledger.payload.ReleaseNotice"
    # Exactly the payload sent: same bytes as the sender's encoding, same fields after decoding.
    assert delivered.record["payload"] == AvroCodec().encode(lawful["payload_type"], lawful["payload"])
    # Decoded with the newest reader schema: every field sent is there unchanged (newer optional fields default).
    assert {k: delivered.payload[k] for k in lawful["payload"]} == lawful["payload"]

    recorded = decisions(rt)
    ok = recorded[sent_ok.message_id]["results"][0]
    denied = recorded[sent_denied.message_id]["results"][0]
    assert (ok["outcome"], ok["rule"]) == ("ALLOW", "P5")
    assert (denied["outcome"], denied["reason"]) == ("DENY", "DENY_SUBJECT_OUT_OF_SCOPE")
    assert recorded[sent_denied.message_id]["policy_version"].startswith("sha256:")

    # The denied payload never reaches any inbox: the inbox topic holds the one allowed delivery only.
    in_topic = read_topic(broker.bootstrap, topics.inbox(KALUNDBORG_SOCIAL[0]), expect=1)
    assert [r.headers for r in in_topic] and len(in_topic) == 1
    # The sender gets a receipt for both decisions.
    receipts = read_topic(broker.bootstrap, topics.receipts(KSP_SENDER[0]), expect=2)
    outcomes = sorted(AvroCodec().decode(r.value).record["outcome"] for r in receipts)
    assert outcomes == ["ALLOW", "DENY"]


def test_restarted_gate_appends_nothing_twice(rt, settings):
    publish_pair(rt)
    with running(rt.gate_worker("first")):
        assert wait_for(lambda: len(decisions(rt)) == 2)
    entries = rt.ledger.max_notification_id()
    position = rt.ledger.position("kafka:exchange.requests:0")

    # A new worker in a new consumer group: Kafka offers it every message again from offset 0,
    # and only the positions tracked in the ledger keep it from appending them twice.
    from dataclasses import replace

    fresh = Runtime(replace(settings, group_id="another-gate-group"))
    worker = fresh.gate_worker("second")
    with running(worker):
        assert wait_for(lambda: len(worker._positions) == 4, timeout=20)  # every partition assigned
        assigned_at = worker.stats["polls"]
        # Polls from the assigned positions, in which it could misbehave.
        assert wait_for(lambda: worker.stats["polls"] >= assigned_at + 5, timeout=20)
    fresh.close()
    assert rt.ledger.max_notification_id() == entries
    assert rt.ledger.position("kafka:exchange.requests:0") == position
    assert worker.stats["decided"] == 0


def test_the_same_message_twice_is_recorded_once_and_the_repeat_as_duplicate(rt):
    publisher = rt.dev_publisher(*KSP_SENDER)
    request = release_notice(NOW.date(), cpr="1203911234", name="Test Person A", release_in_days=21, age=34)
    value = publisher.signed_bytes(publisher.envelope(occurred_at=NOW, message_id="dup-00000001", **request))
    for _ in range(2):
        publisher.producer.send(topics.REQUESTS, key=b"k", value=value).get(timeout=10)
    publisher.producer.close()
    worker = rt.gate_worker()
    with running(worker):
        assert wait_for(lambda: worker.stats["decided"] + worker.stats["rejected"] == 2)
    kinds = [type(rt.ledger.mapper.to_domain_event(n)).__qualname__ for n in rt.ledger.notifications(1)]
    assert kinds.count("Exchange.RequestDecided") == 1  # the request and its decision, one entry
    assert "Exchange.Requested" not in kinds and "Exchange.Decided" not in kinds
    assert kinds.count("RejectedMessage.Rejected") == 1
    rejected = [
        rt.ledger.mapper.to_domain_event(n) for n in rt.ledger.notifications(1) if n.topic.endswith("Rejected")
    ]
    assert rejected[0].reason == "DUPLICATE_MESSAGE"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda v: b"not avro at all", "BAD_MARKER"),
        (lambda v: v[:5], "TRUNCATED"),
        (lambda v: v[:-3], "MALFORMED"),
        (lambda v: v[:-70] + bytes([v[-70] ^ 0x01]) + v[-69:], "BAD_SIGNATURE"),
    ],
    ids=["garbage", "truncated", "cut-short", "flipped-bit-in-body"],
)
def test_bad_input_is_dead_lettered_and_recorded(rt, broker, mutate, reason):
    publisher = rt.dev_publisher(*KSP_SENDER)
    request = release_notice(NOW.date(), cpr="1203911234", name="Test Person A", release_in_days=21, age=34)
    good = publisher.signed_bytes(publisher.envelope(occurred_at=NOW, **request))
    bad = mutate(good)
    publisher.producer.send(topics.REQUESTS, key=b"k", value=bad).get(timeout=10)
    publisher.producer.close()
    worker = rt.gate_worker()
    with running(worker):
        assert wait_for(lambda: worker.stats["rejected"] == 1)
    dead = read_topic(broker.bootstrap, topics.DEAD_LETTERS, expect=1)
    assert len(dead) == 1
    assert dead[0].value == bad
    headers = dict(dead[0].headers)
    assert headers["x-error-reason"] == reason.encode()
    assert headers["x-source-offset"] == b"0"
    events = [rt.ledger.mapper.to_domain_event(n) for n in rt.ledger.notifications(1)]
    assert [e.reason for e in events] == [reason]
    assert events[0].source == {"topic": topics.REQUESTS, "partition": 0, "offset": 0}


def test_pipeline_rejects_a_request_signed_by_someone_else(rt):
    """An authority cannot send in another's name: the signer must be the sender."""
    from services.agency import Publisher
    from services.keyring import dev_private_key
    from services.gate import Inbound

    impostor = Publisher(
        KSP_SENDER[0], KSP_SENDER[1], producer=None, key=dev_private_key("politikreds:bornholm"), key_id="dev-2026",
    )
    request = release_notice(NOW.date(), cpr="1203911234", name="Test Person A", release_in_days=21, age=34)
    value = impostor.signed_bytes(impostor.envelope(occurred_at=NOW, **request))
    result = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 7, value))
    assert isinstance(result, RejectedMessage)
    assert result.reason == "BAD_SIGNATURE"
    genuine = Publisher(
        KSP_SENDER[0], KSP_SENDER[1], producer=None, key=dev_private_key(KSP_SENDER[0]), key_id="dev-2026",
    )
    value = genuine.signed_bytes(genuine.envelope(occurred_at=NOW, **request))
    assert isinstance(rt.pipeline().process(Inbound(topics.REQUESTS, 0, 8, value)), Exchange)


def test_an_unexpected_error_in_a_step_is_recorded_not_raised(rt):
    """A poison message must not block its partition: it becomes a recorded rejection."""
    from services.gate import Inbound

    pipeline = rt.pipeline()

    def explode(_work):
        raise RuntimeError("boom with possibly personal text")

    pipeline.steps.insert(3, explode)
    publisher = rt.dev_publisher(*KSP_SENDER)
    value = publisher.signed_bytes(publisher.envelope(occurred_at=NOW, **release_notice(
        NOW.date(), cpr="1203911234", name="Test Person A", release_in_days=21, age=34)))
    publisher.producer.close()
    result = pipeline.process(Inbound(topics.REQUESTS, 0, 3, value))
    assert isinstance(result, RejectedMessage)
    assert (result.reason, result.detail) == ("INTERNAL_ERROR", "explode: RuntimeError")


def test_a_request_the_engine_calls_invalid_is_rejected_with_the_field(rt):
    from services.gate import Inbound

    publisher = rt.dev_publisher(*KSP_SENDER)
    request = release_notice(NOW.date(), cpr="1203911234", name="Test Person A", release_in_days=21, age=34)
    request["context"] = "SSP"
    request["cooperation_id"] = None  # a § 115 context needs its cooperation
    value = publisher.signed_bytes(publisher.envelope(occurred_at=NOW, **request))
    publisher.producer.close()
    result = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 4, value))
    assert isinstance(result, RejectedMessage)
    assert result.reason == "INVALID_REQUEST" and "cooperation_id" in result.detail


def test_an_envelope_type_smuggled_in_as_payload_is_rejected(rt):
    from services.gate import Inbound

    publisher = rt.dev_publisher(*KSP_SENDER)
    request = release_notice(NOW.date(), cpr="1203911234", name="Test Person A", release_in_days=21, age=34)
    envelope = publisher.envelope(occurred_at=NOW, **request)
    envelope["payload_type"] = "dk.xledger.DecisionReceipt"
    envelope["payload"] = rt.codec.encode("dk.xledger.DecisionReceipt", {
        "receipt_id": "r", "exchange_id": "e", "message_id": "m", "recipient": "kommune:326", "outcome": "ALLOW"})
    publisher.producer.close()
    result = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 5, publisher.signed_bytes(envelope)))
    assert isinstance(result, RejectedMessage) and result.reason == "WRONG_TYPE"
