"""Every review-app page costs the same on a large ledger as on a small one (issue #18: within 2×).

The ledger is filled through the real gate pipeline, measured, filled 30 times fuller (same days,
so the per-day statistics hold as many rows), and measured again. What is counted is the
database's own work, never time: on SQLite the statements and the virtual-machine steps they take
(``set_progress_handler``), on PostgreSQL the statements and the buffers the SELECTs touch
(``EXPLAIN (ANALYZE, BUFFERS)`` of each one, run again on its own connection, with the plans a
large table gets).
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from datetime import timedelta

import psycopg
from fastapi.testclient import TestClient

from ledger.application import Tracking
from ledger.domain import exchange_id
from services.demo import release_notice
from services.gate import Inbound
from services.review.app import create_app
from services.review.users import UserStore
from tests.audit.history import CPR_A, CPR_B, KSP_SENDER, NOW, TOPIC, build_history
from tests.review.conftest import PASSWORD, SECRET, web_login

SMALL, LARGE = 100, 3000  # exchanges added to the five of the base history: both fill a queue page
DAYS = 10
STEP = 5  # SQLite calls the progress handler every STEP virtual-machine instructions


class Meter:
    def __init__(self):
        self.on = False
        self.statements = 0
        self.steps = 0
        self.selects: list[tuple[object, object]] = []

    def reset(self):
        self.statements, self.steps, self.selects = 0, 0, []


@contextmanager
def metered(monkeypatch, meter: Meter):
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)

        def traced(sql):
            if meter.on:
                meter.statements += 1

        def progress():
            if meter.on:
                meter.steps += 1
            return 0

        conn.set_trace_callback(traced)
        conn.set_progress_handler(progress, STEP)
        return conn

    real_execute = psycopg.Cursor.execute

    def execute(self, query, params=None, **kwargs):
        if meter.on:
            meter.statements += 1
            text = query if isinstance(query, str) else query.as_string(self.connection)
            if text.lstrip().upper().startswith("SELECT") and not kwargs.get("binary"):
                meter.selects.append((text, params))
        return real_execute(self, query, params, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    yield meter


def grow(history, n: int, start: int) -> None:
    pipeline = history.rt.pipeline()
    batch = []
    cprs = [CPR_B, "2211901111"]  # CPR_A's report stays as it was: its page must cost the same
    for i in range(start, start + n):
        at = NOW - timedelta(days=i % DAYS)
        req = release_notice(at.date(), cpr=cprs[i % 2], name="Test Person", release_in_days=20 + i % 50,
                             age=30 + i % 20)
        value = history.signed(req, message_id=f"scale-{i:06d}", at=at)
        batch.append(pipeline.process(Inbound(TOPIC, 0, history.offset, value)))
        history.offset += 1
        if len(batch) == 200:
            history.ledger.record(batch, Tracking(f"kafka:{TOPIC}:0", history.offset))
            batch = []
    if batch:
        history.ledger.record(batch, Tracking(f"kafka:{TOPIC}:0", history.offset))
    history.ledger.integrate()  # as the relay keeps doing


def _buffers(ledger_url: str, selects) -> int:
    total = 0
    with psycopg.connect(ledger_url.split("?")[0], autocommit=True) as conn:
        schema = ledger_url.split("schema=")[1] if "schema=" in ledger_url else None
        if schema:
            conn.execute(f'SET search_path TO "{schema}"')
        # The plan PostgreSQL picks on a large table: on a few hundred rows it scans and sorts the
        # whole table, which is cheaper there, and would make the small ledger look cheaper than
        # the index walk every larger one gets. A query with no usable index still scans (the
        # setting only penalises scans), so a full read is still counted in full.
        conn.execute("SET enable_seqscan = off")
        # Fresh statistics for both measurements: otherwise whether autovacuum happened to analyse
        # the grown tables (it does on a busy machine at its own moment) picks the plan (seen: 12 -> 34).
        for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall():
            conn.execute(f'ANALYZE "{table}"')
        for sql, params in selects:
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchone()[0]
            node = plan[0]["Plan"]
            total += int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))
    return total


def test_every_page_costs_the_same_at_30_times_the_size(ledger_url, monkeypatch):
    meter = Meter()
    with metered(monkeypatch, meter):
        history = build_history(ledger_url)
        try:
            UserStore(history.ledger.tables).add("lo", PASSWORD, ["legal_officer"])
            UserStore(history.ledger.tables).add("adm", PASSWORD, ["admin"])
            grow(history, SMALL, 0)
            app = create_app(history.ledger, pseudonym_secret=history.rt.pseudonym_secret, session_secret_value=SECRET)
            decision = str(exchange_id(KSP_SENDER[0], history.sent["p5-21"]))
            pages = ["/queue", "/queue?escalated_first=1", "/queue?outcome=DENY", "/queue?sort=oldest",
                     "/api/decisions", f"/decisions/{decision}", f"/subjects/{history.pseudonym(CPR_A)}",
                     "/stats", "/ledger", "/api/ledger", "/escalations"]

            def measure_all() -> dict[str, tuple[int, int]]:
                out = {}
                with TestClient(app, base_url="http://127.0.0.1") as c:
                    assert web_login(c, "lo").status_code == 303
                    for path in pages:
                        assert c.get(path).status_code == 200, path  # warm: read models caught up
                        meter.reset()
                        meter.on = True
                        r = c.get(path)
                        meter.on = False
                        assert r.status_code == 200, path
                        cost = meter.steps if not history.ledger.tables.is_postgres else \
                            _buffers(ledger_url, meter.selects)
                        out[path] = (meter.statements, cost)
                return out

            small = measure_all()
            grow(history, LARGE, SMALL)
            large = measure_all()
        finally:
            history.rt.close()
    report = {p: (small[p], large[p]) for p in small}
    print("\npage: (statements, cost) small -> large")
    for p, (s, l) in report.items():
        print(f"  {p}: {s} -> {l}")
    for path, ((s_n, s_cost), (l_n, l_cost)) in report.items():
        assert s_cost > 0, path
        assert l_n <= s_n + 1, (path, s_n, l_n)  # the same statements (a session row may be cleaned)
        assert l_cost <= 2 * s_cost, (path, s_cost, l_cost)  # within 2x
