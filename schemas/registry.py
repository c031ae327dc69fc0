"""The schemas under ``schemas/<name>/v<N>.avsc``, indexed by name and by fingerprint.

A writer schema is found by its CRC-64-AVRO fingerprint (Avro single-object
encoding); readers always use the newest version of the same record name, so
old messages are resolved into the current shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_ROOT = Path(__file__).resolve().parent
_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


class RegistryError(Exception):
    """A schema file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class SchemaVersion:
    name: str  # full Avro name, e.g. dk.xledger.payload.ReleaseNotice
    folder: str  # e.g. release_notice
    version: int
    path: Path
    raw: dict[str, Any] = field(repr=False, compare=False)

    @cached_property
    def parsed(self) -> dict[str, Any]:
        return parse_schema(self.raw, _write_hint=False)

    @cached_property
    def canonical_form(self) -> str:
        return to_parsing_canonical_form(self.raw)

    @cached_property
    def fingerprint(self) -> bytes:
        """The 8 bytes single-object encoding carries: the CRC-64-AVRO fingerprint, little-endian.

        fastavro's hex string already lists the bytes in that order (the Avro specification's
        example for SignedMessage v1 is 8e675cc7c3ab57d9).
        """
        return bytes.fromhex(fingerprint(self.canonical_form, "CRC-64-AVRO"))

    @cached_property
    def legacy_fingerprint(self) -> bytes:
        """The byte-reversed (big-endian) fingerprint that releases before 2026-11-30 wrote.

        Ledgers recorded then hold sealed messages in this form; they must still decode.
        """
        return self.fingerprint[::-1]


class SchemaRegistry:
    def __init__(self, versions: list[SchemaVersion]):
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._by_legacy_fingerprint: dict[bytes, SchemaVersion] = {}
        self._by_name: dict[str, list[SchemaVersion]] = {}
        self._by_apache_fingerprint: dict[bytes, SchemaVersion] | None = None
        for v in sorted(versions, key=lambda v: (v.name, v.version)):
            if v.fingerprint in self._by_fingerprint:
                other = self._by_fingerprint[v.fingerprint]
                raise RegistryError(f"{v.path} has the same canonical form as {other.path}")
            self._by_fingerprint[v.fingerprint] = v
            self._by_legacy_fingerprint[v.legacy_fingerprint] = v
            self._by_name.setdefault(v.name, []).append(v)
        clash = set(self._by_fingerprint) & set(self._by_legacy_fingerprint)
        if any(self._by_fingerprint[fp] is not self._by_legacy_fingerprint[fp] for fp in clash):
            # Never happens for distinct 64-bit hashes in practice; if it did, old data would be ambiguous.
            raise RegistryError("a schema's fingerprint equals another schema's legacy (byte-reversed) fingerprint")

    @classmethod
    def load(cls, root: Path = SCHEMA_ROOT) -> "SchemaRegistry":
        versions: list[SchemaVersion] = []
        for path in sorted(root.glob("*/v*.avsc")):
            m = _VERSION_FILE.match(path.name)
            if not m:
                continue
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise RegistryError(f"{path}: not valid JSON: {exc}") from exc
            namespace = raw.get("namespace")
            name = raw.get("name")
            if not name:
                raise RegistryError(f"{path}: top-level schema has no name")
            full = f"{namespace}.{name}" if namespace and "." not in name else name
            v = SchemaVersion(full, path.parent.name, int(m.group(1)), path, raw)
            try:
                v.parsed
            except Exception as exc:  # fastavro raises several types for bad schemas
                raise RegistryError(f"{path}: invalid Avro schema: {exc}") from exc
            versions.append(v)
        if not versions:
            raise RegistryError(f"no schemas found under {root}")
        return cls(versions)

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)

    def by_legacy_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_legacy_fingerprint.get(fp)

    def by_apache_avro_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        """The schema whose fingerprint Apache avro 1.12's ``Schema.fingerprint()`` gives as ``fp``.

        That library keeps ``logicalType`` in its canonical form, so for a schema with a date field
        it computes other bytes than the specification; never valid, only named in errors.
        """
        if self._by_apache_fingerprint is None:
            import avro.schema

            self._by_apache_fingerprint = {
                avro.schema.parse(json.dumps(v.raw)).fingerprint("CRC-64-AVRO"): v for v in self.all_versions()}
        v = self._by_apache_fingerprint.get(fp)
        return v if v is not None and v.fingerprint != fp else None

    def latest(self, name: str) -> SchemaVersion:
        try:
            return self._by_name[name][-1]
        except KeyError:
            raise RegistryError(f"unknown schema {name!r}") from None

    def versions(self, name: str) -> list[SchemaVersion]:
        return list(self._by_name.get(name, []))

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def all_versions(self) -> list[SchemaVersion]:
        return [v for name in self.names() for v in self._by_name[name]]


_default: SchemaRegistry | None = None


def default_registry() -> SchemaRegistry:
    global _default
    if _default is None:
        _default = SchemaRegistry.load()
    return _default
