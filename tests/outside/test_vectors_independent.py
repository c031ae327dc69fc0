"""An integrator with only the vectors, the .avsc files and the published development keys reproduces every byte.

No code of exchange-ledger is used: the records come from schemas/vectors/*.json, the
encoding from Apache avro with the specification's fingerprint, the signature from
``cryptography``. Receipts and deliveries are decoded the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.outside import client

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "schemas" / "vectors"
CONTRACTS = client.Contracts(REPO / "schemas")
SEEDS = json.loads((VECTORS / "test-keys.json").read_text())["private_seeds_hex"]
DOCS = {p.name: json.loads(p.read_text()) for p in sorted(VECTORS.glob("*.json")) if p.name != "test-keys.json"}
REQUESTS = {v["name"]: v for d in DOCS.values() for v in d["vectors"] if "message" in v}
OUTPUTS = {v["name"]: v for d in DOCS.values() for v in d["vectors"] if "message" not in v and "record" in v}
# The vectors whose every layer is built as the guide says (what is wrong, if anything, is the content).
BUILT_RIGHT = sorted(n for n, v in REQUESTS.items() if v["built_by_the_rules"])


def _encode(layer: dict, **replace) -> bytes:
    schema = CONTRACTS.version(layer["schema"], layer["version"]).schema
    record = client.from_json(schema, layer["record"])
    record.update(replace)
    return CONTRACTS.encode(layer["schema"], record, layer["version"])


def test_the_selection_is_not_empty():
    assert len(BUILT_RIGHT) >= 12 and "release_notice.allowed" in BUILT_RIGHT


@pytest.mark.parametrize("name", BUILT_RIGHT)
def test_every_layer_from_the_logical_records(name):
    v = REQUESTS[name]
    payload = _encode(v["payload"])
    assert payload.hex() == v["payload"]["hex"]
    request = _encode(v["request"], payload=payload)
    assert request.hex() == v["request"]["hex"]
    seed = bytes.fromhex(SEEDS[v["signing_key"]["signer"]][v["signing_key"]["key_id"]])
    signature = client.sign(Ed25519PrivateKey.from_private_bytes(seed), request)
    assert signature.hex() == v["signature"]["hex"]
    message = _encode(v["message"], body=request, signature=signature)
    assert message.hex() == v["message"]["hex"]


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_every_receipt_and_delivery_decodes(name):
    v = OUTPUTS[name]
    writer, record = CONTRACTS.decode(bytes.fromhex(v["hex"]))
    assert (writer.name, client.to_json(record)) == (v["schema"], v["record"])


def test_the_fingerprints_in_the_vectors_are_the_specifications():
    for v in REQUESTS.values():
        for layer in ("payload", "request", "message"):
            contract = CONTRACTS.version(v[layer]["schema"], v[layer]["version"])
            assert v[layer]["fingerprint"] == contract.fingerprint.hex() == client.fingerprint(contract.raw).hex()


def test_the_checker_accepts_what_the_independent_client_wrote(tmp_path):
    """The documented workflow: write one file per vector as schemas/vectors/README.md says, then run
    `xledger schemas vectors check DIR` (the operator's tool, run as a command, not imported)."""
    import os
    import subprocess
    import sys

    for name in BUILT_RIGHT:
        v = REQUESTS[name]
        payload = _encode(v["payload"])
        request = _encode(v["request"], payload=payload)
        seed = bytes.fromhex(SEEDS[v["signing_key"]["signer"]][v["signing_key"]["key_id"]])
        signature = client.sign(Ed25519PrivateKey.from_private_bytes(seed), request)
        (tmp_path / f"{name}.hex").write_text(_encode(v["message"], body=request, signature=signature).hex())
        (tmp_path / f"{name}.payload.bin").write_bytes(payload)
    for name, v in OUTPUTS.items():
        _, record = CONTRACTS.decode(bytes.fromhex(v["hex"]))
        (tmp_path / f"{name}.json").write_text(json.dumps(client.to_json(record), ensure_ascii=False))
    env = {**os.environ, "XLEDGER_ENV": "development"}
    run = subprocess.run([sys.executable, "-m", "services.cli", "schemas", "vectors", "check", str(tmp_path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    checks = 3 * len(BUILT_RIGHT) + len(OUTPUTS)  # message and gate verdict, payload layer; each output
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert f"all {checks} checks match" in run.stdout
