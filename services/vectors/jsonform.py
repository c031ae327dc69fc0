"""Records in the vectors' JSON: Avro ``bytes`` as lowercase hex, ``date`` logical values as YYYY-MM-DD.

Everything else is plain JSON: a union value is written bare (never Avro-JSON's {"type": value}),
enums as their symbol, null as null.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any


def to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
