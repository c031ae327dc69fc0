"""Ledger URLs (``sqlite:///path`` or ``postgresql://user:pw@host:port/db``) to eventsourcing settings."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


class LedgerURLError(ValueError):
    pass


def persistence_env(url: str) -> dict[str, str]:
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise LedgerURLError(f"sqlite URL needs a path, e.g. sqlite:///var/ledger.sqlite (got {url!r})")
        if path == ":memory:":
            dbname = "file:xledger?mode=memory&cache=shared"
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            dbname = path
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": dbname, "SQLITE_LOCK_TIMEOUT": "10"}
    if parsed.scheme in ("postgresql", "postgres"):
        dbname = parsed.path.lstrip("/")
        if not dbname:
            raise LedgerURLError(f"postgresql URL needs a database name (got {_redact(url)!r})")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
        }
        schema = parse_qs(parsed.query).get("schema")
        if schema:
            env["POSTGRES_SCHEMA"] = schema[0]
        return env
    raise LedgerURLError(f"unsupported ledger URL scheme {parsed.scheme!r}: use sqlite:///PATH or postgresql://…")


def _redact(url: str) -> str:
    p = urlparse(url)
    return url.replace(p.password, "***") if p.password else url
