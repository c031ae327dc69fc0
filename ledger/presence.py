"""Whether a ledger exists at a URL, found out without creating anything.

Opening a ``Ledger`` creates its tables; that is right for the services that fill
a ledger, and wrong for anyone who only reads one: a mistyped path would answer
from an empty ledger, and an unrelated database would be given ledger tables.
Readers call ``require_ledger`` first.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from ledger.url import LedgerURLError, persistence_env

__all__ = ["NoLedger", "LedgerUnreachable", "require_ledger", "require_ledger_or_nothing", "sqlite_tables",
           "LEDGER_TABLES"]

# eventsourcing's events table (it prefixes the application's name on PostgreSQL only), and
# the subject keys every ledger of ours has had since its first release.
LEDGER_TABLES = {"sqlite": ("stored_events", "xl_subject_keys"), "postgres": ("xledger_events", "xl_subject_keys")}


class NoLedger(LookupError):
    """Nothing at the URL, or something that is not a ledger."""


class LedgerUnreachable(ConnectionError):
    """The ledger's database did not answer within the time given."""


def require_ledger(url: str, *, connect_timeout: int = 5) -> None:
    """Returns if a ledger exists at ``url``; raises NoLedger, LedgerUnreachable or LedgerURLError."""
    if url.startswith("sqlite:"):
        _require_sqlite(url)
    else:
        _require_postgres(url, connect_timeout)


def require_ledger_or_nothing(url: str) -> bool:
    """For the commands that create a ledger: True if one exists, False if a new one may be made
    there. Raises NoLedger for a SQLite file that holds something else, which must not be given
    ledger tables. (A PostgreSQL database or schema is provisioned for the ledger on purpose.)"""
    if not url.startswith("sqlite:///"):
        return False
    path = url[len("sqlite:///"):]
    if path == ":memory:" or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return False
    try:
        _require_sqlite(url)
    except NoLedger as exc:
        # A gate and a relay started together on a new file: one of them may look while the other
        # is still creating the tables. Only tables a ledger makes means a ledger in the making.
        try:
            tables = sqlite_tables(Path(path))
        except sqlite3.Error:
            tables = None
        if tables is not None and all(_is_ledger_table(t) for t in tables):
            return bool(tables)
        raise NoLedger(f"{exc}; it is left as it is") from None
    return True


def _is_ledger_table(name: str) -> bool:
    """A table a SQLite ledger creates: eventsourcing's (events, tracking, snapshots) or ours (xl_…)."""
    return name in ("stored_events", "tracking", "snapshots") or name.startswith(("xl_", "sqlite_"))


def _require_sqlite(url: str) -> None:
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
    if not path:
        raise LedgerURLError(f"sqlite URL needs a path, e.g. sqlite:///var/ledger.sqlite (got {url!r})")
    if path == ":memory:":
        raise NoLedger("an in-memory SQLite database is always empty")
    file = Path(path)
    if not file.is_file():
        raise NoLedger(f"no ledger at {path}")
    try:
        tables = sqlite_tables(file)
    except sqlite3.Error as exc:
        raise NoLedger(f"{path} is not a SQLite database ({exc})") from None
    missing = set(LEDGER_TABLES["sqlite"]) - tables
    if missing:
        raise NoLedger(f"{path} is not an exchange-ledger database (no {', '.join(sorted(missing))} table)")


def sqlite_tables(file: Path) -> set[str]:
    """The tables in a SQLite file, read without changing it (nor creating it); sqlite3.Error if it is none."""
    conn = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def _require_postgres(url: str, connect_timeout: int) -> None:
    import psycopg

    env = persistence_env(url)
    schema = env.get("POSTGRES_SCHEMA")
    where = f"database {env['POSTGRES_DBNAME']!r} on {env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"
    try:
        conn = psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], dbname=env["POSTGRES_DBNAME"],
                               user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None,
                               connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__  # psycopg's message, on one line
        if "does not exist" in text:
            raise NoLedger(f"no ledger: {text}") from None
        raise LedgerUnreachable(f"cannot reach the ledger {where} within {connect_timeout} s: {text}") from None
    try:
        with conn:
            qualify = (lambda t: f'"{schema}".{t}') if schema else (lambda t: t)
            found = {t for t in LEDGER_TABLES["postgres"]
                     if conn.execute("SELECT to_regclass(%s)", (qualify(t),)).fetchone()[0] is not None}
    except psycopg.Error as exc:
        raise LedgerUnreachable(f"cannot read the ledger {where}: {type(exc).__name__}") from None
    missing = set(LEDGER_TABLES["postgres"]) - found
    if missing:
        in_schema = f" schema {schema!r} of" if schema else ""
        raise NoLedger(f"no ledger in{in_schema} {where} (no {', '.join(sorted(missing))} table)")
