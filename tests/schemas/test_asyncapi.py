"""The committed AsyncAPI document is exactly what the generator makes from the shipped schemas."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from schemas.asyncapi import ASYNCAPI_PATH, build, render, schema_key
from schemas.registry import default_registry
from services.cli.schemas import app


def test_committed_file_is_in_sync():
    assert ASYNCAPI_PATH.exists(), "run: xledger schemas asyncapi --output schemas/asyncapi.yaml"
    assert ASYNCAPI_PATH.read_text(encoding="utf-8") == render(), (
        "schemas/asyncapi.yaml is stale; run: xledger schemas asyncapi --output schemas/asyncapi.yaml")


def test_render_is_deterministic():
    assert render() == render()


def test_document_structure():
    doc = yaml.safe_load(render())
    assert doc == build()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {"exchange.requests", "exchange.requests.dlq", "inbox.{authority}", "receipts.{authority}"}
    assert "kommune.326" in doc["components"]["parameters"]["authority"]["examples"]
    headers = doc["components"]["messages"]["DeadLetter"]["headers"]["properties"]
    assert set(headers) == {"x-error-reason", "x-error-detail", "x-source-topic", "x-source-partition",
                            "x-source-offset", "x-message-digest", "x-original-size", "x-cut"}
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].startswith("#/channels/")


def test_every_schema_version_is_embedded_with_annotations():
    doc = build()
    schemas = doc["components"]["schemas"]
    registry = default_registry()
    assert set(schemas) == {schema_key(v) for v in registry.all_versions()}
    for v in registry.all_versions():
        entry = schemas[schema_key(v)]
        assert entry["schemaFormat"] == "application/vnd.apache.avro;version=1.9.0"
        assert entry["schema"] == v.raw  # x-category and doc included, as written
        assert entry["x-xledger-fingerprint"] == v.fingerprint.hex()
    assert schemas["dk.xledger.payload.ReleaseNotice.v2"]["schema"]["fields"][0]["x-category"] == "IDENTITY"


def test_payload_choice_lists_every_payload_and_resolves():
    doc = build()
    choice = doc["components"]["messages"]["SignedMessage"]["x-xledger-nesting"]["body.payload"]["oneOf"]
    names = [c["payloadType"] for c in choice]
    assert names == sorted(n for n in default_registry().names() if n.startswith("dk.xledger.payload."))
    for c in choice:
        for v in c["versions"]:
            ref = v["schema"]["$ref"]
            assert ref.startswith("#/components/schemas/")
            assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]


def test_all_refs_resolve():
    doc = build()

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]


def test_cli_asyncapi(tmp_path):
    runner = CliRunner()
    out = tmp_path / "asyncapi.yaml"
    result = runner.invoke(app, ["asyncapi", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == render()
    assert runner.invoke(app, ["asyncapi", "--check", "--output", str(out)]).exit_code == 0
    out.write_text("stale", encoding="utf-8")
    result = runner.invoke(app, ["asyncapi", "--check", "--output", str(out)])
    assert result.exit_code == 1 and "out of date" in result.output
    result = runner.invoke(app, ["asyncapi"])
    assert result.exit_code == 0 and result.output == render()
    assert runner.invoke(app, ["asyncapi", "--help"]).exit_code == 0


def test_fingerprints_are_the_specifications_wire_bytes():
    """Every x-xledger-fingerprint is the CRC-64-AVRO of the Parsing Canonical Form, little-endian,
    computed independently of the registry (tests/outside/client.py)."""
    import yaml

    from tests.outside import client

    doc = yaml.safe_load(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    assert "little-endian" in doc["info"]["description"] and "8e675cc7c3ab57d9" in doc["info"]["description"]
    for key, entry in doc["components"]["schemas"].items():
        assert entry["x-xledger-fingerprint"] == client.fingerprint(entry["schema"]).hex(), key
        assert entry["x-xledger-fingerprint-byte-order"] == "little-endian"
