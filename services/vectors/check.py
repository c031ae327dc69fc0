"""Checks bytes a third party produced against the vectors, and says where they differ.

The directory layout (also in ``schemas/vectors/README.md``): for a request vector NAME,
``NAME.bin`` (raw bytes) or ``NAME.hex`` (hex text) holds the Kafka record value the third
party produced; ``NAME.payload.bin|hex`` and ``NAME.request.bin|hex`` may hold the inner
layers. For an output vector NAME (a receipt or a delivery), ``NAME.json`` holds the record
the third party decoded from the vector's bytes, in the vectors' JSON conventions.
Every file is compared; each request is also run through the gate's checks (decode, verify
the signature with the vectors' key set, decide) to say what the gate would answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import avro.schema

from schemas.codec import HEADER_LEN, MARKER, CodecError
from schemas.registry import SchemaRegistry
from services.gate import GatePipeline, Inbound, Rejected, Work
from services.keyset import KeySet, KeySetError, parse_key
from services.vectors.generate import KEYS_FILE, VECTORS_DIR
from services.vectors.jsonform import to_json

LAYERS = ("payload", "request")  # besides the message itself


class VectorsError(ValueError):
    """The vectors or the directory to check cannot be read."""


@dataclass(frozen=True)
class Finding:
    vector: str
    file: str
    ok: bool
    message: str


@dataclass(frozen=True)
class Vectors:
    requests: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    keyset: KeySet  # what the vectors were checked with: development keys only

    @classmethod
    def load(cls, root: Path = VECTORS_DIR) -> "Vectors":
        if not root.is_dir():
            raise VectorsError(f"no vectors directory at {root}")
        requests: dict[str, dict[str, Any]] = {}
        outputs: dict[str, dict[str, Any]] = {}
        keyset: KeySet | None = None
        for path in sorted(root.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise VectorsError(f"{path}: {exc}") from None
            if path.name == KEYS_FILE:
                keyset = _keyset(doc["keyset"], path)
                continue
            for v in doc["vectors"]:
                (requests if "message" in v else outputs)[v["name"]] = v
        if not requests or keyset is None:
            raise VectorsError(f"no request vectors or no {KEYS_FILE} in {root}")
        return cls(requests, outputs, keyset)


def _keyset(doc: dict[str, Any], path: Path) -> KeySet:
    try:
        keyset = KeySet([parse_key(org, entry, f"{path.name}: {org}") for org, entries in doc["keys"].items()
                         for entry in entries], str(path))
    except KeySetError as exc:
        raise VectorsError(str(exc)) from None
    if len(keyset.development_keys()) != len(keyset):
        # The checker trusts this file; it must never carry a key a deployment could use.
        raise VectorsError(f"{path}: every key of the vectors' key set must be a development key (id dev-…)")
    return keyset


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".hex":
        text = "".join(path.read_text(encoding="ascii").split())
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise VectorsError(f"{path.name}: not hex text") from None
    return path.read_bytes()


def _split(file: str) -> tuple[str, str]:
    """'release_notice.allowed.payload.hex' -> ('release_notice.allowed', 'payload')."""
    stem = file.rsplit(".", 1)[0]
    for layer in LAYERS:
        if stem.endswith("." + layer):
            return stem[: -len(layer) - 1], layer
    return stem, "message"


class Checker:
    def __init__(self, vectors: Vectors, pipeline: GatePipeline):
        self.vectors = vectors
        self.pipeline = pipeline
        self.codec = pipeline.codec

    @classmethod
    def create(cls, vectors: Vectors) -> "Checker":
        from services.config import Settings
        from services.runtime import Runtime

        # Development mode: the public development secrets and keys, as the vectors were made.
        rt = Runtime(Settings.development())
        return cls(vectors, GatePipeline(rt.engine, None, rt.pseudonym_secret, vectors.keyset, rt.wire_codec))

    def check_dir(self, directory: Path) -> list[Finding]:
        if not directory.is_dir():
            raise VectorsError(f"no directory at {directory}")
        files = sorted(p for p in directory.iterdir() if p.suffix in (".bin", ".hex", ".json") and p.is_file())
        if not files:
            raise VectorsError(f"{directory} holds no .bin, .hex or .json files (see schemas/vectors/README.md)")
        return [f for path in files for f in self.check_file(path)]

    def check_file(self, path: Path) -> list[Finding]:
        if path.suffix == ".json":
            name = path.stem
            vector = self.vectors.outputs.get(name)
            if vector is None:
                return [Finding(name, path.name, False, "no receipt or delivery vector has this name")]
            return [self._check_decoded(vector, path)]
        name, layer = _split(path.name)
        vector = self.vectors.requests.get(name)
        if vector is None:
            return [Finding(name, path.name, False, "no request vector has this name")]
        got = _read_bytes(path)
        expected = bytes.fromhex(vector[layer]["hex"])
        findings = [Finding(name, path.name, got == expected,
                            f"{layer}: {len(got)} bytes, as expected" if got == expected
                            else f"{layer}: {self.explain(expected, got, vector[layer])}")]
        if layer == "message":
            findings.append(self._gate_verdict(vector, got, path.name))
        return findings

    # -- where bytes differ ------------------------------------------------------------------

    def explain(self, expected: bytes, got: bytes, layer: dict[str, Any]) -> str:
        if got[:2] != MARKER:
            return f"starts with {got[:2].hex() or 'nothing'}, not the single-object marker c301"
        if len(got) < HEADER_LEN:
            return f"{len(got)} bytes, shorter than the 10-byte header"
        fp, want = got[2:HEADER_LEN], bytes.fromhex(layer["fingerprint"])
        if fp != want and layer.get("record") is not None:
            return self._explain_fingerprint(fp, want, layer["schema"])
        return self._explain_body(expected, got, layer)

    def _explain_fingerprint(self, fp: bytes, want: bytes, schema: str) -> str:
        registry: SchemaRegistry = self.codec.registry
        if fp == want[::-1]:
            return (f"fingerprint {fp.hex()} is byte-reversed: single-object encoding writes the CRC-64-AVRO "
                    f"fingerprint little-endian, {want.hex()}")
        for v in registry.versions(schema):
            if v.fingerprint == fp:
                return f"fingerprint {fp.hex()} is {schema} v{v.version}'s; the vector uses {want.hex()}"
            if avro.schema.parse(json.dumps(v.raw)).fingerprint("CRC-64-AVRO") == fp:
                return (f"fingerprint {fp.hex()} is Apache avro's Schema.fingerprint() of {schema} v{v.version}, "
                        f"whose canonical form keeps logicalType; the Parsing Canonical Form drops it: {want.hex()}")
        return f"fingerprint {fp.hex()} is no version of {schema}; expected {want.hex()}"

    def _explain_body(self, expected: bytes, got: bytes, layer: dict[str, Any]) -> str:
        offset = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
        where = f"first difference at byte {offset} (expected {len(expected)} bytes, got {len(got)})"
        try:
            decoded = self.codec.decode(got)
        except CodecError as exc:
            return f"{where}; the bytes do not decode: {exc.reason}: {exc.message}"
        diffs = _differences(layer.get("record"), to_json(decoded.record))
        if diffs:
            return f"{where}; decoded fields differ: " + "; ".join(diffs[:5])
        return f"{where}; the record decodes to the expected values (check the writer schema version)"

    # -- what the gate would answer ----------------------------------------------------------

    def _gate_verdict(self, vector: dict[str, Any], value: bytes, file: str) -> Finding:
        expected = vector["expected"]
        work = Work(Inbound("exchange.requests", 0, 0, value))
        try:
            for step in self.pipeline.steps:
                step(work)
        except Rejected as r:
            ok = expected["gate"] == "REJECTED" and expected["reason"] == r.reason
            return Finding(vector["name"], file, ok, f"gate: rejected {r.reason} ({r.detail})"
                           + ("" if ok else f"; expected {_expected_text(expected)}"))
        first = self.vectors.requests.get(vector.get("send_after") or "")
        if first is not None and first["request"]["record"]["message_id"] == work.envelope["message_id"]:
            # The gate itself finds duplicates in its ledger: here the earlier vector stands for it.
            ok = expected["gate"] == "REJECTED" and expected["reason"] == "DUPLICATE_MESSAGE"
            return Finding(vector["name"], file, ok, f"gate: rejected DUPLICATE_MESSAGE (the message_id of "
                           f"{first['name']}, which reaches the gate first)"
                           + ("" if ok else f"; expected {_expected_text(expected)}"))
        got = [(r["recipient"], r["outcome"], r["rule"] if r["outcome"] == "ALLOW" else r["reason"])
               for r in work.decision["results"]]
        want = [(d["recipient"], d["outcome"], d.get("rule") or d.get("reason")) for d in expected.get("decisions", [])]
        text = ", ".join(f"{o} {code} for {rcpt}" for rcpt, o, code in got)
        ok = expected["gate"] == "DECIDED" and got == want
        return Finding(vector["name"], file, ok, f"gate: {text}" + ("" if ok else f"; expected {_expected_text(expected)}"))

    def _check_decoded(self, vector: dict[str, Any], path: Path) -> Finding:
        try:
            got = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            return Finding(vector["name"], path.name, False, f"not JSON: {exc}")
        diffs = _differences(vector["record"], got)
        return Finding(vector["name"], path.name, not diffs,
                       "decoded record as expected" if not diffs else "decoded fields differ: " + "; ".join(diffs[:5]))


def _expected_text(expected: dict[str, Any]) -> str:
    if expected["gate"] == "REJECTED":
        return f"rejected {expected['reason']}"
    return ", ".join(f"{d['outcome']} {d.get('rule') or d.get('reason')} for {d['recipient']}" for d in expected["decisions"])


def _differences(expected: Any, got: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for key in list(expected) + [k for k in got if k not in expected]:
            where = f"{path}.{key}" if path else key
            if key not in got:
                out.append(f"{where} missing")
            elif key not in expected:
                out.append(f"{where} unexpected")
            else:
                out += _differences(expected[key], got[key], where)
        return out
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        return [d for i, (a, b) in enumerate(zip(expected, got)) for d in _differences(a, b, f"{path}[{i}]")]
    # Values are named by path only: a payload field may hold personal data.
    return [] if expected == got else [f"{path or 'record'} differs"]


def check(directory: Path, vectors_root: Path = VECTORS_DIR) -> list[Finding]:
    return Checker.create(Vectors.load(vectors_root)).check_dir(directory)


def write_reference(directory: Path, vectors: Vectors, names: Iterable[str] | None = None, *, as_hex: bool = False) -> int:
    """Writes the vectors' own bytes (and decoded outputs) in the layout ``check`` reads; returns the file count."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = set(names) if names is not None else None
    n = 0
    for name, v in vectors.requests.items():
        if wanted is None or name in wanted:
            data = bytes.fromhex(v["message"]["hex"])
            (directory / f"{name}.hex").write_text(data.hex() + "\n") if as_hex else (directory / f"{name}.bin").write_bytes(data)
            n += 1
    for name, v in vectors.outputs.items():
        if "record" in v and (wanted is None or name in wanted):
            (directory / f"{name}.json").write_text(json.dumps(v["record"], ensure_ascii=False, indent=2) + "\n")
            n += 1
    return n
