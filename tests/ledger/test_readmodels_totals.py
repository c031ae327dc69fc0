"""The ``totals`` read model (what status pages read in one lookup) agrees with counting the log
itself (``Ledger.counts``, which decodes every entry), also when it is filled in afterwards for
read models projected before it existed."""

from __future__ import annotations

from ledger.readmodels import ReadModels
from tests.audit.history import build_history


def _expected(ledger) -> dict[str, int]:
    c = ledger.counts()
    return {"requests": c["requests"], "ALLOW": c["allowed"], "DENY": c["denied"], "ESCALATE": c["escalated"],
            "rejected": c["rejected"]}


def test_totals_match_the_log_and_survive_a_late_start(ledger_url):
    h = build_history(ledger_url)
    try:
        models = ReadModels(h.ledger)
        models.catch_up()
        assert models.totals() == _expected(h.ledger) and models.totals()["requests"] == 5
        # read models from before the totals table: it is filled from what they hold
        with h.ledger.tables.cursor() as c:
            c.execute(f"DROP TABLE {models.t('totals')}")
        again = ReadModels(h.ledger)
        assert again.totals() == _expected(h.ledger)
        h.add("later", "1203911234", 30, 34)
        again.catch_up()
        assert again.totals() == _expected(h.ledger) and again.totals()["requests"] == 6
    finally:
        h.rt.close()
