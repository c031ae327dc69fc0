"""Every authenticated sender hears back: a rejected message whose signature verified gets a REJECTED receipt.

A message nobody can be held to (undecodable, forged) goes only to the dead-letter topic.
Real broker, both ledger backends.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledger.domain import delivery_id, rejection_id
from services import topics
from services.delivery import receipt_detail
from services.demo import KSP_SENDER, release_notice
from tests.harness import ksp_runtime, read_topic, running, wait_for

NOW = datetime.now(timezone.utc)
CPR = "1203911234"


@pytest.fixture
def rt(settings):
    with ksp_runtime(settings, request_partitions=1) as runtime:
        yield runtime


def test_a_verified_sender_gets_a_rejected_receipt_and_an_unattributable_message_only_a_dead_letter(rt, broker):
    publisher = rt.dev_publisher(*KSP_SENDER)
    request = release_notice(NOW.date(), cpr=CPR, name="Test Person A", release_in_days=21, age=34)

    def signed(**change):
        envelope = publisher.envelope(occurred_at=NOW, **request)
        envelope.update(change)
        return envelope["message_id"], publisher.signed_bytes(envelope)

    good_id, good = signed(message_id="good-0000001")
    unfit_id, unfit = signed(context="SSP", cooperation_id=None)  # a § 115 context needs its cooperation
    invalid_id, invalid = signed(message_id="short")  # the envelope asks for at least 8 characters
    sends = [good, good, unfit, invalid, b"\xc3\x01" + bytes(30)]  # the second `good` is a duplicate
    for value in sends:
        publisher.producer.send(topics.REQUESTS, key=b"k", value=value).get(timeout=10)
    publisher.producer.close()

    with running(rt.gate_worker(), rt.relay()):
        assert wait_for(lambda: rt.ledger.counts()["rejected"] == 4, timeout=30)
        receipts = read_topic(broker.bootstrap, topics.receipts(KSP_SENDER[0]), expect=4, timeout=30)

    records = [rt.codec.decode(r.value).record for r in receipts]
    rejected = sorted(((r["message_id"], r["reason"]) for r in records if r["outcome"] == "REJECTED"))
    assert rejected == sorted([(good_id, "DUPLICATE_MESSAGE"), (unfit_id, "INVALID_REQUEST"),
                               (invalid_id, "INVALID_RECORD")])
    assert [r["outcome"] for r in records if r["message_id"] == good_id] .count("ALLOW") == 1
    duplicate = next(r for r in records if r["reason"] == "DUPLICATE_MESSAGE")
    # One receipt per rejected request, with a stable id derived from the recorded rejection.
    rejection = rejection_id(topics.REQUESTS, 0, 1)
    assert duplicate["exchange_id"] == str(rejection)
    assert duplicate["receipt_id"] == str(delivery_id(rejection, "", "receipt"))
    assert duplicate["recipient"] == "" and duplicate["policy_version"] is None
    assert duplicate["request_digest"].startswith("sha256:")
    invalid_receipt = next(r for r in records if r["reason"] == "INVALID_RECORD")
    assert "message_id" in invalid_receipt["detail"]
    assert all(CPR not in (r["detail"] or "") for r in records)
    # The garbage message: dead-lettered, recorded, and no receipt for anyone.
    dead = read_topic(broker.bootstrap, topics.DEAD_LETTERS, expect=4)
    assert sorted(dict(d.headers)["x-error-reason"] for d in dead) == sorted(
        [b"DUPLICATE_MESSAGE", b"INVALID_REQUEST", b"INVALID_RECORD", b"UNKNOWN_FINGERPRINT"])
    assert len(records) == 4  # one ALLOW, three REJECTED


def test_the_rejection_records_the_sender_only_when_its_signature_verified(rt):
    from services.agency import Publisher
    from services.gate import Inbound
    from services.keyring import DEV_KEY_ID, dev_private_key

    request = release_notice(NOW.date(), cpr=CPR, name="Test Person A", release_in_days=21, age=34)
    forger = Publisher(KSP_SENDER[0], KSP_SENDER[1], producer=None, key=dev_private_key("politikreds:bornholm"),
                       key_id=DEV_KEY_ID)
    envelope = forger.envelope(occurred_at=NOW, **request)
    envelope["message_id"] = "short"
    forged = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 1, forger.signed_bytes(envelope)))
    assert forged.reason == "BAD_SIGNATURE" and (forged.sender, forged.message_id) == (None, None)

    genuine = Publisher(KSP_SENDER[0], KSP_SENDER[1], producer=None, key=dev_private_key(KSP_SENDER[0]),
                        key_id=DEV_KEY_ID)
    envelope = genuine.envelope(occurred_at=NOW, **request)
    envelope["message_id"] = "short"
    invalid = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 2, genuine.signed_bytes(envelope)))
    assert invalid.reason == "INVALID_RECORD"
    assert (invalid.sender, invalid.message_id) == (KSP_SENDER[0], "short")


def test_a_receipt_detail_is_bounded_and_masks_anything_like_a_cpr_number():
    assert receipt_detail("payload.cpr: 120391-1234 and 1203911234 bad") == "payload.cpr: [masked] and [masked] bad"
    assert len(receipt_detail("x" * 10_000)) == 500
