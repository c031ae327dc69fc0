"""The rules of review over a real ledger (both back-ends): concurrency, what is not escalated, and an
auditor's re-evaluation catching a verdict chain that breaks the rules."""

from __future__ import annotations

import pytest

from ledger.domain import exchange_id
from services.audit import Redecider, load_bundles, reevaluate
from services.escalations import EscalationDesk, EscalationError
from services.simulation import POLICE
from tests.audit.history import KSP_SENDER, build_history
from tests.escalations.test_workflow import SOCIAL, V1_DAY, V2_DAY, no_basis_request, pet_request

OFFICER = ["legal_officer"]


@pytest.fixture
def history(ledger_url):
    h = build_history(ledger_url)  # five KSP release notices (allowed and denied) and one broken message
    h.record(h.signed(pet_request("1203911234"), message_id="pet-00001", org_role=POLICE, at=V1_DAY))
    h.record(h.signed(no_basis_request("0508882345"), message_id="jc-000001", org_role=SOCIAL, at=V2_DAY))
    yield h
    h.rt.close()


def test_two_officers_at_once_one_verdict_wins(history):
    jc = exchange_id(SOCIAL[0], "jc-000001")
    a, b = EscalationDesk(history.ledger), EscalationDesk(history.ledger)
    ex_a, esc_a, bundle = a.load(jc)
    ex_b, esc_b, _ = b.load(jc)  # both read the same state
    from services.escalations import verdict_for

    ex_a.record_verdict(verdict_for(esc_a, bundle, verdict="REFUSE", officer="jurist-a", roles=OFFICER, reason="nej"))
    history.ledger.record([ex_a])
    ex_b.record_verdict(verdict_for(esc_b, bundle, verdict="APPROVE", officer="jurist-b", roles=OFFICER, basis="ja",
                                    citation="dbl § 8"))
    from ledger.application import IntegrityError

    with pytest.raises(IntegrityError):
        history.ledger.record([ex_b])
    # through the desk the loser is told to look again; looking again it finds the case closed
    with pytest.raises(EscalationError) as again:
        b.approve(jc, officer="jurist-b", roles=OFFICER, basis="ja", citation="dbl § 8")
    assert again.value.code == "CLOSED"


def test_only_escalated_recipients_take_verdicts(history):
    desk = EscalationDesk(history.ledger)
    allowed = exchange_id(KSP_SENDER[0], history.sent["p5-21"])
    with pytest.raises(EscalationError) as e:
        desk.approve(allowed, officer="jurist-a", roles=OFFICER, basis="b", citation="c")
    assert e.value.code == "NOT_ESCALATED"
    pet = exchange_id(POLICE[0], "pet-00001")
    with pytest.raises(EscalationError) as e:
        desk.approve(pet, recipient="kommune:326", officer="jurist-a", roles=OFFICER, basis="b", citation="c")
    assert e.value.code == "NOT_ESCALATED"
    with pytest.raises(EscalationError) as e:
        desk.refuse(exchange_id(POLICE[0], "never-sent"), officer="jurist-a", roles=OFFICER, reason="r")
    assert e.value.code == "NOT_FOUND"
    with pytest.raises(EscalationError) as e:
        desk.approve(pet, officer="jurist-a", roles=OFFICER, basis="b", citation="c" * 301)
    assert e.value.code == "TOO_LONG"


def test_reevaluation_flags_a_verdict_chain_that_breaks_the_rules(history):
    """An insider who writes verdicts past the desk (the same officer approving twice, a verdict on a
    decision that allowed) is caught by the auditor's re-evaluation."""
    desk = EscalationDesk(history.ledger)
    jc = exchange_id(SOCIAL[0], "jc-000001")
    desk.approve(jc, officer="jurist-a", roles=OFFICER, basis="b", citation="dbl § 8")
    ex, esc, bundle = desk.load(jc)
    forged = {**esc.verdicts[0], "status": "APPROVED", "result": {"recipient": esc.recipient, "outcome": "ALLOW"}}
    ex.record_verdict(forged)
    allowed = history.ledger.get_exchange(exchange_id(KSP_SENDER[0], history.sent["p5-21"]))
    allowed.record_verdict({**forged, "recipient": "kommune:326"})
    history.ledger.record([ex, allowed])
    report = reevaluate(history.ledger, Redecider(history.ledger, history.settings.master_key,
                                                  history.rt.pseudonym_secret, history.rt.keyset), load_bundles())
    assert not report.ok
    assert sorted(e["error"] for e in report.errors) == ["SAME_OFFICER_TWICE", "VERDICT_WITHOUT_ESCALATION"]
    assert report.agreeing == report.checked == 7 and not report.divergent


def test_read_models_from_before_the_escalations_table_are_filled_in(history):
    """A ledger whose read models were projected by a release without the escalations table gets the
    table filled from the log when the new release starts, so the queue lists the old escalations and
    the live read models equal a replay."""
    from ledger.readmodels import ReadModels
    from services.audit import replay

    models = ReadModels(history.ledger)
    models.catch_up()
    with history.ledger.tables.cursor() as c:
        c.execute(f"DROP TABLE {models.t('escalations')}")  # as an earlier release left them
    again = ReadModels(history.ledger)  # the new release starting
    rows = again.query("escalations")
    assert {(r["message_id"], r["status"], r["reason"]) for r in rows} == {
        ("pet-00001", "OPEN", "ESCALATE_OTHER_BASIS"), ("jc-000001", "OPEN", "ESCALATE_NO_BASIS_FOUND")}
    assert ReadModels(history.ledger).query("escalations") == rows  # once only
    assert len(EscalationDesk(history.ledger).queue()) == 2
    assert replay(history.ledger).equal


def _recount(desk: EscalationDesk, now) -> dict:
    """The statistics from every escalation's queue row, as EscalationDesk.statistics once computed them."""
    from services.escalations import APPROVED, OPEN, REFUSED

    rows = desk.queue(status=None, now=now, limit=1_000_000)
    closed = sorted(r["open_hours"] for r in rows if r["status"] != OPEN)
    by_reason: dict[str, int] = {}
    for r in rows:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    return {"open": sum(r["status"] == OPEN for r in rows), "overdue": sum(r["overdue"] for r in rows),
            "awaiting_second_approval": sum(r["status"] == OPEN and r["approvals"] >= 1 for r in rows),
            "approved": sum(r["status"] == APPROVED for r in rows), "refused": sum(r["status"] == REFUSED for r in rows),
            "max_open_hours": desk.max_open.total_seconds() / 3600,
            "median_hours_to_verdict": closed[len(closed) // 2] if closed else None,
            "by_reason": dict(sorted(by_reason.items()))}


def test_statistics_equal_a_recount_of_every_escalation(history):
    """The statistics are counted by the database (issue #18); at every step they equal a recount of
    every escalation's row: open, overdue (now and two days on), a first approval, closed cases."""
    from datetime import datetime, timedelta, timezone

    desk = EscalationDesk(history.ledger)
    pet, jc = exchange_id(POLICE[0], "pet-00001"), exchange_id(SOCIAL[0], "jc-000001")
    now = datetime.now(timezone.utc)
    seen = []
    for step in ("open", "approved once", "closed"):
        if step == "approved once":
            desk.approve(pet, officer="jurist-a", roles=OFFICER, basis="b", citation="PET-loven § 4")
        if step == "closed":
            desk.refuse(jc, officer="jurist-b", roles=OFFICER, reason="Ikke nødvendigt")
        for at in (now, now + timedelta(days=2), now + timedelta(days=30)):
            stats = desk.statistics(now=at)
            assert stats == _recount(desk, at), (step, at)
            seen.append(stats)
    assert seen[0]["open"] == 2 and seen[0]["overdue"] == 0 and seen[1]["overdue"] == 2
    assert seen[-1]["refused"] == 1 and seen[-1]["median_hours_to_verdict"] is not None
    assert sum(s["awaiting_second_approval"] for s in seen) + sum(s["approved"] for s in seen) > 0


def test_the_desk_makes_its_read_models_once(history, monkeypatch):
    """Each page view used to make the read models anew (their DDL, and on SQLite the schema lock);
    the desk now makes them once and only catches them up, and still sees escalations opened after."""
    from ledger.readmodels import ReadModels

    made = []
    create = ReadModels.create
    monkeypatch.setattr(ReadModels, "create", lambda self: (made.append(self), create(self))[1])
    desk = EscalationDesk(history.ledger)
    before = desk.queue()
    desk.statistics()
    desk.queue(status=None)
    assert len(made) == 1
    history.record(history.signed(no_basis_request("0508882345"), message_id="jc-000002", org_role=SOCIAL,
                                  at=V2_DAY))
    after = desk.queue()
    assert len(after) == len(before) + 1 and len(made) == 1
