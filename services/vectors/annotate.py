"""An annotated hex dump of one single-object-encoded value: which bytes are which field.

For the integration guide's worked example: every primitive value gets a row with its
offset, its bytes and its field path, read straight from the Avro binary encoding
(zig-zag varints, length-prefixed strings and bytes, union branch indexes, array blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.codec import HEADER_LEN
from schemas.registry import SchemaRegistry

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class Row:
    offset: int
    data: bytes
    path: str
    meaning: str


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"needs {n} bytes at offset {self.pos}, only {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self) -> tuple[int, bytes]:
        start, shift, acc = self.pos, 0, 0
        while True:
            b = self.take(1)[0]
            acc |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return (acc >> 1) ^ -(acc & 1), self.data[start:self.pos]


def annotate(registry: SchemaRegistry, data: bytes, *, width: int = 48) -> list[Row]:
    writer = registry.by_fingerprint(data[2:HEADER_LEN])
    if writer is None:
        raise ValueError(f"no schema has fingerprint {data[2:HEADER_LEN].hex()}")
    rows = [Row(0, data[:2], "", "single-object marker C3 01"),
            Row(2, data[2:HEADER_LEN], "", f"CRC-64-AVRO fingerprint of {writer.name} v{writer.version}, "
                                            f"little-endian (= 0x{int.from_bytes(data[2:HEADER_LEN], 'little'):016x})")]
    reader = _Reader(data)
    reader.pos = HEADER_LEN
    _value(writer.raw, reader, "", rows, {}, writer.raw.get("namespace", ""), width)
    if reader.pos != len(data):
        raise ValueError(f"{len(data) - reader.pos} bytes left after {writer.name}")
    return rows


def _full(name: str, ns: str) -> str:
    return name if "." in name or not ns else f"{ns}.{name}"


def _value(schema: Any, r: _Reader, path: str, rows: list[Row], names: dict[str, Any], ns: str, width: int) -> None:
    if isinstance(schema, list):
        start = r.pos
        index, raw = r.varint()
        branch = schema[index]
        if branch == "null":
            rows.append(Row(start, raw, path, f"union branch {index}: null"))
            return
        label = branch if isinstance(branch, str) else branch.get("type")
        rows.append(Row(start, raw, path, f"union branch {index} ({label}), then the value:"))
        _value(branch, r, path, rows, names, ns, width)
        return
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            _primitive(schema, None, r, path, rows, width)
            return
        _value(names[_full(schema, ns)], r, path, rows, names, ns, width)
        return
    kind = schema["type"]
    if isinstance(kind, (dict, list)):
        _value(kind, r, path, rows, names, ns, width)
    elif kind in PRIMITIVES:
        _primitive(kind, schema.get("logicalType"), r, path, rows, width)
    elif kind == "record":
        full = _full(schema["name"], schema.get("namespace", ns))
        names[full] = schema
        inner = full.rpartition(".")[0]
        for f in schema["fields"]:
            _value(f["type"], r, f"{path}.{f['name']}" if path else f["name"], rows, names, inner, width)
    elif kind == "enum":
        names[_full(schema["name"], schema.get("namespace", ns))] = schema
        start = r.pos
        index, raw = r.varint()
        rows.append(Row(start, raw, path, f"enum index {index} = {schema['symbols'][index]}"))
    elif kind == "array":
        i = 0
        while True:
            start = r.pos
            count, raw = r.varint()
            if count == 0:
                rows.append(Row(start, raw, path, "end of array" if i else "array: 0 items"))
                break
            if count < 0:
                count = -count
                _, size = r.varint()
                raw += size
            rows.append(Row(start, raw, path, f"array block of {count} item{'s' if count > 1 else ''}"))
            for _ in range(count):
                _value(schema["items"], r, f"{path}[{i}]", rows, names, ns, width)
                i += 1
    else:
        raise ValueError(f"cannot annotate Avro type {kind!r}")


def _primitive(kind: str, logical: str | None, r: _Reader, path: str, rows: list[Row], width: int) -> None:
    start = r.pos
    if kind == "null":
        rows.append(Row(start, b"", path, "null (no bytes)"))
    elif kind == "boolean":
        raw = r.take(1)
        rows.append(Row(start, raw, path, f"boolean {str(bool(raw[0])).lower()}"))
    elif kind in ("int", "long"):
        value, raw = r.varint()
        meaning = f"{kind} {value} (zig-zag varint)"
        if logical == "date":
            from datetime import date, timedelta

            meaning = f"date {date(1970, 1, 1) + timedelta(days=value)} = {value} days since 1970-01-01 (zig-zag varint)"
        rows.append(Row(start, raw, path, meaning))
    elif kind in ("float", "double"):
        raw = r.take(4 if kind == "float" else 8)
        rows.append(Row(start, raw, path, kind))
    else:
        length, raw = r.varint()
        body = r.take(length)
        if kind == "string":
            text = body.decode("utf-8")
            shown = text if len(text) <= width else text[: width - 1] + "…"
            meaning = f'string, {length} bytes: "{shown}"'
        elif body[:2] == b"\xc3\x01":
            meaning = f"bytes, {length}: a nested single-object value (annotated separately)"
        else:
            meaning = f"bytes, {length}"
        rows.append(Row(start, raw + body, path, meaning))


def render(rows: list[Row], *, max_hex: int = 16) -> str:
    lines = []
    for row in rows:
        hexed = row.data[:max_hex].hex(" ")
        if len(row.data) > max_hex:
            hexed += " …"
        field = row.path or "(header)"
        lines.append(f"{row.offset:5d}  {hexed:<50}  {field:<34} {row.meaning}")
    return "\n".join(lines)
