"""The project against its own conformance vectors (schemas/vectors/), and the vectors checker.

The vectors were written by running the real gate and relay (``xledger schemas vectors
generate``); these tests check that the committed files are still what the system does,
that the codec and the signing reproduce every byte, and that ``xledger schemas vectors
check`` finds and explains what a third party got wrong.
"""

from __future__ import annotations

import base64
import json
import shutil

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from typer.testing import CliRunner

from schemas.codec import AvroCodec
from services.cli import app
from services.signing import DOMAIN
from services.vectors.check import Checker, Vectors, write_reference
from services.vectors.generate import KEYS_FILE, VECTORS_DIR, generate

VECTORS = Vectors.load(VECTORS_DIR)
KEYS = json.loads((VECTORS_DIR / KEYS_FILE).read_text())
SEEDS = KEYS["private_seeds_hex"]
CODEC = AvroCodec()


def _intact(v) -> bool:
    return v["built_by_the_rules"]


def test_the_vectors_cover_every_payload_kind_every_outcome_and_the_gates_rejections():
    payloads = {v["payload"]["schema"] for v in VECTORS.requests.values()}
    assert payloads == {n for n in CODEC.registry.names() if n.startswith("dk.xledger.payload.")}
    outcomes = {o["record"]["outcome"] for o in VECTORS.outputs.values() if o.get("schema") == "dk.xledger.DecisionReceipt"}
    assert {"ALLOW", "DENY", "ESCALATE"} <= outcomes
    reasons = {v["expected"]["reason"] for v in VECTORS.requests.values() if v["expected"]["gate"] == "REJECTED"}
    assert {"BAD_SIGNATURE", "UNKNOWN_SIGNER", "UNKNOWN_KEY", "KEY_REVOKED", "KEY_EXPIRED", "KEY_NOT_YET_VALID",
            "SIGNER_MISMATCH", "UNKNOWN_FINGERPRINT", "MALFORMED", "TRUNCATED", "BAD_MARKER", "INVALID_RECORD",
            "DUPLICATE_MESSAGE"} <= reasons


def test_the_committed_vectors_are_what_the_system_produces_now(tmp_path):
    """Fails when a change to the schemas, the envelope, the signing or the relay left the vectors stale:
    run `xledger schemas vectors generate` and commit the result."""
    generate(tmp_path, guide=None)
    stale = sorted(p.name for p in tmp_path.iterdir() if p.read_text() != (VECTORS_DIR / p.name).read_text())
    extra = sorted({p.name for p in VECTORS_DIR.glob("*.json")} - {p.name for p in tmp_path.iterdir()})
    assert (stale, extra) == ([], []), "run: xledger schemas vectors generate"


@pytest.mark.parametrize("name", sorted(n for n, v in VECTORS.requests.items() if _intact(v)))
def test_the_codec_writes_and_reads_every_layer(name):
    v = VECTORS.requests[name]
    for layer in ("payload", "request", "message"):
        data = bytes.fromhex(v[layer]["hex"])
        decoded = CODEC.decode(data)
        assert (decoded.name, decoded.writer_version) == (v[layer]["schema"], v[layer]["version"])
        assert data[2:10].hex() == v[layer]["fingerprint"]
    request = CODEC.decode(bytes.fromhex(v["request"]["hex"])).record
    assert request["payload"].hex() == v["payload"]["hex"]
    signed = CODEC.decode(bytes.fromhex(v["message"]["hex"])).record
    assert signed["body"].hex() == v["request"]["hex"] and signed["signature"].hex() == v["signature"]["hex"]


@pytest.mark.parametrize("name", sorted(n for n, v in VECTORS.requests.items() if _intact(v)))
def test_every_signature_is_the_published_test_keys_over_the_domain_separator_and_the_request(name):
    v = VECTORS.requests[name]
    signer, key_id = v["signing_key"]["signer"], v["signing_key"]["key_id"]
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEEDS[signer][key_id]))
    signed_bytes = bytes.fromhex(v["signature"]["domain_separator_hex"]) + bytes.fromhex(v["request"]["hex"])
    assert bytes.fromhex(v["signature"]["domain_separator_hex"]) == DOMAIN == b"xledger-sig-v1\x00"
    assert private.sign(signed_bytes).hex() == v["signature"]["hex"]  # Ed25519 is deterministic
    registered = {k["key_id"]: k["public_key"] for k in KEYS["keyset"]["keys"].get(signer, [])}
    if key_id in registered:  # not for the signer without keys, nor the unknown key id
        Ed25519PublicKey.from_public_bytes(base64.b64decode(registered[key_id])).verify(
            bytes.fromhex(v["signature"]["hex"]), signed_bytes)


def test_the_vectors_key_set_holds_development_keys_only_and_production_refuses_it(tmp_path):
    import yaml

    from services.config import Settings
    from services.keyset import KeySet, keyset_problems

    path = tmp_path / "keyset.yaml"
    path.write_text(yaml.safe_dump(KEYS["keyset"]))
    keyset = KeySet.load(path)
    assert len(keyset) and len(keyset.development_keys()) == len(keyset)
    _, problems = keyset_problems(Settings(keyset=str(path)))
    assert len(problems) == 1 and "development key" in problems[0]


@pytest.mark.parametrize("name", sorted(VECTORS.outputs))
def test_every_output_vector_decodes_to_its_record(name):
    from services.vectors.jsonform import to_json

    v = VECTORS.outputs[name]
    if "record" not in v:  # a dead letter: the original bytes of the request it names
        assert v["hex"] == VECTORS.requests[v["for"]]["message"]["hex"]
        assert v["kafka"]["headers"]["x-error-reason"] == VECTORS.requests[v["for"]]["expected"]["reason"]
        return
    assert to_json(CODEC.decode(bytes.fromhex(v["hex"])).record) == v["record"]
    assert v["kafka"]["headers"]["x-delivery-id"] in (v["record"].get("delivery_id"), v["record"].get("receipt_id"))


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker.create(VECTORS)


def test_the_vectors_own_bytes_pass_the_check(checker, tmp_path):
    write_reference(tmp_path, VECTORS)
    findings = checker.check_dir(tmp_path)
    assert [f for f in findings if not f.ok] == []
    assert len(findings) == 2 * len(VECTORS.requests) + sum("record" in v for v in VECTORS.outputs.values())


def _one(checker, tmp_path, file: str, data: bytes):
    (tmp_path / file).write_bytes(data)
    return checker.check_dir(tmp_path)


def test_a_byte_reversed_fingerprint_is_named(checker, tmp_path):
    good = bytes.fromhex(VECTORS.requests["release_notice.allowed"]["message"]["hex"])
    findings = _one(checker, tmp_path, "release_notice.allowed.bin", good[:2] + good[2:10][::-1] + good[10:])
    assert [f.ok for f in findings] == [False, False]
    assert "byte-reversed" in findings[0].message and "little-endian" in findings[0].message
    assert "UNKNOWN_FINGERPRINT" in findings[1].message and "expected ALLOW P5" in findings[1].message


def test_an_apache_avro_fingerprint_is_named(checker, tmp_path):
    v = VECTORS.requests["rejected.apache_avro_fingerprint"]
    bad_request = bytes.fromhex(v["request"]["hex"])
    findings = _one(checker, tmp_path, "release_notice.allowed.request.hex", bad_request.hex().encode())
    assert not findings[0].ok and "Apache avro" in findings[0].message and "logicalType" in findings[0].message


def test_a_different_field_is_named_without_its_value(checker, tmp_path):
    v = VECTORS.requests["release_notice.allowed"]
    payload = CODEC.decode(bytes.fromhex(v["payload"]["hex"])).record
    changed = CODEC.encode(v["payload"]["schema"], {**payload, "full_name": "Anden Person"})
    findings = _one(checker, tmp_path, "release_notice.allowed.payload.bin", changed)
    assert not findings[0].ok and "full_name differs" in findings[0].message and "Anden" not in findings[0].message


def test_an_unknown_name_and_an_empty_directory_are_reported(checker, tmp_path):
    from services.vectors.check import VectorsError

    with pytest.raises(VectorsError, match="holds no"):
        checker.check_dir(tmp_path)
    findings = _one(checker, tmp_path, "no_such_vector.bin", b"x")
    assert [(f.ok, f.message) for f in findings] == [(False, "no request vector has this name")]


def test_the_command_exits_0_1_2(tmp_path):
    runner = CliRunner()
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_reference(good, VECTORS, ["case_note.allowed", "case_note.allowed.receipt.politikreds.midt-vestsjaelland"],
                    as_hex=True)
    shutil.copytree(good, bad)
    (bad / "case_note.allowed.hex").write_text("c301" + "00" * 20)
    ok = runner.invoke(app, ["schemas", "vectors", "check", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "all 3 checks match" in ok.output
    differs = runner.invoke(app, ["schemas", "vectors", "check", str(bad)])
    assert differs.exit_code == 1 and "DIFFERS" in differs.output
    missing = runner.invoke(app, ["schemas", "vectors", "check", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no directory" in missing.output


def test_the_guides_worked_example_is_the_vectors():
    from schemas.registry import default_registry
    from services.vectors.guide import GUIDE, refresh

    text = GUIDE.read_text(encoding="utf-8")
    assert text.count("<!-- annotated:") == 3
    assert refresh(text, VECTORS.requests, default_registry()) == text, "run: xledger schemas vectors generate"


def test_the_checker_refuses_a_vectors_key_set_with_a_key_a_deployment_could_use(tmp_path):
    from services.vectors.check import VectorsError

    for p in VECTORS_DIR.glob("*.json"):
        shutil.copy(p, tmp_path / p.name)
    doc = json.loads((tmp_path / KEYS_FILE).read_text())
    entry = doc["keyset"]["keys"]["kommune:326"][0]
    entry["key_id"] = "kalundborg-2026-1"  # a real-looking id for the same public development key is still caught
    doc["keyset"]["keys"]["kommune:999"] = [{"key_id": "kalundborg-2027-1", "public_key": base64.b64encode(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()}]
    (tmp_path / KEYS_FILE).write_text(json.dumps(doc))
    with pytest.raises(VectorsError, match="development key"):
        Vectors.load(tmp_path)
