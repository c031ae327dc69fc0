"""Re-evaluation and impact decide a page at a time, step by step across it: the same report as one
exchange at a time, bad rows and unexpected errors included, on both back-ends.

The reference is the path one exchange at a time (``per_exchange``: one subject-key transaction and
one pass through the gate's steps per exchange). The ledger is ``test_scaled_paths``'s (both policy
versions, escalations, an erased subject, a planted divergence, a rejected message) with more
rows planted: a request sealed for another exchange (undecryptable), a decision naming a policy
version nobody has, and one naming an unknown directory.
"""

from __future__ import annotations

import copy
import gc

import pytest

from ledger.domain import Exchange
from policies.bundle import BundleSet
from services import audit
from services.audit import Redecider, impact, load_bundles, recorded_pages, reevaluate
from services.demo import release_notice
from services.gate import Inbound
from tests.audit.history import CPR_A, NOW, History
from tests.audit.test_scaled_paths import history  # noqa: F401 - the fixture

_ = history


def _plant(h: History, message_id: str, *, sealed_from: str | None = None, **decision: str) -> None:
    """A genuine request recorded again under ``message_id``: its decision changed by ``decision``,
    or its sealed bytes those of the exchange ``sealed_from`` (sealed for that exchange's id)."""
    value = h.signed(release_notice(NOW.date(), cpr=CPR_A, name="Y", release_in_days=30, age=34),
                     message_id=message_id)
    real = h.rt.pipeline().process(Inbound("exchange.requests", 0, 900 + len(message_id), value))
    sealed = real.sealed_message
    if sealed_from is not None:
        other = h.rt.pipeline().process(Inbound("exchange.requests", 0, 800, h.signed(
            release_notice(NOW.date(), cpr=CPR_A, name="Z", release_in_days=30, age=34), message_id=sealed_from)))
        sealed = other.sealed_message
    dec = copy.deepcopy(real.decision)
    dec.update(decision)
    planted = Exchange(sender=real.sender, message_id=real.message_id, source=real.source, summary=real.summary,
                       subject=real.subject, message_digest=real.message_digest, sealed_message=sealed)
    planted.decide(dec)
    h.ledger.record([planted])


@pytest.fixture
def bad_rows(history):  # noqa: F811
    _plant(history, "msg-resealed", sealed_from="msg-elsewhere")
    _plant(history, "msg-no-bundle", policy_version="sha256:" + "0" * 64)
    _plant(history, "msg-no-directory", directory_version="sha256:" + "1" * 64)
    return history


def _redecider(h: History, keys=None, **kw) -> Redecider:
    return Redecider(h.ledger, h.settings.master_key, h.rt.pseudonym_secret, keys or h.rt.keyset, **kw)


def test_pages_report_what_one_at_a_time_reports(bad_rows):
    h, bundles = bad_rows, load_bundles()
    reference = reevaluate(h.ledger, _redecider(h), bundles, per_exchange=True).to_dict()
    errors = {e["message_id"]: e["error"] for e in reference["errors"]}
    assert errors["msg-resealed"] == "UNDECRYPTABLE"
    assert errors["msg-no-bundle"] == "UNKNOWN_POLICY_VERSION"
    assert errors["msg-no-directory"] == "UNKNOWN_DIRECTORY_VERSION"
    assert reference["not_reevaluable"] and reference["divergent"]
    assert reevaluate(h.ledger, _redecider(h), bundles).to_dict() == reference
    assert reevaluate(h.ledger, _redecider(h), bundles, workers=2).to_dict() == reference

    v2 = BundleSet.load().bundles[-1]
    ref_impact = impact(h.ledger, _redecider(h), v2, known=bundles, per_exchange=True).to_dict(examples=100)
    skipped = {s["message_id"]: s["reason"] for s in ref_impact["skipped"]}
    assert skipped["msg-resealed"] == "DecryptionError"
    assert skipped["msg-no-directory"].startswith("UNKNOWN_DIRECTORY_VERSION")
    assert impact(h.ledger, _redecider(h), v2, known=bundles).to_dict(examples=100) == ref_impact


def test_pages_reject_what_one_at_a_time_rejects(bad_rows):
    """Signatures checked again against a key set in which the KSP sender's key is another: every KSP
    exchange is rejected at the same step, and reported in the same order, as one at a time."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.keyring import DEV_KEY_ID
    from services.keyset import Key, KeySet
    from services.signing import public_bytes
    from tests.audit.history import KSP_SENDER

    h = bad_rows
    other = public_bytes(Ed25519PrivateKey.generate())
    current = h.rt.keyset.current() if hasattr(h.rt.keyset, "current") else h.rt.keyset
    swapped = KeySet([Key(k.org, k.key_id, other if (k.org, k.key_id) == (KSP_SENDER[0], DEV_KEY_ID)
                          else k.public_key, k.valid_from, k.valid_to, k.revoked_at) for k in current.all()])
    bundles = load_bundles()
    reference = reevaluate(h.ledger, _redecider(h, swapped, check_signatures=True), bundles,
                           per_exchange=True).to_dict()
    assert sum(e["error"] == "BAD_SIGNATURE" for e in reference["errors"]) >= 5
    assert reevaluate(h.ledger, _redecider(h, swapped, check_signatures=True), bundles).to_dict() == reference


def test_an_unexpected_error_surfaces_as_one_at_a_time(bad_rows, monkeypatch):
    """A step that fails for one exchange (a bug, not a rejection) ends the pass with that error on
    both paths; so does a resolver that fails."""
    h, bundles = bad_rows, load_bundles()
    categorise = audit._RecordedPipeline.categorise

    def failing(self, w):
        if w.envelope["message_id"] == "msg-p5-60":
            raise RuntimeError("categorise failed for msg-p5-60")
        categorise(self, w)

    monkeypatch.setattr(audit._RecordedPipeline, "categorise", failing)
    for per_exchange in (True, False):
        with pytest.raises(RuntimeError, match="msg-p5-60"):
            reevaluate(h.ledger, _redecider(h), bundles, per_exchange=per_exchange)
        with pytest.raises(RuntimeError, match="msg-p5-60"):
            impact(h.ledger, _redecider(h), BundleSet.load().bundles[-1], known=bundles, per_exchange=per_exchange)
    monkeypatch.undo()

    class Failing(audit.RecordedVersion):
        def __call__(self, rec):
            if rec.message_id == "msg-p5-85":
                raise LookupError("no bundle for msg-p5-85")
            return super().__call__(rec)

    for per_exchange in (True, False):
        with pytest.raises(LookupError, match="msg-p5-85"):
            reevaluate(h.ledger, _redecider(h), bundles, bundle_for=Failing(bundles), per_exchange=per_exchange)


def test_records_hold_what_the_domain_events_hold(bad_rows):
    """``recorded_pages`` reads the events' attributes without building the events: the same values."""
    ledger = bad_rows.ledger
    by_id = {n.originator_id: [] for n in ledger.all_notifications()}
    for n in ledger.all_notifications():
        by_id[n.originator_id].append(ledger.mapper.to_domain_event(n))
    records = [r for page in recorded_pages(ledger, page_size=7) for r in page]
    assert len(records) > 20
    shapes = {type(by_id[r.exchange_id][0]).__name__ for r in records}
    assert shapes == {"RequestDecided", "Requested"}, shapes
    for r in records:
        # One RequestDecided event; a Requested and a Decided one for the exchange planted as an older ledger holds it.
        events = by_id[r.exchange_id]
        req, dec = events[0], next(e for e in events if hasattr(e, "decision"))
        assert (r.sender, r.message_id, r.subject, r.source, r.summary, r.sealed_message) == (
            req.sender, req.message_id, req.subject, req.source, req.summary, req.sealed_message)
        assert r.decision == dec.decision and r.recorded_at == dec.timestamp
        assert r.recorded_at.tzinfo is not None


def test_a_pass_puts_the_collector_back_as_it_was(bad_rows):
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    reevaluate(bad_rows.ledger, _redecider(bad_rows), load_bundles())
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
