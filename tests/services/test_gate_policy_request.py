"""What the policy request's validation (decide) checks that nothing before it has checked.

The Avro reader schema fixes the envelope's shape, types and vocabularies, and the envelope's
validation (schemas.validation) its lengths, age bounds and time formats; the policy model
(policies.model.ExchangeRequest) adds the rules below, and its time parser is stricter than the
envelope's. Each request here passes every step before decide and must still be refused there,
as INVALID_REQUEST naming the field, and is recorded like every rejection (dead-lettered and
answered with a receipt: tests/services/test_rejected_receipts.py). Real ledger, both back-ends.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ledger.domain import RejectedMessage
from services import topics
from services.agency import Publisher
from services.demo import KSP_SENDER, release_notice
from services.gate import Inbound, Work
from services.keyring import DEV_KEY_ID, dev_private_key
from tests.services.test_pseudonyms import rt  # noqa: F401 - the same development runtime

NOW = datetime.now(timezone.utc)
CONSENT = {"explicit": True, "given_by": "SUBJECT", "recipients": ["kommune:326"], "purposes": ["RELEASE_PLANNING"],
           "categories": ["IDENTITY"], "withdrawn_at": None}
# (change to a lawful envelope, the field the rejection must name)
NOT_CHECKED_BEFORE = {
    # datetime.fromisoformat (the envelope's check) takes these; RFC 3339, as pydantic reads it, does not
    "occurred_at, any separator": ({"occurred_at": "2026-12-01X08:00:00+01:00"}, "occurred_at"),
    "occurred_at, basic format": ({"occurred_at": "20261201T080000+01:00"}, "occurred_at"),
    "occurred_at, week date": ({"occurred_at": "2026-W49-2T08:00+01:00"}, "occurred_at"),
    "withdrawn_at, basic format": ({"consent": {**CONSENT, "withdrawn_at": "20261201T080000+01:00"}},
                                   "consent.withdrawn_at"),
    # Avro takes an empty string; the envelope's validation does not look into the parties
    "recipient without org": ({"recipients": [{"org": "", "role": "MUNI_SOCIAL_ADULT"}]}, "org"),
    "recipient listed twice": ({"recipients": [{"org": "kommune:326", "role": "MUNI_SOCIAL_ADULT"}] * 2},
                               "recipients"),
    "§ 115 context without cooperation": ({"context": "SSP", "cooperation_id": None}, "cooperation_id"),
    "§ 115 context, blank cooperation": ({"cooperation_id": "  "}, "cooperation_id"),
}


def _envelope(rt):
    publisher = Publisher(*KSP_SENDER, producer=None, key=dev_private_key(KSP_SENDER[0]), key_id=DEV_KEY_ID)
    request = release_notice(NOW.date(), cpr="1203911234", name="Test Person A", release_in_days=21, age=34)
    return publisher, publisher.envelope(occurred_at=NOW, **request)


def test_a_lawful_request_passes_them(rt):
    publisher, envelope = _envelope(rt)
    result = rt.pipeline().process(Inbound(topics.REQUESTS, 0, 0, publisher.signed_bytes(envelope)))
    assert not isinstance(result, RejectedMessage), result
    assert result.decision["results"][0]["outcome"] == "ALLOW"


@pytest.mark.parametrize("case", NOT_CHECKED_BEFORE)
def test_a_request_only_the_policy_model_refuses_is_rejected_naming_the_field(rt, case):
    change, field = NOT_CHECKED_BEFORE[case]
    publisher, envelope = _envelope(rt)
    envelope.update(change)
    value = publisher.signed_bytes(envelope)
    pipeline = rt.pipeline()
    # Every step before decide takes it: the checks below are decide's alone.
    work = Work(Inbound(topics.REQUESTS, 0, 1, value), at=NOW)
    for step in pipeline.steps[:-1]:
        step(work)
    result = pipeline.process(Inbound(topics.REQUESTS, 0, 1, value))
    assert isinstance(result, RejectedMessage), result
    assert result.reason == "INVALID_REQUEST" and field in result.detail, result.detail
    assert result.sender == KSP_SENDER[0] and result.message_id == envelope["message_id"]
    # Recorded as every rejection is (its dead letter and receipt: test_rejected_receipts.py).
    rt.ledger.record([result])
    assert rt.ledger.counts()["rejected"] == 1
