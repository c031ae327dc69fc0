"""Ledgers built once per ``python -m bench`` run and shared by the groups that measure on them.

``bench_audit`` (the auditors' tools) and ``bench_review`` (the review app's pages) measure on the
same kind of ledger: ``bench_audit.build`` on SQLite (gate pipeline, re-sends past 100k), copied to
PostgreSQL by ``bench_audit.transplant``. Built separately, ``make bench FULL=1`` built the 100k and
the 1M ledger twice and transplanted each twice: about a third of its time. Here each size is built
once and each back-end's copy made once, on first use; the directory and databases go when the run
ends.

Order of use: the tools only read (re-evaluation, impact, a replay into tables of its own that it
drops); the review app appends a few reviews and access records. ``python -m bench`` runs the
audit group before the review group, so the tools see the ledger as built.
"""
from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.common import pg_database


def exchanges_for(entries: int) -> int:
    """Exchanges of a ledger of ``entries`` entries, as ``bench_audit.run`` sizes it."""
    from bench.bench_audit import BATCH, ENTRIES_PER_EXCHANGE

    return max(BATCH, int(entries / ENTRIES_PER_EXCHANGE))


class SharedLedgers:
    """SQLite ledgers by size, built on first use, and their PostgreSQL copies. A context manager."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._dir: Path | None = None
        self._sqlite: dict[int, tuple[str, dict]] = {}
        self._postgres: dict[int, tuple[str, dict]] = {}

    def __enter__(self) -> "SharedLedgers":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def sqlite(self, entries: int) -> tuple[str, dict]:
        """(url, build info) of the SQLite ledger of this size; built by ``bench_audit.build`` once
        (or copied from ``XLEDGER_BENCH_REVIEW_CACHE``, built there once, as ``bench_review`` does)."""
        if entries not in self._sqlite:
            from bench.bench_review import _sqlite_ledger

            if self._dir is None:
                self._dir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="xlbench-shared-")))
            self._sqlite[entries] = _sqlite_ledger(entries, self._dir)
            _said("SQLite", entries, self._sqlite[entries][1])
        return self._sqlite[entries]

    def postgres(self, entries: int) -> tuple[str, dict]:
        """(url, copy info) of the PostgreSQL copy of the SQLite ledger of this size, made once."""
        if entries not in self._postgres:
            from bench.bench_audit import transplant

            source, _ = self.sqlite(entries)
            url = self._stack.enter_context(pg_database())
            self._postgres[entries] = (url, transplant(source, url))
            _said("PostgreSQL", entries, self._postgres[entries][1])
        return self._postgres[entries]


def _said(backend: str, entries: int, info: dict) -> None:
    if info.get("cached"):
        print(f"[bench] shared {backend} ledger for {entries} entries: copied from the cache", file=sys.stderr, flush=True)
        return
    print(f"[bench] shared {backend} ledger for {entries} entries: {info['entries']} entries in "
          f"{info['build_s']:.0f}s (+{info['readmodels_s']:.0f}s read models)", file=sys.stderr, flush=True)


__all__ = ["SharedLedgers", "exchanges_for"]
