"""Data categories actually present in a payload, read from the schema's ``x-category`` field annotations.

The gate trusts the payload over the sender's declaration: a category present
here but not declared is excessive data.
"""

from __future__ import annotations

from typing import Any

ANNOTATION = "x-category"


def present_categories(schema: dict[str, Any], record: dict[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    _walk_record(schema, record, found, _plans_of(schema))
    return frozenset(found)


class _Plans(dict):
    """Of one top-level schema: each record schema in it (by id) -> its fields as (name, category,
    nested record schema or None), worked out on first use. Reading the field types again for
    every payload was most of the cost of categorising one (bench/README.md)."""

    def __init__(self, named: dict[str, Any]):
        super().__init__()
        self.named = named

    def of(self, rec: dict[str, Any]) -> tuple[tuple[str, str | None, dict[str, Any] | None], ...]:
        plan = self.get(id(rec))
        if plan is None:
            plan = self[id(rec)] = tuple((f["name"], f.get(ANNOTATION), _record_in(f["type"], self.named))
                                         for f in rec.get("fields", []))
        return plan


# The registry's schemas live as long as the process; their named types and field plans are
# worked out once each. The schema is kept with its entry, so its id (and the ids of the record
# schemas inside it, which the plans are keyed by) is never reused for another while cached.
_PLANS: dict[int, tuple[dict[str, Any], _Plans]] = {}


def _plans_of(schema: dict[str, Any]) -> _Plans:
    hit = _PLANS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    plans = _Plans(_named_types(schema))
    if len(_PLANS) < 256:  # a bound, should schemas ever be made per call
        _PLANS[id(schema)] = (schema, plans)
    return plans


def annotated_fields(schema: dict[str, Any]) -> dict[str, str | None]:
    """Dotted field path -> category, for documentation and the schema check."""
    out: dict[str, str | None] = {}
    named = _named_types(schema)

    def visit(rec: dict[str, Any], prefix: str) -> None:
        for f in rec.get("fields", []):
            path = f"{prefix}{f['name']}"
            out[path] = f.get(ANNOTATION)
            nested = _record_in(f["type"], named)
            if nested is not None and nested is not rec:
                visit(nested, path + ".")

    visit(schema, "")
    return out


def _walk_record(schema: dict[str, Any], record: dict[str, Any], found: set[str], plans: _Plans) -> None:
    for name, category, nested in plans.of(schema):
        value = record.get(name)
        if _is_empty(value):
            continue
        if category:
            found.add(category)
        if nested is not None:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    _walk_record(nested, item, found, plans)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _record_in(avro_type: Any, named: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(avro_type, str):
        avro_type = named.get(avro_type, avro_type)
    if isinstance(avro_type, list):
        for branch in avro_type:
            rec = _record_in(branch, named)
            if rec is not None:
                return rec
        return None
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "record":
            return avro_type
        if avro_type.get("type") == "array":
            return _record_in(avro_type["items"], named)
    return None


def _named_types(schema: Any, acc: dict[str, Any] | None = None, namespace: str = "") -> dict[str, Any]:
    # Named types are registered under the name as written and under their full name, so a
    # reference by full name ("dk.xledger.payload.Child") resolves as well as a short one.
    acc = {} if acc is None else acc
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "error", "enum", "fixed") and "name" in schema:
            name = schema["name"]
            if "." in name:
                namespace = name.rsplit(".", 1)[0]
                full = name
            else:
                namespace = schema.get("namespace", namespace) or ""
                full = f"{namespace}.{name}" if namespace else name
            acc[name] = schema
            acc[full] = schema
        for f in schema.get("fields", []):
            _named_types(f["type"], acc, namespace)
        if schema.get("type") == "array":
            _named_types(schema["items"], acc, namespace)
        if schema.get("type") == "map":
            _named_types(schema["values"], acc, namespace)
    elif isinstance(schema, list):
        for branch in schema:
            _named_types(branch, acc, namespace)
    return acc
