"""Signed session cookies: base64url(JSON) + "." + HMAC-SHA256, with an expiry. No server-side state."""

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


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


__all__ = ["SessionCodec", "session_secret", "new_csrf", "COOKIE", "LANG_COOKIE", "DEV_SESSION_SECRET"]
