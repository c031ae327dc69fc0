"""Keeps the worked example in docs/integration.md equal to the vectors.

A block between ``<!-- annotated: VECTOR LAYER -->`` and ``<!-- /annotated -->`` holds the
annotated hex dump of that layer (payload, request or message) of that request vector;
``xledger schemas vectors generate`` rewrites every such block, and a test fails when the
committed guide differs from what the vectors give.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from schemas.registry import SCHEMA_ROOT, SchemaRegistry
from services.vectors.annotate import annotate, render

GUIDE = SCHEMA_ROOT.parent / "docs" / "integration.md"
_BLOCK = re.compile(r"(<!-- annotated: (?P<vector>[\w.-]+) (?P<layer>payload|request|message) -->\n)(?P<body>.*?)"
                    r"(<!-- /annotated -->)", re.S)


class GuideError(ValueError):
    pass


def refresh(text: str, requests: dict[str, dict[str, Any]], registry: SchemaRegistry) -> str:
    def block(m: re.Match) -> str:
        vector = requests.get(m["vector"])
        if vector is None:
            raise GuideError(f"the guide annotates {m['vector']!r}, which is no request vector")
        rows = annotate(registry, bytes.fromhex(vector[m["layer"]]["hex"]))
        return f"{m.group(1)}```text\n{render(rows)}\n```\n{m.group(5)}"

    return _BLOCK.sub(block, text)


def refresh_file(requests: dict[str, dict[str, Any]], registry: SchemaRegistry, path: Path = GUIDE) -> bool:
    """Rewrites the guide's annotated blocks; returns whether anything changed (False too when there is no guide,
    as in an installed package)."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    new = refresh(text, requests, registry)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text
