"""Users of the review app, in a side table of the ledger's database.

Passwords are hashed with scrypt (hashlib, per-user random salt) and compared in
constant time; an unknown user name costs the same hash as a known one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from services.review.sessions import revoke_user

FIXED_ROLES = ("legal_officer", "auditor", "admin")
AGENCY_PREFIX = "agency:"
# User names: lower-case letters a-z, the Danish æ, ø and å and the accented letters common in
# Danish names (é, ä, ö, ü), digits, '.', '_' and '-'; starting with a letter or digit, 2-64
# characters, after NFC normalisation (so "jørgen" typed on any keyboard is one name). No other
# scripts: look-alike letters (Cyrillic а for Latin a) would make two users look the same.
USERNAME_LETTERS = "abcdefghijklmnopqrstuvwxyzæøåéäöü"
USERNAME_RE = re.compile(rf"^[{USERNAME_LETTERS}0-9][{USERNAME_LETTERS}0-9._-]{{1,63}}$")
USERNAME_RULE = ("user name must be 2-64 characters: lower-case letters (a-z, æ, ø, å, é, ä, ö, ü), digits, "
                 "'.', '_' or '-', starting with a letter or digit")
MIN_PASSWORD = 10

_N, _R, _P = 2 ** 14, 8, 1
_DUMMY = None


class UserError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    username: str
    roles: tuple[str, ...]
    password_hash: str
    created_at: str

    @property
    def agencies(self) -> tuple[str, ...]:
        return tuple(r[len(AGENCY_PREFIX):] for r in self.roles if r.startswith(AGENCY_PREFIX))

    @property
    def fingerprint(self) -> str:
        # Changes with the password: sessions signed before a password change stop working.
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def normalise_username(username: str) -> str:
    """NFC form of a user name (a decomposed "ø" from some keyboards and forms becomes one character)."""
    return unicodedata.normalize("NFC", username or "")


def check_username(username: str) -> str:
    """The NFC-normalised user name, or UserError naming what is wrong with it."""
    name = normalise_username(username)
    if USERNAME_RE.match(name):
        return name
    if name != name.lower() and USERNAME_RE.match(name.lower()):
        raise UserError(f"{USERNAME_RULE}; upper-case letters are not allowed (did you mean {name.lower()!r}?)")
    bad = sorted({ch for ch in name if ch not in USERNAME_LETTERS and ch not in "0123456789._-"})
    if bad:
        shown = ", ".join(repr(ch) if ch.isprintable() and not ch.isspace() else f"U+{ord(ch):04X}" for ch in bad)
        raise UserError(f"{USERNAME_RULE}; not allowed: {shown}")
    raise UserError(USERNAME_RULE)


def hash_password(password: str, *, n: int = _N) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=_R, p=_P, dklen=32)
    return f"scrypt${n}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def validate_roles(roles: Iterable[str], known_orgs: Iterable[str] | None = None) -> tuple[str, ...]:
    out = []
    orgs = set(known_orgs) if known_orgs is not None else None
    for role in roles:
        role = role.strip()
        if not role:
            continue
        if role in FIXED_ROLES:
            out.append(role)
        elif role.startswith(AGENCY_PREFIX) and len(role) > len(AGENCY_PREFIX):
            org = role[len(AGENCY_PREFIX):]
            if orgs is not None and org not in orgs:
                raise UserError(f"unknown authority {org!r} in role {role!r} (not in the directory)")
            out.append(role)
        else:
            raise UserError(f"unknown role {role!r}: use legal_officer, auditor, admin or agency:<authority-id>")
    if not out:
        raise UserError("at least one role is required")
    return tuple(sorted(set(out)))


class UserStore:
    def __init__(self, tables):
        self.tables = tables
        with tables.ddl() as c:
            c.execute("""CREATE TABLE IF NOT EXISTS xl_users (
                username TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                roles TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL)""")

    def _now(self) -> str:
        return datetime.now(timezone.utc).isoformat(timespec="seconds")

    def add(self, username: str, password: str, roles: Iterable[str], known_orgs: Iterable[str] | None = None) -> User:
        username = check_username(username)
        _check_password(password)
        roles = validate_roles(roles, known_orgs)
        if self.get(username) is not None:
            raise UserError(f"user {username!r} already exists")
        now = self._now()
        with self.tables.cursor() as c:
            c.execute("INSERT INTO xl_users (username, password_hash, roles, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                      (username, hash_password(password), ",".join(roles), now, now))
        return self.get(username)  # type: ignore[return-value]

    def get(self, username: str) -> User | None:
        username = normalise_username(username)
        row = self.tables.fetchone("SELECT username, roles, password_hash, created_at FROM xl_users WHERE username = ?",
                                   (username,))
        return User(row[0], tuple(r for r in row[1].split(",") if r), row[2], row[3]) if row else None

    def list(self) -> list[User]:
        rows = self.tables.fetchall("SELECT username, roles, password_hash, created_at FROM xl_users ORDER BY username")
        return [User(r[0], tuple(x for x in r[1].split(",") if x), r[2], r[3]) for r in rows]

    def remove(self, username: str) -> bool:
        username = normalise_username(username)
        if self.get(username) is None:
            return False
        with self.tables.cursor() as c:
            c.execute("DELETE FROM xl_users WHERE username = ?", (username,))
        revoke_user(self.tables, username)
        return True

    def passwd(self, username: str, password: str) -> None:
        username = normalise_username(username)
        _check_password(password)
        if self.get(username) is None:
            raise UserError(f"no user {username!r}")
        with self.tables.cursor() as c:
            c.execute("UPDATE xl_users SET password_hash = ?, updated_at = ? WHERE username = ?",
                      (hash_password(password), self._now(), username))
        # Sessions opened with the old password end now, in every server process.
        revoke_user(self.tables, username)

    def authenticate(self, username: str, password: str) -> User | None:
        global _DUMMY
        username = normalise_username(username)
        user = self.get(username) if USERNAME_RE.match(username) else None
        if user is None:
            if _DUMMY is None:
                _DUMMY = hash_password("not a real password")
            verify_password(password or "", _DUMMY)  # same cost as a real check
            return None
        return user if verify_password(password or "", user.password_hash) else None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must be at least {MIN_PASSWORD} characters")


__all__ = ["User", "UserStore", "UserError", "hash_password", "verify_password", "validate_roles", "FIXED_ROLES",
           "check_username", "normalise_username", "USERNAME_RULE"]
