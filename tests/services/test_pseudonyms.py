"""The gate alone makes pseudonyms; senders key their records by a public bucket of the CPR number.

ExchangeRequest v2 carries no pseudonym; a v1 message still decodes, and the pseudonym it
carries is ignored. A payload without a CPR number is about no person (``NO_SUBJECT``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
from kafka.partitioner.default import murmur2

from ledger.domain import RejectedMessage
from ledger.erasure import ErasureError, check_pseudonym
from schemas.codec import AvroCodec
from schemas.cpr import NO_SUBJECT, InvalidCPR, ordering_key, pseudonym
from services import topics
from services.agency import Publisher, request_key
from services.config import Settings
from services.demo import KSP_SENDER, release_notice
from services.gate import Inbound
from services.keyring import DEV_KEY_ID, dev_private_key
from services.runtime import Runtime
from services.simulation import DISTRICT, INFOHUS, POLICE

NOW = datetime.now(timezone.utc)
CPR = "1203911234"


@pytest.fixture
def rt(ledger_url):
    runtime = Runtime(Settings.development(ledger_url=ledger_url))
    try:
        yield runtime
    finally:
        runtime.close()


def publisher(org_role=KSP_SENDER) -> Publisher:
    return Publisher(*org_role, producer=None, key=dev_private_key(org_role[0]), key_id=DEV_KEY_ID)


def test_the_ordering_key_is_public_stable_and_coarse():
    assert ordering_key(CPR) == hashlib.sha256(b"xledger-order-v1|1203911234").hexdigest()[:4]
    assert ordering_key("120391-1234") == ordering_key(CPR)
    assert ordering_key("0508882345") != ordering_key(CPR)
    with pytest.raises(InvalidCPR):
        ordering_key("3113991234")  # no 31 November
    # The key does not reveal the birth date: the 10,000 numbers of one date (1 March 1985) fall
    # into more than 9,000 different buckets, so each bucket mixes people of every date.
    day = [f"010385{s:04d}" for s in range(10_000)]
    assert len({ordering_key(c) for c in day}) > 9_000


def test_one_person_keeps_one_partition_and_people_spread_evenly_over_partitions():
    # 100,000 synthetic CPR numbers over 12 partitions with Kafka's murmur2, as every producer partitions.
    cprs = [f"{d:02d}{m:02d}{y:02d}{s:04d}" for y in (60, 75, 90) for m in range(1, 13) for d in range(1, 29)
            for s in range(1000, 1100)]
    partitions = Counter((murmur2(ordering_key(c).encode()) & 0x7FFFFFFF) % 12 for c in cprs)
    mean = len(cprs) / 12
    assert max(abs(n - mean) / mean for n in partitions.values()) < 0.05, partitions
    assert len({(murmur2(ordering_key(CPR).encode()) & 0x7FFFFFFF) % 12 for _ in range(3)}) == 1


def test_a_v2_request_carries_no_pseudonym_and_the_gate_derives_it(rt):
    pub = publisher()
    envelope = pub.envelope(occurred_at=NOW, **release_notice(NOW.date(), cpr=CPR, name="A", release_in_days=21, age=34))
    assert envelope["subject"].get("pseudonym") is None
    body = AvroCodec().decode(pub.signed_bytes(envelope)).record["body"]
    decoded = AvroCodec().decode(body)
    assert decoded.writer_version == 2 and decoded.record["subject"]["pseudonym"] == ""
    result = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 1, pub.signed_bytes(envelope)))
    assert result.subject == pseudonym(CPR, rt.pseudonym_secret)
    assert request_key(envelope["payload_type"], {"cpr": CPR}) == ordering_key(CPR)


def test_a_v1_request_still_decodes_and_its_pseudonym_is_ignored(rt):
    pub = publisher()
    envelope = pub.envelope(occurred_at=NOW, **release_notice(NOW.date(), cpr=CPR, name="A", release_in_days=21, age=34))
    # What a sender of the previous release wrote: v1, with a pseudonym of its own making.
    planted = "f" * 64
    envelope["subject"] = {**envelope["subject"], "pseudonym": planted}
    codec = AvroCodec()
    body = codec.encode("dk.xledger.ExchangeRequest", envelope, version=1)
    from services.signing import sign

    value = codec.encode("dk.xledger.SignedMessage", {"signer": pub.org, "key_id": pub.key_id,
                                                      "signature": sign(body, pub.key), "body": body})
    result = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 2, value))
    assert not isinstance(result, RejectedMessage), result
    assert result.subject == pseudonym(CPR, rt.pseudonym_secret) != planted
    assert result.decision["results"][0]["outcome"] == "ALLOW"


def test_a_payload_about_no_person_has_no_subject_and_no_key(rt):
    pub = publisher(POLICE)
    today = NOW.date()
    stats = {"police_district": DISTRICT, "period_start": today - timedelta(days=30), "period_end": today,
             "suppression_threshold": 5, "counts": [{"topic": "CONCERN_REPORTS", "breakdown": None, "count": 7}],
             "trends": None}
    request = dict(payload_type="dk.xledger.payload.AggregateStatistics", payload=stats,
                   recipients=[("kommune:326", "MUNI_SSP_UNIT")], context="INFOHUS_NETVAERK", cooperation_id=INFOHUS,
                   purpose="STATISTICS", data_categories=["AGGREGATE_NON_PERSONAL"])
    envelope = pub.envelope(occurred_at=NOW, **request)
    result = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 3, pub.signed_bytes(envelope)))
    assert result.subject == NO_SUBJECT and result.decision["results"][0]["outcome"] == "ALLOW"
    assert request_key(request["payload_type"], stats) is None
    with pytest.raises(ErasureError, match="no person"):
        check_pseudonym(NO_SUBJECT)


def test_a_changed_cpr_in_the_payload_changes_the_subject_not_the_signature_check(rt):
    """The pseudonym follows the signed payload; nothing a sender adds beside it can steer it."""
    pub = publisher()
    a = pub.envelope(occurred_at=NOW, **release_notice(NOW.date(), cpr=CPR, name="A", release_in_days=21, age=34))
    b = pub.envelope(occurred_at=NOW, **release_notice(NOW.date(), cpr="0508882345", name="B", release_in_days=21,
                                                       age=37))
    pipeline = rt.pipeline()
    ra = pipeline.process(Inbound(topics.REQUESTS, 0, 4, pub.signed_bytes(a)))
    rb = pipeline.process(Inbound(topics.REQUESTS, 0, 5, pub.signed_bytes(b)))
    assert ra.subject != rb.subject and rb.subject == pseudonym("0508882345", rt.pseudonym_secret)
    assert date.fromisoformat(ra.decision["verified_at"][:10]) == NOW.date()
    assert ra.decision["signer_key_id"] == DEV_KEY_ID


def test_the_gate_pseudonym_is_the_normal_forms_and_a_bad_cpr_never_gets_one(rt):
    """The gate derives the pseudonym from the CPR number its payload validation has just checked:
    written with or without the hyphen it is pseudonym()'s of the 10 digits, and a number that is
    no real birth date is rejected as an invalid record naming the field, with no subject made."""
    pub = publisher()
    pipeline = rt.pipeline()
    for offset, written in enumerate(["120391-1234", CPR], start=6):
        env = pub.envelope(occurred_at=NOW, **release_notice(NOW.date(), cpr=written, name="A", release_in_days=21,
                                                             age=34))
        result = pipeline.process(Inbound(topics.REQUESTS, 0, offset, pub.signed_bytes(env)))
        assert not isinstance(result, RejectedMessage), result
        assert result.subject == pseudonym(CPR, rt.pseudonym_secret)
    for offset, bad in enumerate(["3113991234", "31139-1234", "12039112345"], start=8):
        env = pub.envelope(occurred_at=NOW, **release_notice(NOW.date(), cpr=bad, name="A", release_in_days=21,
                                                             age=34))
        result = pipeline.process(Inbound(topics.REQUESTS, 0, offset, pub.signed_bytes(env)))
        assert isinstance(result, RejectedMessage)
        assert result.reason == "INVALID_RECORD" and "cpr: " in result.detail and bad not in result.detail
