"""The review app's pages at 10k, 100k (and, with ``--full``, 1M) ledger entries, SQLite and PostgreSQL:
each page a legal officer, an auditor, an administrator and an agency user opens, through the real app
(FastAPI's TestClient, logged in with the log-in form), and its cost at N entries against its cost at
10k (issue #18: within 2x, ratio cost(10k)/cost(N) >= 0.5).

The ledgers are ``bench.bench_audit``'s: exchanges decided by the gate's own pipeline, with the relay's
delivery bookkeeping, the read models caught up; PostgreSQL gets the same stored events transplanted.
Before measuring, the Merkle tree is integrated (the relay keeps it so; the builder does not) and a few
decisions get reviews (so the queue's status filter selects a handful of rows
out of all of them), through the app's own API. The built ledgers hold no escalation (release notices are
allowed or denied): the escalation pages are measured empty, and an escalation's own page not at all.

Each page is opened once untimed (the read models are then caught up), then ``REPEAT`` times, all
pages interleaved round by round, and its median wall-clock time is reported: on PostgreSQL the
database server's work is part of a page's cost, and the interleaving spreads the shared machine's load
over all pages alike. A page that records an access (a decision, an escalation, a subject report)
appends one entry each time, as it does in use.

The "deep" queue pages are the middle of the unfiltered queue: by page number (``page=``, OFFSET, kept
for the API and bounded by ``MAX_PAGE``) and by the keyset link the pages themselves give (``after=``);
and ``deep_keyset_tie``, by keyset from the middle of the largest group of rows sharing one
``occurred_at`` (where a walk bounded by ``occurred_at`` alone grew with the group).

Under ``python -m bench`` the ledgers are the audit group's (``bench.ledgers.SharedLedgers``): each size
is built and copied to PostgreSQL once per run, and measured here after the auditors' tools.

``XLEDGER_BENCH_REVIEW_CACHE=<dir>``: keep each built SQLite ledger there (``review-<entries>.sqlite``, its
build's timings in ``review-<entries>.json``) and build it only once (a copy is measured, so the cache
stays as built); ``python -m bench`` then takes the audit group's ledgers from there too.

Run: ``python -m bench.bench_review [--full | --sizes 10000,100000] [--backends sqlite,postgres]``.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from urllib.parse import urlencode

from bench.common import pg_database, row, size_label

REPEAT = 5
PASSWORD = "bench review password"
USERS = {"lo": ["legal_officer"], "aud": ["auditor"], "adm": ["admin"],
         "ksp": ["agency:kriminalforsorgen:kif-midt-vestsjaelland"]}
REVIEWS = 3  # decisions reviewed (UPHOLD) before measuring: the status filter finds only these
BASE_SIZE = 10_000


# -- ledgers ---------------------------------------------------------------------------------------


def _build(url: str, exchanges: int) -> dict:
    from bench.bench_audit import build
    from ledger.application import Ledger

    # The ledger's tables first: two builder processes creating them at once on a fresh SQLite file
    # can both insert eventsourcing's migration record (seen: IntegrityError "__migration__").
    Ledger(url).close()
    return build(url, exchanges)


def _sqlite_ledger(entries: int, workdir: Path) -> tuple[str, dict]:
    from bench.ledgers import exchanges_for

    exchanges = exchanges_for(entries)
    target = workdir / f"review-{entries}.sqlite"
    cache = os.environ.get("XLEDGER_BENCH_REVIEW_CACHE")
    if cache:
        import json
        import sqlite3

        cached = Path(cache) / f"review-{entries}.sqlite"
        built = cached.with_suffix(".json")  # the build's own info, for the rows that report it
        if not cached.exists() or not built.exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.unlink(missing_ok=True)
            info = _build(f"sqlite:///{cached}", exchanges)
            built.write_text(json.dumps(info))
        info = {**json.loads(built.read_text()), "cached": True}

        with sqlite3.connect(cached) as conn:  # everything in the main file before it is copied
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(cached, target)
        return f"sqlite:///{target}", info
    url = f"sqlite:///{target}"
    return url, _build(url, exchanges)


@contextmanager
def _ledgers(entries: int, backends: tuple[str, ...], shared=None):
    """(backend, url, build info) for each back-end, the SQLite ledger built first. With ``shared``
    (``bench.ledgers.SharedLedgers``), the run's ledgers the audit group measured: measured as they
    are (the review group comes last), not built again."""
    from bench.bench_audit import transplant

    if shared is not None:
        yield [(b, *(shared.sqlite(entries) if b == "sqlite" else shared.postgres(entries)))
               for b in ("sqlite", "postgres") if b in backends]
        return
    with tempfile.TemporaryDirectory(prefix="xlbench-review-") as d:
        sqlite_url, info = _sqlite_ledger(entries, Path(d))
        out = []
        if "sqlite" in backends:
            out.append(("sqlite", sqlite_url, info))
        if "postgres" in backends:
            with pg_database() as pg_url:
                out.append(("postgres", pg_url, transplant(sqlite_url, pg_url)))
                yield out
                return
        yield out


# -- the app and its users -------------------------------------------------------------------------


def _app(url: str):
    from ledger.application import Ledger
    from services.config import Settings
    from services.review.app import create_app
    from services.review.users import UserStore

    ledger = Ledger(url)
    store = UserStore(ledger.tables)
    for name, roles in USERS.items():
        if store.get(name) is None:
            store.add(name, PASSWORD, roles)
    settings = Settings.development(ledger_url=url)
    app = create_app(ledger, pseudonym_secret=settings.pseudonym_secret.encode(), session_secret_value="bench",
                     secure_cookies=False)
    return ledger, app


def _login(client, user: str) -> str:
    import re

    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": token, "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303, (user, r.status_code)
    return client.get("/subjects").text if user in ("lo", "aud") else ""


def _pick(ledger, sql: str, args=()) -> object:
    r = ledger.tables.fetchone(sql, args)
    return r[0] if r else None


def _prepare(ledger, clients: dict) -> dict[str, str]:
    """Values the pages are opened with, read from the read models (untimed), and the reviews and
    verdicts recorded through the app's API."""
    from ledger.readmodels import ReadModels

    models = ReadModels(ledger)
    models.catch_up()
    d = models.t("decisions")
    common = "SELECT {col} FROM " + d + " WHERE {col} <> '' GROUP BY {col} ORDER BY COUNT(*) DESC LIMIT 1"
    v: dict[str, str] = {
        "context": _pick(ledger, common.format(col="context")),
        "rule": _pick(ledger, common.format(col="rule")),
        "reason": _pick(ledger, common.format(col="reason")) or "",
        # The least frequent recipient: a selective filter.
        "authority": _pick(ledger, f"SELECT recipient FROM {d} GROUP BY recipient ORDER BY COUNT(*), recipient LIMIT 1"),
        "day": _pick(ledger, f"SELECT MAX(day) FROM {d}") or date.today().isoformat(),
    }
    n = int(_pick(ledger, f"SELECT COUNT(*) FROM {d}"))
    mid = ledger.tables.fetchone(f"SELECT exchange_id, occurred_at, position, recipient FROM {d} "
                                 f"ORDER BY occurred_at DESC, position DESC, recipient LIMIT 1 OFFSET {n // 2}")
    v["decision"], v["deep_page"] = mid[0], str(min(100_000, n // 2 // 50 + 1))
    v["deep_after"] = _cursor(mid)
    # The middle of the largest group of rows sharing one occurred_at, in queue order: a keyset page
    # from there costs what any page costs only if the walk enters the index at the cursor itself
    # (ties are common: one time for a day's events, a batch; these ledgers' re-sends copy it).
    at, size = ledger.tables.fetchone(f"SELECT occurred_at, COUNT(*) FROM {d} GROUP BY occurred_at "
                                      f"ORDER BY COUNT(*) DESC, occurred_at LIMIT 1")
    tie = ledger.tables.fetchone(f"SELECT exchange_id, occurred_at, position, recipient FROM {d} WHERE occurred_at = ? "
                                 f"ORDER BY position DESC, recipient LIMIT 1 OFFSET {int(size) // 2}", [at])
    v["tie_after"] = _cursor(tie)
    v["decisions"] = str(n)
    v["subject"] = _pick(ledger, f"SELECT subject FROM {models.t('disclosures')} LIMIT 1")
    v["subject_rows"] = str(_pick(ledger, f"SELECT COUNT(*) FROM {models.t('disclosures')} WHERE subject = ?",
                                  [v["subject"]]))
    v["nobody"] = "0" * 64  # a subject with no rows: the report's fixed cost
    v["escalation"] = _pick(ledger, f"SELECT exchange_id FROM {models.t('escalations')} ORDER BY position LIMIT 1")
    lo = clients["lo"]
    token = lo.cookies_csrf
    reviewed = ledger.tables.fetchall(f"SELECT exchange_id, recipient FROM {d} WHERE review_status IS NULL "
                                      f"OR review_status = 'PENDING' ORDER BY position LIMIT {REVIEWS}")
    for eid, recipient in reviewed:
        r = lo.post(f"/api/decisions/{eid}/reviews", json={"action": "UPHOLD", "recipient": recipient},
                    headers={"X-CSRF-Token": token})
        assert r.status_code == 201, r.text
    return v


def _cursor(mid) -> str:
    """The queue's keyset cursor for a row (services.review.routes.queue.cursor_of), if it has one."""
    try:
        from services.review.routes.queue import cursor_of
    except ImportError:
        return ""
    return cursor_of({"occurred_at": mid[1], "position": mid[2], "recipient": mid[3]})


def pages(v: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, user, path) of each page measured."""
    day = v["day"]
    out = [
        ("queue", "lo", "/queue"),
        ("queue.oldest", "lo", "/queue?sort=oldest"),
        ("queue.recorded", "lo", "/queue?sort=recorded"),
        ("queue.escalated_first", "lo", "/queue?escalated_first=1"),
        ("queue.outcome", "lo", "/queue?outcome=DENY"),
        ("queue.cooperation", "lo", "/queue?" + urlencode({"cooperation": v["context"]})),
        ("queue.rule", "lo", "/queue?" + urlencode({"rule": v["rule"]})),
        ("queue.reason", "lo", "/queue?" + urlencode({"reason": v["reason"]})),
        ("queue.authority", "lo", "/queue?" + urlencode({"authority": v["authority"]})),
        ("queue.days", "lo", "/queue?" + urlencode({"since": day, "until": day})),
        ("queue.status_upheld", "lo", "/queue?status=UPHELD"),
        ("queue.pending", "lo", "/queue?pending=1"),
        # By number: OFFSET, what the API still accepts; the pages' own links are by cursor (below).
        ("queue.deep_page_number", "lo", f"/queue?page={v['deep_page']}"),
        ("api.decisions", "lo", "/api/decisions?outcome=ALLOW"),
        ("decision", "lo", f"/decisions/{v['decision']}"),
        ("escalations", "lo", "/escalations"),
        ("escalations.all", "lo", "/escalations?status=all"),
        ("subjects", "lo", "/subjects"),
        ("subjects.find", "lo", "POST /subjects"),
        ("subject", "lo", f"/subjects/{v['subject']}"),
        ("subject.none", "lo", f"/subjects/{v['nobody']}"),
        ("stats", "lo", "/stats"),
        ("ledger", "lo", "/ledger"),
        ("auditor.queue", "aud", "/queue"),
        ("auditor.decision", "aud", f"/decisions/{v['decision']}"),
        ("admin.users", "adm", "/admin/users"),
        ("admin.stats", "adm", "/stats"),
        ("admin.ledger", "adm", "/ledger"),
        ("agency.queue", "ksp", "/queue"),
        ("agency.queue.outcome", "ksp", "/queue?outcome=DENY"),
        ("agency.decision", "ksp", f"/decisions/{v['decision']}"),
    ]
    if v.get("deep_after"):
        out.append(("queue.deep_keyset", "lo", "/queue?" + urlencode({"after": v["deep_after"]})))
        out.append(("queue.deep_keyset_tie", "lo", "/queue?" + urlencode({"after": v["tie_after"]})))
    if v.get("escalation"):
        out.append(("escalation", "lo", f"/escalations/{v['escalation']}"))
    return out


def _open(client, path: str):
    if path.startswith("POST "):  # the subject search: a CPR number in, a redirect to the report out
        from bench.bench_audit import _cprs

        r = client.post(path[5:], data={"subject": _cprs()[0], "csrf_token": client.cookies_csrf},
                        follow_redirects=False)
        assert r.status_code == 303, (path, r.status_code)
        return r
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return r


class _CPU:
    """CPU seconds spent on a page: this process (the app and the test client; nothing else runs
    in it meanwhile) and, on PostgreSQL, the server processes of the ledger's database
    (``/proc/<pid>/schedstat``, nanoseconds: the server is on this machine). Unlike the wall-clock
    time it does not grow with the other work on a shared machine, so it tells load from a page
    that reads more on a larger ledger."""

    def __init__(self, ledger) -> None:
        self.ledger = ledger
        self.pids: list[int] = []
        if ledger.tables.is_postgres:
            rows = ledger.tables.fetchall("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                          "AND backend_type = 'client backend'")
            self.pids = [int(r[0]) for r in rows if Path(f"/proc/{int(r[0])}/schedstat").exists()]

    def now(self) -> float:
        total = time.process_time()
        for pid in self.pids:
            try:
                total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                pass
        return total


def measure(url: str, repeat: int = REPEAT) -> tuple[dict[str, float], dict[str, str]]:
    """Median seconds of each page, pages interleaved round by round; and the values used. The
    median CPU seconds of each page (``_CPU``) are in the values, under ``cpu``."""
    import re

    from fastapi.testclient import TestClient

    ledger, app = _app(url)
    # The relay keeps the Merkle tree integrated; the builder does not. Untimed, before the pages.
    ledger.integrate()
    if ledger.tables.is_postgres:
        # Statistics, as autovacuum keeps them on a live database: a table just filled has none, and
        # the planner then takes "notification_id > ?" for a third of a million rows (seen: a
        # sequential scan of the log for /ledger's pending count, 0.6 s at 1M).
        with ledger.tables.cursor() as c:
            c.execute("ANALYZE")
    clients = {}
    try:
        for user in USERS:
            c = TestClient(app, base_url="http://127.0.0.1")
            c.__enter__()
            html = _login(c, user)
            m = re.search(r'name="csrf_token" value="([^"]+)"', html)
            c.cookies_csrf = m.group(1) if m else ""
            clients[user] = c
        v = _prepare(ledger, clients)
        plan = pages(v)
        times: dict[str, list[float]] = {name: [] for name, _, _ in plan}
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in plan}
        # Round 0 warms (read models caught up, templates compiled, the pool's connections open)
        # and is not kept.
        for rnd in range(repeat + 1):
            if rnd == 1:
                clock = _CPU(ledger)
            for name, user, path in plan:
                t0, c0 = time.perf_counter(), clock.now() if rnd else 0.0
                _open(clients[user], path)
                if rnd:
                    times[name].append(time.perf_counter() - t0)
                    cpu[name].append(clock.now() - c0)
        v["cpu"] = {k: statistics.median(c) for k, c in cpu.items()}
        return {k: statistics.median(t) for k, t in times.items()}, v
    finally:
        for c in clients.values():
            c.__exit__(None, None, None)
        ledger.close()


def run(sizes: tuple[int, ...] = (BASE_SIZE, 100_000), backends: tuple[str, ...] = ("sqlite", "postgres"), *,
        repeat: int = REPEAT, echo: bool = False, shared=None) -> list[dict]:
    """``shared``: a ``bench.ledgers.SharedLedgers`` holding the run's ledgers (else built here)."""
    rows: list[dict] = []
    base: dict[str, dict[str, float]] = {}
    base_cpu: dict[str, dict[str, float]] = {}
    for entries in sizes:
        with _ledgers(entries, backends, shared) as ledgers:
            for backend, url, info in ledgers:
                t0 = time.perf_counter()
                got, v = measure(url, repeat)
                size = size_label(entries)
                print(f"[bench] review {backend} {size}: {v['decisions']} decisions, pages measured in "
                      f"{time.perf_counter() - t0:.0f}s (built in {info.get('build_s', 0):.0f}s)",
                      file=sys.stderr, flush=True)
                first = base.setdefault(backend, got) if entries == sizes[0] else base.get(backend)
                cpu_ms = {k: c * 1000 for k, c in v["cpu"].items()}
                first_cpu = base_cpu.setdefault(backend, cpu_ms) if entries == sizes[0] else base_cpu.get(backend)
                for name, seconds in got.items():
                    ms = seconds * 1000
                    b = first.get(name) if first is not None and first is not got else None
                    note = f"{size_label(sizes[0])}: {b * 1000:.1f} ms" if b else None
                    if b and first_cpu and name in first_cpu:
                        # CPU beside the wall clock: a ratio that misses on the wall clock but not
                        # here is the shared machine's load, not the page.
                        note += f"; CPU {first_cpu[name]:.1f} -> {cpu_ms[name]:.1f} ms"
                    if name == "subject":
                        note = f"{v['subject_rows']} register rows" + (f"; {note}" if note else "")
                    # No target for the subject report (its register grows with the ledger here: the
                    # same ~6,500 subjects throughout) nor for page numbers (the links are by cursor).
                    untargeted = name in ("subject", "queue.deep_page_number")
                    r = row(f"review.{backend}.{name}.{size}", ms, "ms", note, b * 1000 if b else None,
                            higher_better=False, target=0.5 if b and not untargeted else None)
                    rows.append(r)
                    if echo:
                        print(r, flush=True)
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.bench_review", description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="10k, 100k and 1M entries")
    ap.add_argument("--sizes", default="", help="comma-separated ledger sizes in entries (first is the baseline)")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--repeat", type=int, default=REPEAT)
    a = ap.parse_args()
    sizes = tuple(int(s) for s in a.sizes.split(",") if s) or \
        ((BASE_SIZE, 100_000, 1_000_000) if a.full else (BASE_SIZE, 100_000))
    run(sizes, tuple(a.backends.split(",")), repeat=a.repeat, echo=True)
