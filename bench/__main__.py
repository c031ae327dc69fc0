"""``python -m bench [--quick] [--full]``: every benchmark; writes bench/results.json and bench/results.md.

Default: sized to finish in under 10 minutes on a 2-core machine.  ``--quick``: small sizes
(a minute or two).  ``--full``: adds the 1-million-entry ledger runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from bench.common import KEYS, peak_rss_mb, row

HERE = Path(__file__).resolve().parent


def plan(quick: bool, full: bool, shared=None) -> list[tuple[str, callable]]:
    """(group, run) in order. ``shared`` (``bench.ledgers.SharedLedgers``): the audit and review
    groups measure on the same ledgers, each size built once (the review group comes last: it
    appends reviews and access records)."""
    from bench import (bench_audit, bench_avro, bench_e2e, bench_gate_memory, bench_ledger, bench_policy,
                       bench_review, bench_witness)

    def audit(sizes):
        return bench_audit.run(sizes, shared=shared)

    # The e2e group's rows, kept for the gate_memory group: its peak row names the e2e gate's peak on a
    # new ledger beside its own on the big one (left out when e2e did not run, e.g. under --only).
    ran: dict[str, list[dict]] = {}

    def e2e(**kw):
        ran["e2e"] = bench_e2e.run(**kw)
        return ran["e2e"]

    def gate_memory(entries: int, exchanges: int):
        peak = next((r["value"] for r in ran.get("e2e", ()) if r["name"] == "e2e.gate.peak_rss"), None)
        return bench_gate_memory.run(entries, exchanges, shared=shared, new_ledger_peak=peak)

    if quick:
        return [
            ("policy", lambda: bench_policy.run(3000)),
            ("avro", lambda: bench_avro.run(500, 3)),
            ("ledger", lambda: bench_ledger.run((2_000, 10_000))),
            ("witness", lambda: bench_witness.run(50, 10_000)),
            ("e2e", lambda: e2e(n=1000, latency_n=100)),
            ("audit", lambda: audit((10_000,))),
            ("gate_memory", lambda: gate_memory(10_000, 2000)),
            ("review", lambda: bench_review.run((2_000, 10_000), repeat=3, shared=shared)),
        ]
    sizes = (10_000, 100_000, 1_000_000) if full else (10_000, 100_000)
    return [
        ("policy", lambda: bench_policy.run()),
        ("avro", lambda: bench_avro.run()),
        ("ledger", lambda: bench_ledger.run(sizes, verify_at=sizes[-1], replay_at=sizes[0])),
        ("witness", lambda: bench_witness.run()),
        ("e2e", lambda: e2e(n=5000, latency_n=300)),
        ("audit", lambda: audit((100_000, 1_000_000) if full else (100_000,))),
        # The gate's memory on a copy of the largest of those ledgers, and over its backlog.
        ("gate_memory", lambda: gate_memory(1_000_000, 20_000) if full else gate_memory(100_000, 5000)),
        # 50k by default: `make bench` stays under 10 minutes; --full measures 100k and 1M, on the
        # audit group's ledgers.
        ("review", lambda: bench_review.run(sizes if full else (10_000, 50_000), shared=shared)),
    ]


def _cpu() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def to_markdown(rows: list[dict]) -> str:
    out = ["| name | value | unit | baseline | baseline value | ratio | target | met |",
           "|---|---:|---|---|---:|---:|---:|---|"]
    for r in rows:
        t = r["target_ratio"]
        met = "" if t is None or r["ratio"] is None else ("yes" if r["ratio"] >= t else "**no**")
        out.append("| {name} | {value} | {unit} | {baseline} | {bv} | {ratio} | {t} | {met} |".format(
            name=r["name"], value=r["value"], unit=r["unit"], baseline=r["baseline"] or "",
            bv="" if r["baseline_value"] is None else r["baseline_value"],
            ratio="" if r["ratio"] is None else r["ratio"], t="" if t is None else f"≥ {t}", met=met))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="add the 1-million-entry ledger runs")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a quick look")
    ap.add_argument("--only", action="append", help="run only these groups (policy, avro, ledger, witness, e2e, audit, gate_memory, review)")
    ap.add_argument("--out", default=str(HERE), help="directory for results.json and results.md")
    args = ap.parse_args(argv)

    import logging

    logging.getLogger().setLevel(logging.WARNING)
    from bench.ledgers import SharedLedgers

    rows: list[dict] = []
    t_all = time.perf_counter()
    with SharedLedgers() as shared:
        for name, fn in plan(args.quick, args.full, shared):
            if args.only and name not in args.only:
                continue
            t0, c0 = time.perf_counter(), _cpu()
            print(f"[bench] {name} …", file=sys.stderr, flush=True)
            got = fn()
            # CPU of this process and of its waited-for children (builders, tools, gates): on a
            # shared machine the wall-clock time says as much about the others as about the bench.
            print(f"[bench] {name}: {len(got)} rows in {time.perf_counter() - t0:.0f}s "
                  f"(CPU {_cpu() - c0:.0f}s)", file=sys.stderr, flush=True)
            rows += got
    rows.append(row("bench.process.peak_rss", peak_rss_mb(), "MB", "this benchmark process (getrusage)"))
    for r in rows:
        assert set(r) == set(KEYS), r
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    header = (f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, Python "
              f"{platform.python_version()}, `python -m bench{' --full' if args.full else ''}"
              f"{' --quick' if args.quick else ''}` ({time.perf_counter() - t_all:.0f} s). "
              "Ratios are higher-is-better.\n\n")
    from bench.bench_e2e import cpu_markdown

    (out / "results.md").write_text(header + to_markdown(rows) + "\n" + cpu_markdown(rows))
    print(to_markdown(rows))
    missed = [r["name"] for r in rows if r["target_ratio"] is not None and r["ratio"] is not None
              and r["ratio"] < r["target_ratio"]]
    print(f"targets missed: {', '.join(missed) or 'none'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
