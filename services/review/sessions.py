"""Sessions: a signed cookie (base64url(JSON) + "." + HMAC-SHA256, with an expiry) that names a
session on record in the ledger's database (``xl_review_sessions``).

The record is what makes log-out and password changes final: a copied cookie stops working the
moment its row is gone, in every server process, although its signature and expiry still hold."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from typing import Any

from services.config import DEV_SESSION_SECRET
COOKIE = "xl_session"
LANG_COOKIE = "xl_lang"
MAX_AGE = 8 * 3600


def session_secret(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("XLEDGER_SESSION_SECRET") or DEV_SESSION_SECRET


class SessionCodec:
    def __init__(self, secret: str | bytes, max_age: int = MAX_AGE):
        self.key = hashlib.sha256(b"xl-session|" + (secret.encode() if isinstance(secret, str) else secret)).digest()
        self.max_age = max_age

    def _mac(self, body: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.key, body, hashlib.sha256).digest()).decode().rstrip("=")

    def dumps(self, data: dict[str, Any]) -> str:
        data = {**data, "exp": int(time.time()) + self.max_age}
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self._mac(body.encode())}"

    def loads(self, value: str | None) -> dict[str, Any] | None:
        if not value or "." not in value:
            return None
        body, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, TypeError):
            return None
        if not isinstance(data, dict) or int(data.get("exp", 0)) < time.time():
            return None
        return data


class SessionStore:
    """Server-side session records: created at log-in, deleted at log-out, and all of a user's
    deleted when the password changes or the user is removed (``revoke_user``)."""

    def __init__(self, tables, max_age: int = MAX_AGE):
        self.tables, self.max_age = tables, max_age
        ensure_table(tables)

    def create(self, username: str) -> str:
        sid = secrets.token_urlsafe(24)
        now = int(time.time())
        with self.tables.cursor() as c:
            # Expired rows of anyone go with each log-in: the table holds live sessions only.
            c.execute("DELETE FROM xl_review_sessions WHERE expires_at < ?", [now])
            c.execute("INSERT INTO xl_review_sessions (sid, username, created_at, expires_at) VALUES (?, ?, ?, ?)",
                      [sid, username, now, now + self.max_age])
        return sid

    def active(self, sid: str, username: str) -> bool:
        row = self.tables.fetchone("SELECT username, expires_at FROM xl_review_sessions WHERE sid = ?", [str(sid)])
        return row is not None and row[0] == username and int(row[1]) >= time.time()

    def revoke(self, sid: str) -> None:
        with self.tables.cursor() as c:
            c.execute("DELETE FROM xl_review_sessions WHERE sid = ?", [str(sid)])

    def count(self, username: str) -> int:
        return int(self.tables.fetchone("SELECT COUNT(*) FROM xl_review_sessions WHERE username = ?", [username])[0])


def ensure_table(tables) -> None:
    with tables.ddl() as c:
        c.execute("""CREATE TABLE IF NOT EXISTS xl_review_sessions (
            sid TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL)""")


def revoke_user(tables, username: str) -> None:
    """Ends every session of this user (a password change, a removed user)."""
    ensure_table(tables)
    with tables.cursor() as c:
        c.execute("DELETE FROM xl_review_sessions WHERE username = ?", [username])


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


__all__ = ["SessionCodec", "SessionStore", "revoke_user", "session_secret", "new_csrf", "COOKIE", "LANG_COOKIE", "DEV_SESSION_SECRET"]
