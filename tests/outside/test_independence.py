"""The outside agency really is outside: its client imports nothing of exchange-ledger, and its tests
use the project only to run the broker, the gate and the relay and to register the agency's key."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = {"schemas", "services", "ledger", "policies", "bench"}
OPERATOR_SIDE = {"services.runtime", "services.broker", "services.config", "services.keyset", "tests.harness"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_client_imports_nothing_of_the_project():
    imported = _imports(HERE / "client.py")
    assert not {m for m in imported if m.split(".")[0] in PROJECT | {"tests"}}
    assert {"avro.io", "avro.schema", "confluent_kafka", "cryptography.hazmat.primitives.asymmetric.ed25519"} <= imported


def test_the_outside_tests_use_the_project_only_as_the_operator():
    for path in HERE.glob("test_*.py"):
        if path.name == Path(__file__).name:
            continue
        project = {m for m in _imports(path) if m.split(".")[0] in PROJECT or m.startswith("tests.")}
        assert project <= OPERATOR_SIDE | {"tests.outside"}, (path.name, project - OPERATOR_SIDE)
