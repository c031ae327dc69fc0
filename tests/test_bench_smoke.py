"""Smoke test of the benchmarks at tiny sizes: every row has the required keys and positive values.

No timing is asserted (the machines are shared and noisy); `make bench` measures for real.
"""
from __future__ import annotations

import math

import pytest

from bench.common import KEYS


def _check(rows: list[dict], prefix: str) -> None:
    assert rows, f"{prefix}: no rows"
    for r in rows:
        assert set(r) == set(KEYS), r
        assert r["name"].startswith(prefix), r
        assert isinstance(r["value"], (int, float)) and math.isfinite(r["value"]), r
        # The work beyond the exchanges a rate counts has either sign (a stage ahead, or behind); all else is > 0.
        assert r["value"] > 0 or r["name"].endswith(".cpu.outside_window"), r
        if r["baseline_value"] is not None:
            assert r["baseline_value"] > 0, r
            assert r["ratio"] is not None and r["ratio"] > 0, r


def test_policy_bench_rows():
    pytest.importorskip("cedarpy")
    from bench import bench_policy

    _check(bench_policy.run(50), "policy.")


def test_avro_bench_rows():
    from bench import bench_avro

    _check(bench_avro.run(20, 1), "avro.")


def test_witness_bench_rows():
    from bench import bench_witness

    rows = bench_witness.run(5, 1000, 10)
    _check(rows, "witness.")
    assert {r["name"] for r in rows} == {"witness.cosign.sqlite", "witness.cosign.memory_state"}


def test_ledger_bench_rows(tmp_path):
    from bench import bench_ledger

    rows = bench_ledger.run((1000, 2000), workdir=str(tmp_path))
    names = {r["name"].rsplit(".", 1)[0] for r in rows}
    assert {"scale.append.record", "scale.append.merkle", "scale.inclusion_proof"} <= names
    assert any(r["name"].startswith("verify.") for r in rows)
    assert any(r["name"].startswith("replay.") for r in rows)
    for r in rows:
        _check([r], r["name"].split(".")[0] + ".")


def test_e2e_bench_rows():
    from bench import bench_e2e

    rows = bench_e2e.run(n=30, latency_n=5, backends=("sqlite", "postgres"), gates=(1,), baseline_repeat=1)
    _check(rows, "e2e.")
    names = {r["name"] for r in rows}
    for backend in ("sqlite", "postgres"):
        assert f"e2e.{backend}.gates1.throughput" in names
        assert f"e2e.{backend}.gates1.latency_p99" in names
        # The same pipeline fed as a stream (bounded unanswered), and the machine's busy share read from /proc/stat.
        assert {f"e2e.{backend}.gates1.sustained.throughput", f"e2e.{backend}.gates1.sustained.cpu.total",
                f"e2e.{backend}.gates1.machine.busy", f"e2e.{backend}.gates1.sustained.machine.busy"} <= names
        # The relay's pages over the backlog, counted in the ledger.
        assert {f"e2e.{backend}.gates1.shape.relay_pages", f"e2e.{backend}.gates1.shape.entries_per_relay_page"} <= names
        # The required floor: every required step but the decision record in the exchange's event (a
        # difference of two appends, which noise can take below zero at this size; then it is left out,
        # never made up).
        required = {n.rsplit(".", 1)[1] for n in names if n.startswith(f"e2e.{backend}.required.")}
        assert set(bench_e2e.REQUIRED_STEPS) - {"decision_in_event"} <= required
        assert {f"e2e.{backend}.required_limit", f"e2e.{backend}.gates1.throughput.vs_required",
                f"e2e.{backend}.required_floor.vs_target_budget"} <= names
        # Each stage with library work inside has its floor row (STAGE_FLOOR).
        assert {f"e2e.{backend}.stage_floor.gate.consume+kafka_io_thread", f"e2e.{backend}.stage_floor.gate.seal",
                f"e2e.{backend}.stage_floor.relay.merkle", f"e2e.{backend}.stage_floor.relay.read_models"} <= names
    assert "e2e.gate.peak_rss" in names
    md = bench_e2e.cpu_markdown(rows)
    assert "| **required floor** (raw steps + these) |" in md and "| **gate total** |" in md
    assert "| **relay total** |" in md
    # The target against the cost of an exchange: one verdict line per run.
    verdicts = [line for line in md.splitlines() if "out of reach on this machine" in line or "within reach" in line]
    assert {line.split("|")[1].strip() for line in verdicts} == {
        "sqlite.gates1", "postgres.gates1", "sqlite.gates1.sustained", "postgres.gates1.sustained"}


def test_markdown_table():
    from bench.__main__ import to_markdown
    from bench.common import row

    md = to_markdown([row("x.y", 2.0, "ops/s", "base", 4.0, target=0.5)])
    assert "| x.y | 2.0 | ops/s | base | 4.0 | 0.5 | ≥ 0.5 | yes |" in md


def test_audit_bench_rows():
    from bench import bench_audit

    rows = bench_audit.run((1500,), backends=("sqlite",))
    _check(rows, "audit.sqlite.")
    tails = {r["name"].split(".", 3)[-1] for r in rows}  # audit.<backend>.<size>.<what>
    assert {"reevaluate", "impact", "replay.peak_rss", "replay", "reevaluate.old_path"} <= tails


def test_review_bench_rows():
    from bench import bench_review

    rows = bench_review.run((1000, 2000), backends=("sqlite",), repeat=1)
    _check(rows, "review.sqlite.")
    names = {r["name"] for r in rows}
    assert {"review.sqlite.queue.deep_keyset.2k", "review.sqlite.decision.2k", "review.sqlite.ledger.2k",
            "review.sqlite.agency.queue.2k", "review.sqlite.admin.users.2k"} <= names
    assert all(r["target_ratio"] == 0.5 for r in rows if r["name"] == "review.sqlite.queue.2k")


def test_audit_and_review_share_each_built_ledger(monkeypatch):
    """python -m bench builds each size once for the audit and the review group (bench/ledgers.py),
    with the same rows as each group building its own."""
    from bench import bench_audit, bench_review
    from bench.ledgers import SharedLedgers

    monkeypatch.delenv("XLEDGER_BENCH_REVIEW_CACHE", raising=False)
    built = []
    real_build = bench_audit.build

    def counting_build(url, exchanges, **kw):
        built.append(exchanges)
        return real_build(url, exchanges, **kw)

    monkeypatch.setattr(bench_audit, "build", counting_build)
    with SharedLedgers() as shared:
        audit = bench_audit.run((1500,), backends=("sqlite",), shared=shared)
        review = bench_review.run((1000, 1500), backends=("sqlite",), repeat=1, shared=shared)
    assert built == [561, 374]  # 1500 entries once (audit, then review), 1000 for the review's base (2.67 each)
    _check(audit, "audit.sqlite.")
    assert {r["name"].split(".", 3)[-1] for r in audit} >= {"reevaluate", "impact", "replay", "reevaluate.old_path"}
    _check(review, "review.sqlite.")
    assert "review.sqlite.admin.users.2k" in {r["name"] for r in review}


def test_transplant_to_postgres_copies_every_event_under_its_id_and_appends_after_them(tmp_path):
    """The PostgreSQL copy of a built ledger (one binary COPY) holds the same stored events under the
    same notification ids, and the next event recorded there gets the id after the last."""
    from bench import bench_audit
    from bench.common import pg_database
    from ledger.application import Ledger
    from ledger.domain import Delivery

    src_url = f"sqlite:///{tmp_path / 'src.sqlite'}"
    Ledger(src_url).close()
    bench_audit.build(src_url, 300)
    with pg_database() as url:
        info = bench_audit.transplant(src_url, url)
        src, dst = Ledger(src_url), Ledger(url)
        try:
            rows = [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))
                    for n in src.all_notifications()]
            assert info["entries"] == len(rows) > 600
            assert [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))
                    for n in dst.all_notifications()] == rows
            index = "SELECT delivery_id, exchange_id, entry_id FROM xl_deliveries ORDER BY delivery_id"
            assert dst.tables.fetchall(index) == src.tables.fetchall(index) != []
            dst.record([Delivery(exchange=str(rows[0][1]), recipient="kommune:101", kind="payload", topic="inbox.kommune-101",
                                 outcome="ALLOW")])
            assert dst.max_notification_id() == len(rows) + 1
        finally:
            src.close()
            dst.close()


def test_gate_memory_bench_rows(monkeypatch):
    """The gate's RSS over a small backlog into a copy of a small shared ledger; the ledger itself untouched."""
    from bench import bench_gate_memory
    from bench.ledgers import SharedLedgers
    from ledger.application import Ledger

    monkeypatch.delenv("XLEDGER_BENCH_REVIEW_CACHE", raising=False)
    with SharedLedgers() as shared:
        url, info = shared.sqlite(1000)
        rows = bench_gate_memory.run(1000, 300, shared=shared, new_ledger_peak=120.0)
        ledger = Ledger(url)
        try:
            assert ledger.max_notification_id() == info["entries"]  # the gate wrote to its copy only
        finally:
            ledger.close()
    _check(rows, "gate_memory.sqlite.1k.")
    names = {r["name"] for r in rows}
    assert {f"gate_memory.sqlite.1k.rss.{m}pct" for m in (25, 50, 75, 100)} <= names
    assert {"gate_memory.sqlite.1k.rss_flat", "gate_memory.sqlite.1k.peak_rss", "gate_memory.sqlite.1k.copy"} <= names
    flat = next(r for r in rows if r["name"].endswith(".rss_flat"))
    assert flat["target_ratio"] == 0.8 and flat["baseline_value"] is not None
    assert "new ledger: 120 MB" in next(r for r in rows if r["name"].endswith(".peak_rss"))["baseline"]
