"""Schema evolution and annotation checks: what `xledger schemas check` and CI run.

For every record name, each version must be FULL compatible with the one before it
(Confluent's terms): BACKWARD, the new version reads what the old one wrote, and
FORWARD, the old version reads what the new one writes. Both are proved twice:

* statically, with the ``avro`` package's ``ReaderWriterCompatibilityChecker`` (the
  reference implementation of the specification's schema-resolution rules), and
* dynamically, by writing records that ``fastavro.utils.generate_many`` makes for one
  version and reading them with the other (the library the codec uses): no error, every
  byte consumed, fields common to both read back unchanged, new reader fields at their
  default.

Payload schemas (namespace ``dk.xledger.payload``) must also satisfy the x-category rule
the gate depends on: see ``check_annotations``.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many
from fastavro.validation import validate as avro_validate

from schemas.categories import ANNOTATION
from schemas.registry import SchemaRegistry, SchemaVersion
from schemas.validation import CPR_FIELD, MODELS

PAYLOAD_NAMESPACE = "dk.xledger.payload"
CATEGORIES = frozenset({
    "IDENTITY", "ORDINARY", "RENT_PRIVATE", "HEALTH", "BELIEFS_POLITICAL_RELIGIOUS", "CRIMINAL", "THIRD_PARTY",
    "AGGREGATE_NON_PERSONAL",
})
AGGREGATE = "AGGREGATE_NON_PERSONAL"
DEFAULT_SAMPLES = 200

# Check kinds, as printed in the CLI's table.
BACKWARD = "BACKWARD"
FORWARD = "FORWARD"
ROUNDTRIP_OLD_TO_NEW = "ROUNDTRIP_OLD_TO_NEW"
ROUNDTRIP_NEW_TO_OLD = "ROUNDTRIP_NEW_TO_OLD"
ANNOTATION_CHECK = "ANNOTATION"
DOC_CHECK = "DOC"
MODEL_CHECK = "MODEL"
NAMING_CHECK = "NAMING"


@dataclass(frozen=True)
class Problem:
    schema: str  # full record name
    version: int | None  # the (newer) version at fault; None for problems across versions or names
    check: str
    detail: str

    def __str__(self) -> str:
        where = self.schema if self.version is None else f"{self.schema} v{self.version}"
        return f"{where} [{self.check}] {self.detail}"


def check_all(registry: SchemaRegistry, *, samples: int = DEFAULT_SAMPLES, seed: int = 115) -> list[Problem]:
    """Every problem in the registry: compatibility between consecutive versions, annotations, docs, models."""
    problems: list[Problem] = []
    for name in registry.names():
        versions = registry.versions(name)
        for older, newer in zip(versions, versions[1:]):
            problems += check_pair(older, newer, samples=samples, seed=seed)
        if is_payload(name):
            for v in versions:
                problems += check_annotations(v)
            problems += check_docs(versions[-1])
            problems += _category_drift(versions)
    problems += check_models(registry)
    problems += check_named_types(registry)
    return problems


def is_payload(name: str) -> bool:
    return name.startswith(PAYLOAD_NAMESPACE + ".")


# -- compatibility --------------------------------------------------------------------------


def check_pair(older: SchemaVersion, newer: SchemaVersion, *, samples: int = DEFAULT_SAMPLES, seed: int = 115) -> list[Problem]:
    """FULL compatibility of two consecutive versions, statically and by round trips."""
    out = [Problem(newer.name, newer.version, BACKWARD, f"v{newer.version} cannot read v{older.version}: {m}")
           for m in avro_incompatibilities(reader=newer.raw, writer=older.raw)]
    out += [Problem(newer.name, newer.version, FORWARD, f"v{older.version} cannot read v{newer.version}: {m}")
            for m in avro_incompatibilities(reader=older.raw, writer=newer.raw)]
    out += [Problem(newer.name, newer.version, ROUNDTRIP_OLD_TO_NEW, m)
            for m in roundtrip_failures(writer=older, reader=newer, samples=samples, seed=seed)]
    out += [Problem(newer.name, newer.version, ROUNDTRIP_NEW_TO_OLD, m)
            for m in roundtrip_failures(writer=newer, reader=older, samples=samples, seed=seed)]
    return out


def avro_incompatibilities(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer``, per the avro package's checker ([] if it can)."""
    try:
        r = avro.schema.parse(json.dumps(reader))
        w = avro.schema.parse(json.dumps(writer))
    except Exception as exc:  # avro raises SchemaParseException and friends
        return [f"the avro package cannot parse the schema: {type(exc).__name__}: {exc}"]
    result = ReaderWriterCompatibilityChecker().get_compatibility(r, w)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted({i.value for i in result.incompatibilities})
    return [f"{', '.join(kinds)} at {', '.join(sorted(result.locations))}: {'; '.join(sorted(result.messages))}"]


def roundtrip_failures(writer: SchemaVersion, reader: SchemaVersion, *, samples: int = DEFAULT_SAMPLES,
                       seed: int = 115) -> list[str]:
    """Write generated records with ``writer`` and resolve them into ``reader`` with fastavro.

    Returns one message per kind of failure (the first example of each), [] on success.
    """
    failures: dict[str, str] = {}
    reader_fields = {f["name"]: f for f in reader.raw.get("fields", [])}
    writer_fields = {f["name"]: f for f in writer.raw.get("fields", [])}
    for i, datum in enumerate(_generated(writer.raw, samples, seed)):
        buf = io.BytesIO()
        schemaless_writer(buf, writer.parsed, datum)
        data = buf.getvalue()
        expected = schemaless_reader(io.BytesIO(data), writer.parsed, None)
        body = io.BytesIO(data)
        try:
            got = schemaless_reader(body, writer.parsed, reader.parsed)
        except Exception as exc:  # whatever fastavro raises is a failure to resolve
            failures.setdefault("resolve", f"record {i}: v{reader.version} cannot read v{writer.version}: "
                                           f"{type(exc).__name__}: {exc}")
            continue
        if body.tell() != len(data):
            failures.setdefault("trailing", f"record {i}: {len(data) - body.tell()} bytes left unread")
        if not avro_validate(got, reader.parsed, raise_errors=False):
            failures.setdefault("shape", f"record {i}: the resolved record is not a valid v{reader.version} record")
        for fname, rf in reader_fields.items():
            wf = writer_fields.get(fname)
            if wf is None:
                if "default" in rf and got.get(fname) != _default_value(rf):
                    failures.setdefault(f"default:{fname}", f"record {i}: {fname} is not its default after resolution")
            elif _same_type(wf["type"], rf["type"]) and got.get(fname) != expected.get(fname):
                failures.setdefault(f"value:{fname}", f"record {i}: {fname} changed in resolution")
    return list(failures.values())


def _generated(schema: dict[str, Any], count: int, seed: int) -> Iterator[Any]:
    # generate_many uses the global random module; seed it for reproducible output and restore it after.
    state = random.getstate()
    random.seed(seed)
    try:
        data = list(generate_many(schema, count))
    finally:
        random.setstate(state)
    return iter(data)


def _default_value(field: dict[str, Any]) -> Any:
    default = field["default"]
    t = field["type"]
    # A date default would be an int of days; none of ours has one, but compare like-for-like anyway.
    if isinstance(t, dict) and t.get("logicalType") == "date" and isinstance(default, int):
        import datetime as _dt
        return _dt.date(1970, 1, 1) + _dt.timedelta(days=default)
    return default


def _same_type(a: Any, b: Any) -> bool:
    return _strip_docs(a) == _strip_docs(b)


def _strip_docs(t: Any) -> Any:
    if isinstance(t, dict):
        return {k: _strip_docs(v) for k, v in t.items() if k not in ("doc", ANNOTATION)}
    if isinstance(t, list):
        return [_strip_docs(x) for x in t]
    return t


# -- annotations ----------------------------------------------------------------------------


def check_annotations(version: SchemaVersion) -> list[Problem]:
    """The x-category rule for one payload schema version.

    * every field, in nested records too, carries ``x-category`` with a category of the vocabulary;
    * a payload is either aggregate (all fields AGGREGATE_NON_PERSONAL, no ``cpr``) or about a person
      (no AGGREGATE_NON_PERSONAL field, a top-level ``cpr`` string annotated IDENTITY);
    * only constructs that ``categories.present_categories`` walks: no maps, and no union with more
      than one record or array branch (the walker could not tell which branch a value took).
    """
    out: list[Problem] = []

    def bad(detail: str) -> None:
        out.append(Problem(version.name, version.version, ANNOTATION_CHECK, detail))

    fields = list(_fields(version.raw))
    for path, f in fields:
        category = f.get(ANNOTATION)
        if category is None:
            bad(f"{path}: no {ANNOTATION} annotation")
        elif category not in CATEGORIES:
            bad(f"{path}: {ANNOTATION} {category!r} is not one of {', '.join(sorted(CATEGORIES))}")
        for problem in _unsupported(f["type"]):
            bad(f"{path}: {problem}")
    categories = {f.get(ANNOTATION) for _, f in fields}
    top = {f["name"]: f for f in version.raw.get("fields", [])}
    if AGGREGATE in categories:
        if categories != {AGGREGATE}:
            bad(f"mixes {AGGREGATE} with personal-data categories; an aggregate payload holds nothing else")
        if "cpr" in top:
            bad("an aggregate payload must not have a cpr field")
    else:
        cpr = top.get("cpr")
        if cpr is None:
            bad("a payload about a person needs a top-level cpr field")
        elif cpr["type"] != "string" or cpr.get(ANNOTATION) != "IDENTITY":
            bad("cpr must be a required string annotated IDENTITY")
    return out


def check_docs(version: SchemaVersion) -> list[Problem]:
    """The newest version of a payload documents the record and every field (integrators read these)."""
    out = []
    if not str(version.raw.get("doc", "")).strip():
        out.append(Problem(version.name, version.version, DOC_CHECK, "the record has no doc"))
    for path, f in _fields(version.raw):
        if not str(f.get("doc", "")).strip():
            out.append(Problem(version.name, version.version, DOC_CHECK, f"{path}: no doc"))
    return out


def check_models(registry: SchemaRegistry) -> list[Problem]:
    """Every payload has a validation model, and a CPR_FIELD entry exactly when it is about a person."""
    out = []
    names = set(registry.names())
    for name in sorted(n for n in names if is_payload(n)):
        latest = registry.latest(name)
        if name not in MODELS:
            out.append(Problem(name, None, MODEL_CHECK, "no pydantic model in schemas.validation.MODELS"))
        aggregate = any(f.get(ANNOTATION) == AGGREGATE for _, f in _fields(latest.raw))
        if aggregate and name in CPR_FIELD:
            out.append(Problem(name, None, MODEL_CHECK, "an aggregate payload must not be in CPR_FIELD"))
        if not aggregate and CPR_FIELD.get(name) != "cpr":
            out.append(Problem(name, None, MODEL_CHECK, "a payload about a person needs CPR_FIELD[name] = 'cpr'"))
    return out


def check_named_types(registry: SchemaRegistry) -> list[Problem]:
    """A named type (enum, nested record) defined by two different records must be defined identically.

    Tools that put all payload schemas in one namespace (AsyncAPI generators, code generators) would
    otherwise see two meanings for one name.
    """
    seen: dict[str, tuple[str, Any]] = {}
    out = []
    for name in registry.names():
        for full, definition in _named_definitions(registry.latest(name).raw).items():
            if full == name:
                continue
            if full in seen and seen[full][0] != name and seen[full][1] != _strip_docs(definition):
                out.append(Problem(name, None, NAMING_CHECK,
                                   f"named type {full} is also defined, differently, by {seen[full][0]}"))
            seen.setdefault(full, (name, _strip_docs(definition)))
    return out


def _category_drift(versions: list[SchemaVersion]) -> list[Problem]:
    """A field keeps its x-category across versions: the gate reads old messages with the newest schema."""
    out = []
    for older, newer in zip(versions, versions[1:]):
        before = {path: f.get(ANNOTATION) for path, f in _fields(older.raw)}
        for path, f in _fields(newer.raw):
            if path in before and before[path] != f.get(ANNOTATION):
                out.append(Problem(newer.name, newer.version, ANNOTATION_CHECK,
                                   f"{path}: {ANNOTATION} changed from {before[path]} in v{older.version} "
                                   f"to {f.get(ANNOTATION)}; old messages would change category"))
    return out


def _fields(record: dict[str, Any], prefix: str = "", seen: set[int] | None = None) -> Iterable[tuple[str, dict[str, Any]]]:
    """(dotted path, field) for every field, descending into records inside unions and arrays."""
    seen = set() if seen is None else seen
    if id(record) in seen:
        return
    seen.add(id(record))
    for f in record.get("fields", []):
        path = f"{prefix}{f['name']}"
        yield path, f
        for nested in _records_in(f["type"]):
            yield from _fields(nested, path + ".", seen)


def _records_in(t: Any) -> Iterator[dict[str, Any]]:
    if isinstance(t, list):
        for branch in t:
            yield from _records_in(branch)
    elif isinstance(t, dict):
        if t.get("type") in ("record", "error"):
            yield t
        elif t.get("type") == "array":
            yield from _records_in(t["items"])
        elif t.get("type") == "map":
            yield from _records_in(t["values"])


def _unsupported(t: Any) -> list[str]:
    out = []
    if isinstance(t, dict):
        if t.get("type") == "map":
            out.append("map types are not supported by the category walker; use an array of records")
        elif t.get("type") == "array":
            out += _unsupported(t["items"])
    elif isinstance(t, list):
        complex_branches = [b for b in t if isinstance(b, dict) and b.get("type") in ("record", "error", "array", "map")]
        if len(complex_branches) > 1:
            out.append("a union with more than one record/array branch; the category walker cannot tell them apart")
        for b in t:
            out += _unsupported(b)
    return out


def _named_definitions(schema: Any, namespace: str = "", acc: dict[str, Any] | None = None) -> dict[str, Any]:
    acc = {} if acc is None else acc
    if isinstance(schema, list):
        for b in schema:
            _named_definitions(b, namespace, acc)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in schema:
            name = schema["name"]
            if "." in name:
                full, namespace = name, name.rsplit(".", 1)[0]
            else:
                namespace = schema.get("namespace", namespace) or ""
                full = f"{namespace}.{name}" if namespace else name
            acc[full] = schema
        for f in schema.get("fields", []):
            _named_definitions(f["type"], namespace, acc)
        if kind == "array":
            _named_definitions(schema["items"], namespace, acc)
        if kind == "map":
            _named_definitions(schema["values"], namespace, acc)
    return acc
