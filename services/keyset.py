"""The authority key set: which public key may sign in whose name, and when (docs/keyset.md).

The deployment provides it (``XLEDGER_KEYSET``: a YAML file, or a directory of them); the
shipped directory stays reference data for organisations and cooperations only. In
development the public development keys (``policies/directory/keys.yaml``, ids ``dev-…``)
are the default; in production there is no default, and a key set holding a development
key is refused.

The interface is small on purpose: ``KeySet.keys_for(org, at)`` lists an authority's keys
with their status at a time, ``KeySet.load`` reads one, ``KeySetFile`` edits one
(``xledger keys``), and ``LiveKeySet`` re-reads it when it changes, so a revocation takes
effect in a running gate within a second.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.logging import get_logger

log = get_logger(__name__)

DEV_KEYSET = Path(__file__).resolve().parent.parent / "policies" / "directory" / "keys.yaml"
DEV_KEY_PREFIX = "dev-"
FORMAT = "xledger-keyset/v1"
_FIELDS = {"key_id", "public_key", "valid_from", "valid_to", "revoked_at"}


class KeySetError(ValueError):
    """A key set that cannot be used; the message names the file and the entry."""


class Status(StrEnum):
    VALID = "VALID"
    NOT_YET_VALID = "NOT_YET_VALID"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"


# The gate's reason code for a correctly signed message whose key is not valid at the time.
REJECTION = {Status.NOT_YET_VALID: "KEY_NOT_YET_VALID", Status.EXPIRED: "KEY_EXPIRED", Status.REVOKED: "KEY_REVOKED"}


@dataclass(frozen=True)
class Key:
    org: str
    key_id: str
    public_key: bytes = field(repr=False)  # raw 32-byte Ed25519
    valid_from: date | None = None  # inclusive, UTC calendar dates
    valid_to: date | None = None
    revoked_at: datetime | None = None

    def status(self, at: datetime) -> Status:
        if self.revoked_at is not None and at >= self.revoked_at:
            return Status.REVOKED
        day = at.astimezone(timezone.utc).date()
        if self.valid_from is not None and day < self.valid_from:
            return Status.NOT_YET_VALID
        if self.valid_to is not None and day > self.valid_to:
            return Status.EXPIRED
        return Status.VALID

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode("ascii")

    @property
    def is_development(self) -> bool:
        return self.key_id.startswith(DEV_KEY_PREFIX)


@dataclass(frozen=True)
class KeyState:
    key: Key
    status: Status

    @property
    def usable(self) -> bool:
        return self.status is Status.VALID


class KeySet:
    def __init__(self, keys: Iterable[Key], source: str = "<memory>"):
        self.source = source
        self._by_org: dict[str, list[Key]] = {}
        self._by_public: dict[bytes, Key] = {}
        for key in keys:
            # The key id is not signed: a public key listed twice would let a message signed for one
            # authority (or under a revoked id) pass as another's. One key, one authority, one id.
            first = self._by_public.setdefault(key.public_key, key)
            if first is not key:
                raise KeySetError(f"{source}: {key.org} {key.key_id} and {first.org} {first.key_id} have the same "
                                  "public key; a key signs for one authority under one id")
            self._by_org.setdefault(key.org, []).append(key)

    @classmethod
    def load(cls, path: str | Path) -> "KeySet":
        """From a YAML file, or every ``*.yaml``/``*.yml`` file of a directory (an authority in one file only)."""
        p = Path(path)
        keys: list[Key] = []
        seen: dict[str, Path] = {}
        for file in _files(p):
            for org, entries in _read(file).items():
                if org in seen:
                    raise KeySetError(f"{file}: {org}: already listed in {seen[org]}")
                seen[org] = file
                keys += _parse_entries(file, org, entries)
        return cls(keys, str(p))

    @property
    def orgs(self) -> list[str]:
        return sorted(self._by_org)

    def keys_for(self, org: str, at: datetime | None = None) -> list[KeyState]:
        """Every key of ``org`` with its status at ``at`` (default: now)."""
        at = at or datetime.now(timezone.utc)
        return [KeyState(k, k.status(at)) for k in self._by_org.get(org, [])]

    def all(self) -> list[Key]:
        return [k for org in self.orgs for k in self._by_org[org]]

    def holder(self, public_key: bytes) -> Key | None:
        """The entry that lists this raw public key, if any."""
        return self._by_public.get(public_key)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_org.values())

    def development_keys(self, orgs: Iterable[str] = ()) -> list[Key]:
        """Keys anyone can sign with: a ``dev-`` id, or the derivable development key of any authority."""
        from services.keyring import dev_public_key

        public = {dev_public_key(org) for org in {*orgs, *self._by_org}}
        return [k for k in self.all() if k.is_development or k.public_key in public]


# -- reading ------------------------------------------------------------------------------------


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(f for f in directory.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())


def _files(p: Path) -> list[Path]:
    if p.is_dir():
        files = _yaml_files(p)
        if not files:
            raise KeySetError(f"{p}: no *.yaml key-set files in the directory")
        return files
    if not p.is_file():
        raise KeySetError(f"{p}: no such key-set file or directory")
    return [p]


class _Repeated(yaml.YAMLError):
    def __init__(self, key: Any, mark: Any):
        super().__init__(f"line {mark.line + 1}: {key} appears twice")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping: PyYAML would keep the last one
    without a word, so a second block for an authority would drop the first (and its revocations)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *anchor' is resolved by SafeLoader itself
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):  # an unhashable key is SafeLoader's own error
                if key in seen:
                    raise _Repeated(key, key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read(file: Path) -> dict[str, Any]:
    try:
        doc = yaml.load(file.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise KeySetError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise KeySetError(f"{file}: not UTF-8 text") from None
    except _Repeated as exc:
        raise KeySetError(f"{file}: {exc}") from None
    except yaml.YAMLError as exc:
        raise KeySetError(f"{file}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return _orgs_of(file, doc)


def _orgs_of(file: Path | str, doc: Any) -> dict[str, Any]:
    if doc is None:
        return {}
    if isinstance(doc, dict) and "keys" in doc:
        extra = set(doc) - {"keys", "format"}
        if extra:
            raise KeySetError(f"{file}: unknown top-level entries {sorted(extra)} (expected format, keys)")
        if doc.get("format", FORMAT) != FORMAT:
            raise KeySetError(f"{file}: format {doc.get('format')!r} is not {FORMAT}")
        doc = doc["keys"] or {}
    if not isinstance(doc, dict):
        raise KeySetError(f"{file}: expected a mapping of authority id to its keys")
    return doc


def _parse_entries(file: Path | str, org: Any, entries: Any) -> list[Key]:
    where = f"{file}: {org}"
    if not isinstance(org, str) or ":" not in org:
        raise KeySetError(f"{where}: an authority id looks like kommune:326")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise KeySetError(f"{where}: expected a list of keys")
    keys, ids = [], set()
    for i, entry in enumerate(entries):
        key = parse_key(org, entry, f"{where}[{i}]")
        if key.key_id in ids:
            raise KeySetError(f"{where}[{i}]: key_id {key.key_id!r} appears twice")
        ids.add(key.key_id)
        keys.append(key)
    return keys


def parse_key(org: str, entry: Any, where: str) -> Key:
    if not isinstance(entry, dict):
        raise KeySetError(f"{where}: expected a mapping with key_id and public_key")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise KeySetError(f"{where}: unknown fields {sorted(unknown)} (allowed: {', '.join(sorted(_FIELDS))})")
    key_id = entry.get("key_id")
    if not isinstance(key_id, str) or not key_id.strip():
        raise KeySetError(f"{where}: key_id is missing")
    where = f"{where} ({key_id})"
    if "public_key" not in entry:
        raise KeySetError(f"{where}: public_key is missing")
    try:
        public = public_key_bytes(entry["public_key"])
    except ValueError as exc:
        raise KeySetError(f"{where}: public_key {exc}") from None
    valid_from = _date(entry.get("valid_from"), f"{where}: valid_from")
    valid_to = _date(entry.get("valid_to"), f"{where}: valid_to")
    if valid_from and valid_to and valid_to < valid_from:
        raise KeySetError(f"{where}: valid_to is before valid_from")
    revoked_at = _instant(entry.get("revoked_at"), f"{where}: revoked_at")
    return Key(org, key_id, public, valid_from, valid_to, revoked_at)


def public_key_bytes(value: Any) -> bytes:
    """Raw Ed25519 public key bytes from SPKI PEM or the base64 of the raw 32 bytes."""
    if not isinstance(value, str):
        raise ValueError("must be text: a PEM block or base64")
    text = value.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValueError(f"is not a readable PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("is not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is neither PEM nor base64") from None
    if len(raw) != 32:
        raise ValueError(f"must be the base64 of 32 bytes (an Ed25519 public key), got {len(raw)} bytes")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def _date(value: Any, where: str) -> date | None:
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise KeySetError(f"{where} must be a date (YYYY-MM-DD)")


def _instant(value: Any, where: str) -> datetime | None:
    """A date-time with offset, or a date (its start, UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise KeySetError(f"{where} must be a date-time with offset or a date") from None
        if len(value.strip()) == 10:
            return parsed.replace(tzinfo=timezone.utc)
    else:
        raise KeySetError(f"{where} must be a date-time with offset or a date")
    if parsed.tzinfo is None:
        raise KeySetError(f"{where} must carry a UTC offset, e.g. 2026-05-01T12:00:00+00:00")
    return parsed


# -- the live key set the gate reads ------------------------------------------------------------


class LiveKeySet:
    """A key set re-read when its files change (checked at most every ``every`` seconds).

    A new version that does not load, or that ``vet`` finds problems with (development keys in
    production), is refused: the gate keeps the last good key set and logs why.
    """

    def __init__(self, path: str | Path, *, vet: Callable[[KeySet], list[str]] | None = None, every: float = 1.0):
        self.path = Path(path)
        self.vet = vet or (lambda _ks: [])
        self.every = every
        self._lock = threading.Lock()
        self._stamp = self._fingerprint()
        self._current = self._accept(KeySet.load(self.path), raise_on_problems=True)
        self._checked = time.monotonic()

    def current(self) -> KeySet:
        if time.monotonic() - self._checked >= self.every:
            with self._lock:
                if time.monotonic() - self._checked >= self.every:
                    self._refresh()
                    self._checked = time.monotonic()
        return self._current

    def keys_for(self, org: str, at: datetime | None = None) -> list[KeyState]:
        return self.current().keys_for(org, at)

    def _refresh(self) -> None:
        stamp = self._fingerprint()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            candidate = self._accept(KeySet.load(self.path), raise_on_problems=True)
        except KeySetError as exc:
            log.error("keyset.reload_refused", source=str(self.path), error=str(exc)[:300])
            return
        self._current = candidate
        log.info("keyset.reloaded", source=str(self.path), keys=len(candidate), authorities=len(candidate.orgs))

    def _accept(self, keyset: KeySet, *, raise_on_problems: bool) -> KeySet:
        problems = self.vet(keyset)
        if problems and raise_on_problems:
            raise KeySetError("; ".join(problems))
        return keyset

    def _fingerprint(self) -> tuple:
        try:
            files = _files(self.path)
        except KeySetError:
            return ()
        out = []
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f), st.st_mtime_ns, st.st_size))
        return tuple(out)


# -- editing (xledger keys) ---------------------------------------------------------------------


class KeySetFile:
    """Edits a key set on disk: add, rotate, revoke. Writes are atomic (a temporary file renamed),
    so a gate re-reading it never sees half a file. A directory key set gets one file per new
    authority (``kommune.326.yaml``); an authority already listed is edited where it is."""

    HEADER = ("# exchange-ledger authority key set (docs/keyset.md). Edit with `xledger keys`; never delete a\n"
              "# key that signed anything: revoke it, so recorded decisions stay re-checkable.\n")

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _file_for(self, org: str) -> Path:
        if not self.path.is_dir():
            return self.path
        for f in _yaml_files(self.path):
            if org in _read(f):
                return f
        return self.path / (org.replace(":", ".") + ".yaml")

    def _load_doc(self, file: Path) -> dict[str, list[dict[str, Any]]]:
        if not file.exists():
            return {}
        return {org: list(entries or []) for org, entries in _read(file).items()}

    def _save_doc(self, file: Path, doc: dict[str, list[dict[str, Any]]]) -> None:
        for org, entries in doc.items():  # never write what could not be read back
            _parse_entries(file, org, entries)
        text = self.HEADER + yaml.safe_dump({"format": FORMAT, "keys": doc}, sort_keys=True, allow_unicode=True)
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keyset-", dir=file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def keyset(self) -> KeySet:
        return KeySet.load(self.path)

    def _current(self) -> KeySet:
        """The key set as it stands, empty while there is no file yet."""
        if not (self.path.is_file() or self.path.is_dir() and _yaml_files(self.path)):
            return KeySet([], str(self.path))
        return self.keyset()

    def add(self, org: str, key_id: str, public_key: str, *, valid_from: date | None = None,
            valid_to: date | None = None) -> Key:
        file, doc = self._with_new_key(org, key_id, public_key, valid_from, valid_to)
        self._save_doc(file, doc)
        return parse_key(org, doc[org][-1], str(file))

    def _with_new_key(self, org: str, key_id: str, public_key: str, valid_from: date | None,
                      valid_to: date | None) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
        """The file ``org`` lives in, and its document with the new key appended (nothing written yet)."""
        file = self._file_for(org)
        doc = self._load_doc(file)
        entries = doc.setdefault(org, [])
        if any(e.get("key_id") == key_id for e in entries):
            raise KeySetError(f"{file}: {org} already has a key {key_id!r}; choose a new key id")
        holder = self._current().holder(public_key_bytes(public_key))
        if holder is not None:
            raise KeySetError(f"{org} {key_id}: {holder.org} {holder.key_id} has the same public key already; "
                              "a key signs for one authority under one id (revoked keys stay listed)")
        entry = {"key_id": key_id, "public_key": base64.b64encode(public_key_bytes(public_key)).decode("ascii"),
                 "valid_from": valid_from, "valid_to": valid_to}
        entries.append({k: v for k, v in entry.items() if v is not None})
        return file, doc

    def rotate(self, org: str, key_id: str, public_key: str, *, valid_from: date, overlap_days: int = 7,
               valid_to: date | None = None) -> tuple[Key, list[str]]:
        """Adds the new key from ``valid_from``; every other key of ``org`` that is not revoked ends
        ``overlap_days`` later (or earlier, if it ended sooner already). Returns the new key and the
        ids of the keys given an end."""
        from datetime import timedelta

        if overlap_days < 0:
            raise KeySetError("the overlap cannot be negative")
        # One write for the new key and the ends: a rotation that cannot end a key leaves nothing half done.
        file, doc = self._with_new_key(org, key_id, public_key, valid_from, valid_to)
        end = valid_from + timedelta(days=overlap_days)
        ended = []
        for entry in doc[org][:-1]:
            if entry.get("revoked_at") is not None:
                continue
            starts = _date(entry.get("valid_from"), "valid_from")
            if starts is not None and starts > end:
                raise KeySetError(f"{org} {entry['key_id']} starts {starts}, after the other keys would end ({end}); "
                                  "revoke it, or rotate from a later --valid-from")
            current_end = _date(entry.get("valid_to"), "valid_to")
            if current_end is None or current_end > end:
                entry["valid_to"] = end
                ended.append(entry["key_id"])
        self._save_doc(file, doc)
        return parse_key(org, doc[org][-1], str(file)), ended

    def revoke(self, org: str, key_id: str, at: datetime) -> Key:
        file = self._file_for(org)
        doc = self._load_doc(file)
        for entry in doc.get(org, []):
            if entry.get("key_id") == key_id:
                if entry.get("revoked_at") is not None:
                    raise KeySetError(f"{org} key {key_id!r} is already revoked (at {entry['revoked_at']})")
                entry["revoked_at"] = at.astimezone(timezone.utc).isoformat(timespec="seconds")
                self._save_doc(file, doc)
                return parse_key(org, entry, str(file))
        raise KeySetError(f"{file}: {org} has no key {key_id!r}")


# -- which key set, and may it be used ----------------------------------------------------------


def keyset_path(settings) -> Path | None:
    """XLEDGER_KEYSET; in development the shipped development keys when it is unset."""
    if settings.keyset:
        return Path(settings.keyset)
    return DEV_KEYSET if settings.is_development else None


def keyset_problems(settings, orgs: Iterable[str] = ()) -> tuple[KeySet | None, list[str]]:
    """The key set to use, and one line if it cannot be: unset or unreadable, or (outside
    development) holding a development key."""
    path = keyset_path(settings)
    if path is None:
        return None, ["XLEDGER_KEYSET is not set; production has no default key set (docs/keyset.md)"]
    try:
        keyset = KeySet.load(path)
    except KeySetError as exc:
        return None, [f"XLEDGER_KEYSET: {exc}"]
    if not settings.is_development and not len(keyset):
        # Every request would be rejected as UNKNOWN_SIGNER: an outage nobody is told about.
        return keyset, [f"XLEDGER_KEYSET: {path} holds no keys; production needs the authorities' public keys "
                        "(docs/keyset.md)"]
    if not settings.is_development:
        dev = keyset.development_keys(orgs)
        if dev:
            shown = ", ".join(f"{k.org} {k.key_id}" for k in dev[:3])
            return keyset, [f"XLEDGER_KEYSET holds {len(dev)} public development key(s) ({shown}"
                            f"{', …' if len(dev) > 3 else ''}); a production key set holds the authorities' own keys"]
    return keyset, []


def live_keyset(settings, orgs: Iterable[str] = ()) -> LiveKeySet:
    """The gate's key set, re-read on change; raises KeySetError with the problems if it cannot be used."""
    _, problems = keyset_problems(settings, orgs)
    if problems:
        raise KeySetError("; ".join(problems))
    orgs = list(orgs)

    def vet(keyset: KeySet) -> list[str]:
        if settings.is_development:
            return []
        dev = keyset.development_keys(orgs)
        return [f"holds {len(dev)} public development key(s)"] if dev else []

    return LiveKeySet(keyset_path(settings), vet=vet)


__all__ = ["Key", "KeyState", "KeySet", "KeySetError", "KeySetFile", "LiveKeySet", "Status", "REJECTION",
           "DEV_KEYSET", "keyset_path", "keyset_problems", "live_keyset", "public_key_bytes"]
