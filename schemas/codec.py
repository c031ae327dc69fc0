"""Avro single-object encoding: 0xC3 0x01, the writer's 8-byte CRC-64-AVRO fingerprint, the body.

Every failure is a ``CodecError`` with a stable ``reason`` code, so the gate can
dead-letter it with a header that names what was wrong.
"""

from __future__ import annotations

import io
from typing import Any, NamedTuple

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate

from schemas.registry import SchemaRegistry, SchemaVersion, default_registry

MARKER = b"\xc3\x01"
HEADER_LEN = len(MARKER) + 8
MAX_MESSAGE_BYTES = 1024 * 1024


class CodecError(Exception):
    """Bytes that are not a valid message of a known schema."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Decoded(NamedTuple):
    """A named tuple rather than a frozen dataclass: the gate decodes three layers of every message,
    and a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``."""

    name: str
    writer_version: int
    record: dict[str, Any]


class AvroCodec:
    """Encodes the standard form; decodes it, and with ``legacy_fingerprints`` also the byte-reversed
    fingerprints of releases before 2026-11-30, which old ledgers hold.

    Readers of stored data (relay, auditors) keep the default; the gate takes messages from the
    wire in the standard form only, and names the byte-order mistake when it sees one.
    """

    def __init__(self, registry: SchemaRegistry | None = None, *, legacy_fingerprints: bool = True):
        self.registry = registry or default_registry()
        self.legacy_fingerprints = legacy_fingerprints
        # fastavro re-parses an un-hinted schema on every read, write and validate (the
        # registry's ``parsed`` is un-hinted); parse each once here with fastavro's hint.
        self._hinted: dict[tuple[str, int], dict[str, Any]] = {}
        # Per writer fingerprint seen: the writer, its parsed schema, and the parsed reader schema
        # (None when the writer is the latest). The registry does not change once built, so a
        # fingerprint always resolves the same way; ``decode`` then does one lookup per message.
        self._readers: dict[bytes, tuple[SchemaVersion, dict[str, Any], dict[str, Any] | None]] = {}
        # Per (name, version asked for): the writer's schema, its field names (encode refuses a record
        # with any other key), its parsed schema, and for ``encode(..., built=True)`` its top-level array
        # and union fields (_writer_checks), or None when fastavro's writer could write a wrong value in
        # it without raising.
        self._encoders: dict[tuple[str, int | None], tuple[SchemaVersion, frozenset[str], dict[str, Any],
                                                           tuple[tuple[str, ...], tuple[str, ...]] | None]] = {}

    def _fast(self, schema: SchemaVersion) -> dict[str, Any]:
        key = (schema.name, schema.version)
        hinted = self._hinted.get(key)
        if hinted is None:
            hinted = self._hinted[key] = parse_schema(schema.raw)
        return hinted

    def encode(self, name: str, record: dict[str, Any], version: int | None = None, *, built: bool = False) -> bytes:
        """The record in single-object encoding; CodecError INVALID_RECORD naming what is wrong.

        ``built=True`` is for records our own code builds from typed values (the relay's inbox copies
        and receipts): fastavro's validation of the whole record (~5 µs a record) is skipped where
        fastavro's writer refuses the same wrong values itself, and run when it refuses, for the
        error that names the field. That holds for a schema of strings, bytes, enums and records of
        those, with arrays of them and nullable unions of them only at the top (checked here: an array
        a list or tuple, the writer takes any iterable, a string as its characters; no union value a
        tuple, which the writer reads as a branch name and a value). For any other schema (booleans
        and numbers the writer writes wrong silently: "x" as true, True as 1, 2**40 into an int)
        ``built`` changes nothing. The bytes are the same either way: validation writes nothing."""
        known = self._encoders.get((name, version))
        if known is None:
            schema = self._writer(name, version)
            known = self._encoders[(name, version)] = (
                schema, frozenset(f["name"] for f in schema.raw["fields"]), self._fast(schema),
                _writer_checks(schema.raw))
        schema, names, parsed, checks = known
        if not record.keys() <= names:
            # fastavro would silently drop them: a misspelt optional field must not vanish unnoticed.
            raise CodecError("INVALID_RECORD", f"{name}: unknown fields {sorted(set(record) - names)}")
        if built:
            if checks is None:
                built = False
            else:
                arrays, unions = checks
                for f in arrays:
                    if not isinstance(record.get(f, ()), (list, tuple)):
                        built = False
                for f in unions:
                    if isinstance(record.get(f), tuple):
                        built = False
        if not built:
            # The boolean check first: with raise_errors=True fastavro formats an error (JSON-dumping
            # the datum) for every union branch it tries, even on a valid record.
            try:
                valid = validate(record, parsed, raise_errors=False)
            except Exception:  # noqa: BLE001 - fastavro's validation fails on some values itself (("x",) in a union)
                valid = False
            if not valid:
                self._invalid(name, record, parsed, schema.raw)
                # Refused as a whole without a field to name: still never written.
                raise CodecError("INVALID_RECORD", f"{name}: the record does not match the schema")
        buf = io.BytesIO()
        buf.write(MARKER)
        buf.write(schema.fingerprint)
        try:
            schemaless_writer(buf, parsed, record)
        except Exception as exc:  # TypeError, ValueError, UnicodeEncodeError, ...
            self._invalid(name, record, parsed, schema.raw)  # the writer refused: say which field
            raise CodecError("INVALID_RECORD", f"{name}: {type(exc).__name__}: {exc}") from exc
        return buf.getvalue()

    @staticmethod
    def _invalid(name: str, record: dict[str, Any], parsed: dict[str, Any], raw: dict[str, Any]) -> None:
        """Raises CodecError INVALID_RECORD naming the invalid fields, if it finds any: fastavro's
        validation error, or else the fields fastavro cannot validate or write on their own (its
        validation raises ValueError on a tuple in a union; its writer refuses a string with a lone
        surrogate that validation takes, and names no field). Only on the way to an error."""
        try:
            validate(record, parsed, raise_errors=True)
        except AvroValidationError as exc:
            raise CodecError("INVALID_RECORD", f"{name}: {exc}") from exc
        except Exception:  # noqa: BLE001 - found field by field below
            pass
        named: dict[str, Any] = {}
        parse_schema(raw, named_schemas=named)
        bad = []
        for f in raw["fields"]:
            # Each field alone, in the record's namespace, with the record's named types known.
            one = parse_schema({"type": "record", "name": "_Field", "namespace": raw.get("namespace", ""),
                                "fields": [f]}, named_schemas=dict(named))
            value = {f["name"]: record[f["name"]]} if f["name"] in record else {}
            try:
                if not validate(value, one, raise_errors=False):
                    bad.append(f["name"])
                    continue
                schemaless_writer(io.BytesIO(), one, value)
            except Exception:  # noqa: BLE001 - any failure of this field alone names it
                bad.append(f["name"])
        if bad:
            raise CodecError("INVALID_RECORD", f"{name}: invalid value in {', '.join(bad)}")

    def decode(self, data: bytes, expect: str | None = None) -> Decoded:
        if len(data) > MAX_MESSAGE_BYTES:
            raise CodecError("OVERSIZED", f"{len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
        if len(data) < HEADER_LEN:
            raise CodecError("TRUNCATED", f"{len(data)} bytes is shorter than the {HEADER_LEN}-byte header")
        if data[:2] != MARKER:
            raise CodecError("BAD_MARKER", f"expected single-object marker c301, got {data[:2].hex()}")
        fp = data[2:HEADER_LEN]
        known = self._readers.get(fp)
        if known is None:
            writer = self._writer_of(fp)
            reader = self.registry.latest(writer.name)
            # Without a reader schema when it is the writer's: fastavro then reads without schema
            # resolution, the same record ~30 % faster (most messages are written in the latest version).
            known = self._readers[fp] = (writer, self._fast(writer), None if reader is writer else self._fast(reader))
        writer, writer_schema, reader_schema = known
        if expect is not None and writer.name != expect:
            raise CodecError("WRONG_TYPE", f"expected {expect}, got {writer.name}")
        body = io.BytesIO(data)
        body.seek(HEADER_LEN)
        try:
            record = schemaless_reader(body, writer_schema, reader_schema)
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError, ...
            raise CodecError("MALFORMED", f"{writer.name} v{writer.version}: {type(exc).__name__}: {exc}") from exc
        if body.tell() != len(data):
            raise CodecError("MALFORMED", f"{len(data) - body.tell()} trailing bytes after {writer.name}")
        return Decoded(writer.name, writer.version, record)

    def _writer_of(self, fp: bytes) -> SchemaVersion:
        writer = self.registry.by_fingerprint(fp)
        if writer is not None:
            return writer
        legacy = self.registry.by_legacy_fingerprint(fp)
        if legacy is None:
            apache = self.registry.by_apache_avro_fingerprint(fp)
            if apache is not None:
                raise CodecError("UNKNOWN_FINGERPRINT", f"no schema has fingerprint {fp.hex()}; it is {apache.name} "
                                 f"v{apache.version}'s fingerprint over a canonical form that keeps logicalType (as "
                                 f"Apache avro 1.12's Schema.fingerprint() computes it), but the Parsing Canonical "
                                 f"Form drops logicalType: {apache.fingerprint.hex()}")
            raise CodecError("UNKNOWN_FINGERPRINT", f"no schema has fingerprint {fp.hex()}")
        if not self.legacy_fingerprints:
            raise CodecError("UNKNOWN_FINGERPRINT", f"no schema has fingerprint {fp.hex()}; it is {legacy.name} "
                             f"v{legacy.version}'s fingerprint in big-endian order, but single-object encoding "
                             f"writes it little-endian: {legacy.fingerprint.hex()}")
        return legacy

    def _writer(self, name: str, version: int | None) -> SchemaVersion:
        if version is None:
            return self.registry.latest(name)
        for v in self.registry.versions(name):
            if v.version == version:
                return v
        raise CodecError("UNKNOWN_SCHEMA", f"{name} has no version {version}")


# The types fastavro's writer refuses every wrong value of (by raising), as fastavro 1.13 writes them:
# a string only from a str, bytes only from a bytes-like object (a memoryview too, which validation
# refuses: written as its bytes, so nothing wrong is written), an enum only one of its symbols, a union of
# these and "null" only a value of one of its branches (None for "null"), a record only from a mapping with
# every field (or its default). Not "null" on its own: the writer writes nothing for any value. Not a
# tuple in a union: the writer takes ("null", "x") as "the null branch" and writes null; so unions are
# left to the writer only at the top level, where encode checks that no value is a tuple.
# tests/schemas/test_codec_built.py holds the writer to this for each type.
_WRITER_CHECKED = frozenset({"string", "bytes", "enum"})


def _writer_checks(raw: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """For ``encode(..., built=True)``: the record schema's top-level array fields (their values must be
    lists or tuples) and union fields (no value a tuple), when every other type in it is one fastavro's
    writer checks itself (_WRITER_CHECKED, and records of them) and each array's items and union's
    branches are too; None otherwise (the writer would write some wrong value without raising)."""

    def checked(t: Any) -> bool:
        if isinstance(t, str):
            return t in _WRITER_CHECKED
        if isinstance(t, list):
            return False  # a union below the top: a tuple there would not be seen
        kind = t.get("type")
        if kind == "record":
            return all(checked(f["type"]) for f in t["fields"])
        return kind in _WRITER_CHECKED and "logicalType" not in t

    arrays, unions = [], []
    for f in raw["fields"]:
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "array":
            if not checked(t["items"]):
                return None
            arrays.append(f["name"])
        elif isinstance(t, list):
            if not all(b == "null" or checked(b) for b in t):
                return None
            unions.append(f["name"])
        elif not checked(t):
            return None
    return tuple(arrays), tuple(unions)
