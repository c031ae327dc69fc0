"""Escalations resolved by legal officers, end to end on the real broker and both ledger back-ends.

Requests go through the real gate (signed Avro on the broker); verdicts are recorded through the
EscalationDesk; the real relay delivers and sends receipts; the auditor's tools see the chain.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ledger.domain import delivery_id, exchange_id
from ledger.readmodels import ReadModels
from schemas.codec import AvroCodec
from services import topics
from services.audit import Redecider, load_bundles, reevaluate, replay, subject_report
from services.escalations import AWAITING_REVIEW, EscalationDesk, EscalationError
from services.runtime import Runtime
from services.simulation import CASE_NOTE, POLICE, _case_note
from tests.harness import read_topic, running, wait_for

PET = ("pet:national", "PET")
SOCIAL = ("kommune:326", "MUNI_SOCIAL_ADULT")
JOBCENTRE = ("kommune:326", "MUNI_JOBCENTER")
V1_DAY = datetime(2026, 11, 27, 10, 0, tzinfo=timezone(timedelta(hours=1)))
V2_DAY = datetime(2027, 1, 12, 10, 0, tzinfo=timezone(timedelta(hours=1)))
OFFICER = ["legal_officer"]


def pet_request(cpr: str, *, mandatory: bool = False) -> dict:
    return dict(payload_type=CASE_NOTE, payload=_case_note(cpr, "Syntetisk Person", V1_DAY.date(), "Politiet"),
                recipients=[PET], context="PET_REQUEST", purpose="EXTREMISM_RISK_ASSESSMENT",
                subject={"age": 24}, data_categories=["IDENTITY", "ORDINARY", "RENT_PRIVATE"], mandatory=mandatory)


def no_basis_request(cpr: str) -> dict:
    """Version 2: the social services pass health data to the jobcentre for an administrative case."""
    return dict(payload_type=CASE_NOTE, payload=_case_note(cpr, "Syntetisk Person", V2_DAY.date(), "Socialforvaltningen",
                                                            health=True),
                recipients=[JOBCENTRE], context="NONE", purpose="OTHER_ADMIN", subject={"age": 41},
                data_categories=["IDENTITY", "ORDINARY", "RENT_PRIVATE", "HEALTH"])


def receipts(broker, org: str, expect: int) -> list[dict]:
    codec = AvroCodec()
    return [codec.decode(r.value).record | {"_delivery_id": dict(r.headers)["x-delivery-id"].decode()}
            for r in read_topic(broker.bootstrap, topics.receipts(org), expect=expect)]


@pytest.fixture
def rt(settings):
    runtime = Runtime(settings)
    runtime.create_topics([POLICE[0], PET[0], SOCIAL[0]])
    try:
        yield runtime
    finally:
        runtime.close()


def test_escalations_approved_and_refused_are_delivered_and_receipted(rt, broker, settings):
    police = rt.dev_publisher(*POLICE)
    social = rt.dev_publisher(*SOCIAL)
    approve_me = police.publish(occurred_at=V1_DAY, **pet_request("1203911234", mandatory=True))
    refuse_me = police.publish(occurred_at=V1_DAY, **pet_request("0508882345"))
    four_eyes = social.publish(occurred_at=V2_DAY, **no_basis_request("0101801234"))
    refused_after_one = social.publish(occurred_at=V2_DAY, **no_basis_request("1203911234"))
    police.producer.close()
    social.producer.close()
    desk = EscalationDesk(rt.ledger, max_open=timedelta(hours=48))
    ids = {name: exchange_id(org, sent.message_id) for name, org, sent in (
        ("approve", POLICE[0], approve_me), ("refuse", POLICE[0], refuse_me),
        ("four_eyes", SOCIAL[0], four_eyes), ("refused_after_one", SOCIAL[0], refused_after_one))}
    relay = rt.relay()
    with running(rt.gate_worker(), relay):
        assert wait_for(lambda: rt.ledger.counts()["escalated"] == 4)
        assert wait_for(lambda: relay.stats["receipts"] == 4)
        queue = desk.queue()
        assert {(r["exchange_id"], r["rule"], r["reason"], r["approvals_required"]) for r in queue} == {
            (str(ids["approve"]), "E1", "ESCALATE_OTHER_BASIS", 1), (str(ids["refuse"]), "E1", "ESCALATE_OTHER_BASIS", 1),
            (str(ids["four_eyes"]), "D0", "ESCALATE_NO_BASIS_FOUND", 2),
            (str(ids["refused_after_one"]), "D0", "ESCALATE_NO_BASIS_FOUND", 2)}

        # one officer approves, another refuses
        approved = desk.approve(ids["approve"], officer="jurist-a", roles=OFFICER, basis="PET beder om oplysninger "
                                "til brug for en trusselsvurdering", citation="PET-loven § 4, stk. 1", via="api")
        assert approved["status"] == "APPROVED" and approved["result"]["rule"] == "L1"
        refused = desk.refuse(ids["refuse"], officer="jurist-b", roles=OFFICER,
                              reason="Anmodningen angiver ikke, hvorfor oplysningerne er nødvendige.")
        assert refused["status"] == "REFUSED"
        # four eyes: the first approval leaves it open, the same officer cannot approve twice
        first = desk.approve(ids["four_eyes"], officer="jurist-a", roles=OFFICER, basis="Sagsbehandling af "
                             "ledighedsydelse kræver oplysningen", citation="databeskyttelsesloven § 8, stk. 2, nr. 2")
        assert first["status"] == "OPEN" and first["result"] is None and first["approvals_required"] == 2
        with pytest.raises(EscalationError) as same:
            desk.approve(ids["four_eyes"], officer="jurist-a", roles=OFFICER, basis="igen", citation="igen")
        assert same.value.code == "SAME_OFFICER"
        with pytest.raises(EscalationError) as not_officer:
            desk.approve(ids["four_eyes"], officer="revisor", roles=["auditor"], basis="x", citation="y")
        assert not_officer.value.code == "NOT_A_LEGAL_OFFICER"
        # nothing delivered for the half-approved one while it waits
        inbox = rt.inbox(PET[0])
        got = []
        assert wait_for(lambda: got.extend(inbox.poll(200)) or len(got) >= 1)
        assert [g.record["exchange_id"] for g in got] == [str(ids["approve"])]
        second = desk.approve(ids["four_eyes"], officer="jurist-b", roles=OFFICER, basis="Enig: forenelig "
                              "videregivelse", citation="databeskyttelsesloven § 8, stk. 2, nr. 2")
        assert second["status"] == "APPROVED"
        # one refusal closes a four-eyes case after one approval
        desk.approve(ids["refused_after_one"], officer="jurist-a", roles=OFFICER, basis="Sagsbehandling",
                     citation="databeskyttelsesloven § 8, stk. 2, nr. 2")
        closed = desk.refuse(ids["refused_after_one"], officer="jurist-b", roles=OFFICER,
                             reason="Helbredsoplysningerne er ikke nødvendige for jobcentret.")
        assert closed["status"] == "REFUSED"
        with pytest.raises(EscalationError) as done:
            desk.approve(ids["refused_after_one"], officer="jurist-c", roles=OFFICER, basis="x", citation="y")
        assert done.value.code == "CLOSED"
        assert wait_for(lambda: relay.stats["receipts"] == 8)
        jobcentre = rt.inbox(JOBCENTRE[0])
        delivered = []
        assert wait_for(lambda: delivered.extend(jobcentre.poll(200)) or len(delivered) >= 1)
        inbox.consumer.close()
        jobcentre.consumer.close()

    v1, v2 = (b.version for b in load_bundles().bundles)
    # the approved PET request reached PET's inbox, with the same delivery-id rule as any delivery
    pet_inbox = read_topic(broker.bootstrap, topics.inbox(PET[0]), expect=1)
    assert len(pet_inbox) == 1
    record = AvroCodec().decode(pet_inbox[0].value).record
    assert record["delivery_id"] == str(delivery_id(ids["approve"], PET[0], "inbox"))
    assert dict(pet_inbox[0].headers)["x-delivery-id"].decode() == record["delivery_id"]
    assert (record["rule"], record["citation"], record["policy_version"]) == (
        "L1", "Juridisk kontrol: PET-loven § 4, stk. 1", v1)
    assert record["warnings"] == ["WARN_NO_DUTY_UNDER_115"]  # the request was marked mandatory
    assert AvroCodec().decode(record["payload"]).record["cpr"] == "1203911234"
    # the four-eyes case reached the jobcentre only after the second approval
    jc = read_topic(broker.bootstrap, topics.inbox(JOBCENTRE[0]), expect=1)
    assert [AvroCodec().decode(r.value).record["exchange_id"] for r in jc] == [str(ids["four_eyes"])]
    jc_record = AvroCodec().decode(jc[0].value).record
    assert jc_record["citation"] == "Juridisk kontrol: databeskyttelsesloven § 8, stk. 2, nr. 2"
    assert jc_record["policy_version"] == v2

    # receipts: first "awaits legal review", then the verdict, each with its own delivery id
    police_receipts = receipts(broker, POLICE[0], expect=4)
    by = {}
    for r in police_receipts:
        by.setdefault(r["exchange_id"], []).append(r)
    first, then = by[str(ids["approve"])]
    assert (first["outcome"], first["rule"], first["reason"]) == ("ESCALATE", "E1", "ESCALATE_OTHER_BASIS")
    assert AWAITING_REVIEW in first["warnings"]
    assert (then["outcome"], then["rule"], then["reason"]) == ("ALLOW", "L1", None)
    assert then["citation"] == "Juridisk kontrol: PET-loven § 4, stk. 1"
    assert then["warnings"] == ["WARN_NO_DUTY_UNDER_115"] and then["policy_version"] == v1 == first["policy_version"]
    assert then["_delivery_id"] == str(delivery_id(ids["approve"], PET[0], "review-receipt"))
    assert first["_delivery_id"] == str(delivery_id(ids["approve"], PET[0], "receipt"))
    _, no = by[str(ids["refuse"])]
    assert (no["outcome"], no["rule"], no["reason"]) == ("DENY", "L1", "DENY_REFUSED_ON_REVIEW")
    assert no["citation"] == "Juridisk kontrol: Anmodningen angiver ikke, hvorfor oplysningerne er nødvendige."
    social_receipts = {(r["exchange_id"], r["outcome"], r["rule"]) for r in receipts(broker, SOCIAL[0], expect=4)}
    assert social_receipts == {
        (str(ids["four_eyes"]), "ESCALATE", "D0"), (str(ids["four_eyes"]), "ALLOW", "L1"),
        (str(ids["refused_after_one"]), "ESCALATE", "D0"), (str(ids["refused_after_one"]), "DENY", "L1")}

    # auditors see the whole chain
    chain = desk.chain(ids["four_eyes"])
    (esc,) = chain["escalations"]
    assert chain["bundle"] == "dk-115-2026-12-15" and esc["status"] == "APPROVED"
    assert [(v["officer"], v["verdict"], v["status"]) for v in esc["verdicts"]] == [
        ("jurist-a", "APPROVE", "OPEN"), ("jurist-b", "APPROVE", "APPROVED")]
    assert all(v["at"] for v in esc["verdicts"])
    assert [(d["kind"], d["outcome"]) for d in esc["deliveries"]] == [
        ("receipt", "PUBLISHED"), ("inbox", "PUBLISHED"), ("review-receipt", "PUBLISHED")]
    refused_chain = desk.chain(ids["refused_after_one"])["escalations"][0]
    assert [d["kind"] for d in refused_chain["deliveries"]] == ["receipt", "review-receipt"]

    # the recorded decisions stay consistent under their own versions; an approval is not a divergence
    report = reevaluate(rt.ledger, Redecider(rt.ledger, settings.master_key, rt.pseudonym_secret, rt.keyset), load_bundles())
    assert report.ok and report.agreeing == 4 and report.checked == 4
    assert report.reviewed == {"APPROVED": 2, "REFUSED": 2, "OPEN": 0}
    # the read models: statuses, and the register shows the approved escalation as disclosed
    models = ReadModels(rt.ledger)
    models.catch_up()
    statuses = {r["exchange_id"]: (r["status"], r["approvals"], r["approvers"]) for r in models.query("escalations")}
    assert statuses[str(ids["four_eyes"])] == ("APPROVED", 2, "jurist-a,jurist-b")
    assert statuses[str(ids["refused_after_one"])] == ("REFUSED", 1, "jurist-a")
    register = subject_report(rt.ledger, rt.ledger.get_exchange(ids["approve"]).subject)
    assert [(e["outcome"], e["rule"]) for e in register["entries"] if e["message_id"] == approve_me.message_id] == [
        ("ALLOW", "L1")]
    assert desk.statistics()["approved"] == 2 and desk.statistics()["refused"] == 2 and desk.queue() == []
    assert replay(rt.ledger).equal
