"""Re-evaluation and policy impact give the same report on every path, on both back-ends.

The reference is the path as it was: one subject-key transaction per exchange, every signature
verified again, one process. Against it: keys read per page, the stored bytes trusted, and the log
split across two and three worker processes. The ledger holds version-1 and version-2
decisions, escalations with approving and refusing verdicts and open ones, an erased subject, a
planted divergence and a rejected message; and the legacy fixture ledger of 2026-11-26.
"""

from __future__ import annotations

import copy
import shutil

import pytest

from ledger.domain import Exchange, exchange_id
from policies.bundle import BundleSet
from services.audit import Redecider, impact, load_bundles, recorded_decisions, recorded_pages, reevaluate
from services.escalations import EscalationDesk
from services.simulation import POLICE
from tests.audit.history import CPR_B, KSP_SENDER, NOW, History, build_history
from tests.audit.test_impact_v2 import V1_DAY, V2_DAY, plan
from tests.escalations.test_workflow import SOCIAL, no_basis_request, pet_request

OFFICER = ["legal_officer"]


def _redecider(h_ledger, settings, secret, keys, *, check_signatures: bool) -> Redecider:
    return Redecider(h_ledger, settings.master_key, secret, keys, check_signatures=check_signatures)


@pytest.fixture
def history(ledger_url) -> History:
    h = build_history(ledger_url)  # KSP release notices under version 1, and one broken message
    for day, tag in ((V1_DAY, "v1"), (V2_DAY, "v2")):
        for label, sender, request in plan(day):
            h.record(h.signed(request, message_id=f"{tag}-{label}", org_role=sender, at=day))
    # escalations: one refused, one approved twice over (closed), the version-2 ones left open
    h.record(h.signed(no_basis_request("0508882345"), message_id="jc-000001", org_role=SOCIAL, at=V2_DAY))
    h.record(h.signed(no_basis_request("1203911234"), message_id="jc-000002", org_role=SOCIAL, at=V2_DAY))
    h.record(h.signed(pet_request("1203911234"), message_id="pet-00001", org_role=POLICE, at=V1_DAY))
    desk = EscalationDesk(h.ledger)
    desk.refuse(exchange_id(SOCIAL[0], "jc-000001"), officer="jurist-a", roles=OFFICER, reason="ikke godtgjort")
    for officer in ("jurist-a", "jurist-b"):
        try:
            desk.approve(exchange_id(SOCIAL[0], "jc-000002"), officer=officer, roles=OFFICER, basis="dbl § 8",
                         citation="dbl § 8")
        except Exception as exc:  # one approval may already close it under this bundle
            assert getattr(exc, "code", "") == "CLOSED", exc
    # a genuine request recorded with a forged decision
    from services.demo import release_notice
    from services.gate import Inbound

    value = h.signed(release_notice(NOW.date(), cpr=CPR_B, name="X", release_in_days=2000, age=37),
                     message_id="msg-planted")
    real = h.rt.pipeline().process(Inbound("exchange.requests", 0, 999, value))
    forged = copy.deepcopy(real.decision)
    forged["results"][0].update(outcome="ALLOW", rule="P5", reason=None)
    planted = Exchange(sender=real.sender, message_id=real.message_id, source=real.source, summary=real.summary,
                       subject=real.subject, message_digest=real.message_digest, sealed_message=real.sealed_message)
    planted.decide(forged)
    h.ledger.record([planted])
    # one subject erased: its exchanges are not re-evaluable
    h.ledger.erase_subject(h.pseudonym("0101801234"), "test erasure")
    yield h
    h.rt.close()


def _both(h: History):
    old = _redecider(h.ledger, h.settings, h.rt.pseudonym_secret, h.rt.keyset, check_signatures=True)
    new = _redecider(h.ledger, h.settings, h.rt.pseudonym_secret, h.rt.keyset, check_signatures=False)
    return old, new


def test_reevaluation_is_the_same_on_every_path(history):
    old, new = _both(history)
    bundles = load_bundles()
    reference = reevaluate(history.ledger, old, bundles, workers=1, per_exchange=True).to_dict()
    # the ledger exercises what it should: both versions, all review states, erasure, a divergence
    assert reference["checked"] >= 20
    assert reference["not_reevaluable"] and {d["message_id"] for d in reference["divergent"]} == {"msg-planted"}
    assert reference["reviewed"]["APPROVED"] >= 1 and reference["reviewed"]["REFUSED"] >= 1
    assert reference["reviewed"]["OPEN"] >= 1
    versions = {r.decision["policy_version"] for r in recorded_decisions(history.ledger)}
    assert versions == {b.version for b in BundleSet.load().bundles}

    assert reevaluate(history.ledger, new, bundles, workers=1).to_dict() == reference
    assert reevaluate(history.ledger, old, bundles, workers=1).to_dict() == reference
    assert reevaluate(history.ledger, new, bundles, workers=2).to_dict() == reference
    assert reevaluate(history.ledger, new, bundles, workers=3).to_dict() == reference


def test_impact_is_the_same_on_every_path(history):
    old, new = _both(history)
    v2 = BundleSet.load().bundles[-1]
    known = load_bundles()
    reference = impact(history.ledger, old, v2, known=known, workers=1, per_exchange=True).to_dict(examples=50)
    assert reference["flipped"] >= 5 and reference["skipped"]
    assert impact(history.ledger, new, v2, known=known, workers=1).to_dict(examples=50) == reference
    assert impact(history.ledger, new, v2, known=known, workers=2).to_dict(examples=50) == reference
    since = V2_DAY.date()
    ref_since = impact(history.ledger, old, v2, known=known, since=since, per_exchange=True).to_dict(examples=50)
    assert 0 < ref_since["requests"] < reference["requests"]
    assert impact(history.ledger, new, v2, known=known, since=since, workers=2).to_dict(examples=50) == ref_since


def test_ranges_hold_every_exchange_once_in_order(history):
    """Split anywhere, with pages of any size, the ranges together are the one sequential pass."""
    ledger = history.ledger
    whole = [r.exchange_id for r in recorded_decisions(ledger)]
    last = ledger.max_notification_id()
    for cut in range(1, last + 2):
        for page_size in (1, 3, 1000):
            got = [r.exchange_id for start, stop in ((1, cut), (cut, last + 1))
                   for page in recorded_pages(ledger, start=start, stop=stop, page_size=page_size) for r in page]
            assert got == whole, (cut, page_size)


def test_the_legacy_ledger_reevaluates_the_same_on_every_path(ledger_url, tmp_path):
    from services.config import Settings
    from services.runtime import Runtime
    from tests.ledger.test_legacy_ledger import FIXTURE, _transplant

    source = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, source)
    _transplant(f"sqlite:///{source}", ledger_url)
    rt = Runtime(Settings.development(ledger_url=ledger_url))
    try:
        old = _redecider(rt.ledger, rt.settings, rt.pseudonym_secret, rt.keyset, check_signatures=True)
        new = _redecider(rt.ledger, rt.settings, rt.pseudonym_secret, rt.keyset, check_signatures=False)
        bundles = load_bundles()
        reference = reevaluate(rt.ledger, old, bundles, workers=1, per_exchange=True).to_dict()
        assert reference["checked"] > 50 and reference["ok"]
        assert reevaluate(rt.ledger, new, bundles, workers=2).to_dict() == reference
        v2 = BundleSet.load().bundles[-1]
        ref_impact = impact(rt.ledger, old, v2, known=bundles, per_exchange=True).to_dict(examples=100)
        assert impact(rt.ledger, new, v2, known=bundles, workers=2).to_dict(examples=100) == ref_impact
    finally:
        rt.close()


def test_a_bad_signature_is_found_only_when_asked_to_check(history):
    """The stored bytes are trusted by default (verify proves them); --check-signatures checks again."""
    from services.keyring import DEV_KEY_ID
    from services.keyset import Key, KeySet
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.signing import public_bytes

    # A key set in which the KSP sender's key id names a different public key: every KSP signature now fails.
    other = public_bytes(Ed25519PrivateKey.generate())
    current = history.rt.keyset.current() if hasattr(history.rt.keyset, "current") else history.rt.keyset
    swapped = KeySet([Key(k.org, k.key_id, other if (k.org, k.key_id) == (KSP_SENDER[0], DEV_KEY_ID)
                          else k.public_key, k.valid_from, k.valid_to, k.revoked_at) for k in current.all()])
    bundles = load_bundles()
    trusting = Redecider(history.ledger, history.settings.master_key, history.rt.pseudonym_secret, swapped)
    checking = Redecider(history.ledger, history.settings.master_key, history.rt.pseudonym_secret, swapped,
                         check_signatures=True)
    assert not any(e["error"] == "BAD_SIGNATURE" for e in reevaluate(history.ledger, trusting, bundles).errors)
    errors = reevaluate(history.ledger, checking, bundles, workers=2).errors
    assert {e["message_id"] for e in errors if e["error"] == "BAD_SIGNATURE"} >= {"msg-p5-21", "msg-p5-60"}


def test_impact_without_a_terminal_logs_its_progress(history, monkeypatch):
    """Not a TTY (as under pytest): progress is structlog ``audit.progress`` lines, never on stdout."""
    import json

    from structlog.testing import capture_logs
    from typer.testing import CliRunner

    from services.cli import app
    from services.cli import audit as cli_audit

    monkeypatch.setattr(cli_audit, "PROGRESS_LOG_EVERY_S", 0.0)
    env = {"XLEDGER_LEDGER_URL": history.settings.ledger_url}
    with capture_logs() as logs:
        res = CliRunner().invoke(app, ["policy", "impact", "--bundle", "dk-115-2026-12-15", "--json",
                                       "--workers", "2"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["requests"] > 0
    lines = [e for e in logs if e["event"] == "audit.progress"]
    assert lines and lines[-1]["covered"] == lines[-1]["entries"] == history.ledger.max_notification_id()
    assert all(e["tool"] == "impact" for e in lines)
    assert [e["covered"] for e in lines] == sorted(e["covered"] for e in lines)
