"""The ``counts`` read model (the review queue's counts per sender, authority and review status) agrees
with counting the decisions it lists, after reviews too, when it is filled in afterwards for read models
projected before it existed, and in a replay."""

from __future__ import annotations

from ledger.readmodels import ReadModels
from services.audit import replay
from tests.audit.history import build_history


def _expected(models: ReadModels) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for sender, recipient, outcome, status in models.tables.fetchall(
            f"SELECT sender, recipient, outcome, review_status FROM {models.t('decisions')}"):
        keys = [("sender", sender), ("authority", sender), ("status", status)]
        if recipient != sender:
            keys.append(("authority", recipient))
        for kind, key in keys:
            out[(kind, key, outcome)] = out.get((kind, key, outcome), 0) + 1
    return out


def _held(models: ReadModels) -> dict[tuple[str, str, str], int]:
    return {(k, key, o): int(n) for k, key, o, n in models.rows("counts")}


def test_counts_match_the_decisions_after_reviews_a_late_start_and_a_replay(ledger_url):
    h = build_history(ledger_url)
    try:
        models = ReadModels(h.ledger)
        models.catch_up()
        ex = h.add("reviewed", "1203911234", 30, 34)
        ex.review({"action": "UPHOLD", "recipient": None, "reviewer": "lo"})
        h.ledger.record([ex])
        ex.review({"action": "FLAG", "recipient": None, "reviewer": "lo"})  # moved on: UPHELD falls to 0
        h.ledger.record([ex])
        models.catch_up()
        held = _held(models)
        assert held == _expected(models) and all(n > 0 for n in held.values())
        assert ("status", "FLAGGED", ex.decision["results"][0]["outcome"]) in held
        assert not any(k == "status" and key == "UPHELD" for k, key, _ in held)
        assert models.counts("status", ["FLAGGED"]) == {ex.decision["results"][0]["outcome"]: 1}
        # read models from before the counts table: it is filled from the decisions they hold
        with h.ledger.tables.cursor() as c:
            c.execute(f"DROP TABLE {models.t('counts')}")
        again = ReadModels(h.ledger)
        assert _held(again) == held
        assert replay(h.ledger).equal
    finally:
        h.rt.close()
