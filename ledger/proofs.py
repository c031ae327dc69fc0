"""Portable proofs: what an auditor needs, as JSON, to check the log without trusting it.

An auditor holds the operator's Ed25519 public key (published out of band), and after a
key rotation the published key history. Given a proof file and one or two signed checkpoint
files (``ledger.checkpoint``: C2SP signed notes, or the v1 JSON form of older ledgers), the
functions here, or ``python -m ledger.proofs``, check that

* each checkpoint is signed by that key,
* the proof is about exactly the tree sizes the checkpoints commit to, and
* the Merkle proof (RFC 9162) connects the leaf, or the old root, to the signed root(s).

JSON forms (all keys required; hashes are standard base64 of 32 bytes, as in the
checkpoint's root line and CT's own JSON API)::

    {"format": "exchange-ledger/inclusion-proof/v1",
     "leaf_index": 5, "tree_size": 12,
     "leaf_hash": "<b64>",               # SHA-256(0x00 || entry bytes), see ledger.merkle
     "path": ["<b64>", ...]}             # RFC 9162 PATH, leaf side first

    {"format": "exchange-ledger/consistency-proof/v1",
     "old_size": 8, "new_size": 12,
     "path": ["<b64>", ...]}             # RFC 9162 PROOF, as produced by MerkleLog

A new field or encoding means a new ``format`` version; readers reject unknown versions.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.checkpoint import CheckpointError, CheckpointVerifier, LogKey, SignedCheckpoint, parse_key_history
from ledger.merkle import HASH_SIZE, MerkleLog, leaf_hash, verify_consistency, verify_inclusion

__all__ = [
    "INCLUSION_FORMAT",
    "CONSISTENCY_FORMAT",
    "ProofError",
    "ProofFormatError",
    "InclusionProof",
    "ConsistencyProof",
    "make_inclusion_proof",
    "make_consistency_proof",
    "verify_inclusion_bundle",
    "verify_consistency_bundle",
    "main",
]

INCLUSION_FORMAT = "exchange-ledger/inclusion-proof/v1"
CONSISTENCY_FORMAT = "exchange-ledger/consistency-proof/v1"


class ProofError(Exception):
    """The evidence does not check out: the message names the failed check."""


class ProofFormatError(ProofError):
    """The evidence could not even be read (bad JSON, wrong format, bad key)."""


# --------------------------------------------------------------------------- JSON helpers


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _hash_from(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ProofFormatError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ProofFormatError(f"{what} is not valid base64") from exc
    if len(raw) != HASH_SIZE or _b64(raw) != text:
        raise ProofFormatError(f"{what} must be canonical base64 of {HASH_SIZE} bytes")
    return raw


def _size_from(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofFormatError(f"{what} must be a non-negative integer")
    return value


def _path_from(value: object) -> list[bytes]:
    if not isinstance(value, list):
        raise ProofFormatError("path must be a list of base64 hashes")
    return [_hash_from(item, f"path[{i}]") for i, item in enumerate(value)]


def _load_object(text: str | bytes | dict, fmt: str, keys: set[str]) -> dict[str, Any]:
    if isinstance(text, dict):
        data = text
    else:
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ProofFormatError(f"proof is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProofFormatError("proof must be a JSON object")
    if data.get("format") != fmt:
        raise ProofFormatError(f"expected proof format {fmt!r}, got {data.get('format')!r}")
    missing, unknown = keys - data.keys(), data.keys() - keys
    if missing or unknown:
        raise ProofFormatError(f"proof keys: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return data


# --------------------------------------------------------------------------- proof objects


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": INCLUSION_FORMAT,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": _b64(self.leaf_hash),
            "path": [_b64(h) for h in self.path],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes | dict) -> InclusionProof:
        data = _load_object(
            text, INCLUSION_FORMAT, {"format", "leaf_index", "tree_size", "leaf_hash", "path"}
        )
        return cls(
            leaf_index=_size_from(data["leaf_index"], "leaf_index"),
            tree_size=_size_from(data["tree_size"], "tree_size"),
            leaf_hash=_hash_from(data["leaf_hash"], "leaf_hash"),
            path=tuple(_path_from(data["path"])),
        )

    def verify(self, root: bytes) -> bool:
        return verify_inclusion(self.leaf_hash, self.leaf_index, self.tree_size, self.path, root)


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    path: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CONSISTENCY_FORMAT,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "path": [_b64(h) for h in self.path],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes | dict) -> ConsistencyProof:
        data = _load_object(text, CONSISTENCY_FORMAT, {"format", "old_size", "new_size", "path"})
        return cls(
            old_size=_size_from(data["old_size"], "old_size"),
            new_size=_size_from(data["new_size"], "new_size"),
            path=tuple(_path_from(data["path"])),
        )

    def verify(self, old_root: bytes, new_root: bytes) -> bool:
        return verify_consistency(self.old_size, self.new_size, old_root, new_root, self.path)


def make_inclusion_proof(log: MerkleLog, leaf_index: int, tree_size: int) -> InclusionProof:
    """Operator side: the proof for a leaf against the checkpoint of ``tree_size``."""
    path = log.inclusion_proof(leaf_index, tree_size)
    leaf = log.store.get(0, leaf_index)
    if leaf is None:
        raise ProofError(f"store has no leaf {leaf_index}")
    return InclusionProof(leaf_index, tree_size, leaf, tuple(path))


def make_consistency_proof(log: MerkleLog, old_size: int, new_size: int) -> ConsistencyProof:
    return ConsistencyProof(old_size, new_size, tuple(log.consistency_proof(old_size, new_size)))


# --------------------------------------------------------------------------- bundle checks


def _parse_checkpoint(text: str | bytes | dict, which: str) -> SignedCheckpoint:
    try:
        if isinstance(text, dict):
            return SignedCheckpoint.from_dict(text)
        return SignedCheckpoint.parse(text)
    except CheckpointError as exc:
        raise ProofFormatError(f"{which} checkpoint is malformed: {exc}") from exc


def _verifier(public_key: Ed25519PublicKey | bytes | str, key_id: str | None, origin: str | None,
              history: Sequence[LogKey] = ()):
    try:
        return CheckpointVerifier(public_key, key_id, origin=origin, history=history)
    except CheckpointError as exc:
        raise ProofFormatError(f"public key is unusable: {exc}") from exc


def _check_signature(verifier: CheckpointVerifier, signed: SignedCheckpoint, which: str) -> None:
    try:
        verifier.verify(signed)
    except CheckpointError as exc:
        raise ProofError(f"{which} checkpoint rejected: {exc}") from exc


def verify_inclusion_bundle(
    proof_json: str | bytes | dict,
    signed_checkpoint_json: str | bytes | dict,
    public_key: Ed25519PublicKey | bytes | str,
    *,
    key_id: str | None = None,
    origin: str | None = None,
    leaf_data: bytes | None = None,
    history: Sequence[LogKey] = (),
) -> None:
    """Raise ProofError unless the signed checkpoint's tree contains the proof's leaf.

    ``leaf_data``, if given, is the entry itself; its leaf hash must be the proof's, which
    ties the proof to a record the auditor actually holds.
    """
    proof = InclusionProof.from_json(proof_json)
    signed = _parse_checkpoint(signed_checkpoint_json, "the")
    _check_signature(_verifier(public_key, key_id, origin, history), signed, "the")
    cp = signed.checkpoint
    if proof.tree_size != cp.tree_size:
        raise ProofError(
            f"tree size mismatch: proof is for size {proof.tree_size}, "
            f"checkpoint commits to size {cp.tree_size}"
        )
    if proof.leaf_index >= proof.tree_size:
        raise ProofError(f"leaf index {proof.leaf_index} is outside a tree of {proof.tree_size}")
    if leaf_data is not None and leaf_hash(leaf_data) != proof.leaf_hash:
        raise ProofError("leaf hash mismatch: the given entry is not the leaf the proof is about")
    if not proof.verify(cp.root_hash):
        raise ProofError(
            f"inclusion proof for leaf {proof.leaf_index} does not lead to the signed root "
            f"of tree size {cp.tree_size}"
        )


def verify_consistency_bundle(
    proof_json: str | bytes | dict,
    old_checkpoint_json: str | bytes | dict,
    new_checkpoint_json: str | bytes | dict,
    public_key: Ed25519PublicKey | bytes | str,
    *,
    key_id: str | None = None,
    origin: str | None = None,
    history: Sequence[LogKey] = (),
) -> None:
    """Raise ProofError unless the new signed tree is an append-only extension of the old."""
    proof = ConsistencyProof.from_json(proof_json)
    old = _parse_checkpoint(old_checkpoint_json, "old")
    new = _parse_checkpoint(new_checkpoint_json, "new")
    verifier = _verifier(public_key, key_id, origin, history)
    _check_signature(verifier, old, "old")
    _check_signature(verifier, new, "new")
    if old.checkpoint.origin != new.checkpoint.origin:
        raise ProofError(
            f"origin mismatch: {old.checkpoint.origin!r} vs {new.checkpoint.origin!r} "
            "are different logs"
        )
    if proof.old_size != old.checkpoint.tree_size:
        raise ProofError(
            f"old size mismatch: proof starts at {proof.old_size}, "
            f"old checkpoint commits to {old.checkpoint.tree_size}"
        )
    if proof.new_size != new.checkpoint.tree_size:
        raise ProofError(
            f"new size mismatch: proof ends at {proof.new_size}, "
            f"new checkpoint commits to {new.checkpoint.tree_size}"
        )
    if proof.old_size > proof.new_size:
        raise ProofError(
            f"old checkpoint (size {proof.old_size}) is larger than new (size {proof.new_size})"
        )
    if not proof.verify(old.checkpoint.root_hash, new.checkpoint.root_hash):
        raise ProofError(
            f"consistency proof from size {proof.old_size} to {proof.new_size} does not "
            "verify: the log's history was rewritten or the proof is wrong"
        )


# --------------------------------------------------------------------------- command line


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ProofFormatError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc


def _public_key_arg(value: str) -> bytes | str:
    # A path to a key file, or the base64 key itself on the command line.
    candidate = Path(value)
    if candidate.is_file():
        return _read(value, "public key")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ledger.proofs",
        description="Check exchange-ledger proofs with nothing but the files and the "
        "operator's public key. Exit status: 0 valid, 1 invalid, 2 unreadable input.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--key-id", help="require checkpoints to carry this key id")
    common.add_argument("--origin", help="require checkpoints to be for this log origin")
    common.add_argument("--key-history", metavar="FILE",
                        help="earlier log keys with the checkpoint sizes each signed (after a key rotation)")

    inc = sub.add_parser(
        "verify-inclusion", parents=[common], help="an entry is in a signed tree"
    )
    inc.add_argument("proof", metavar="PROOF.json")
    inc.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.note (or a v1 checkpoint.json)")
    inc.add_argument("public_key", metavar="PUBKEY", help="key file (base64 or PEM) or base64")
    inc.add_argument("--leaf", metavar="ENTRY", help="file with the entry bytes to match")

    con = sub.add_parser(
        "verify-consistency", parents=[common], help="a signed tree extends an older one"
    )
    con.add_argument("proof", metavar="PROOF.json")
    con.add_argument("old", metavar="OLD", help="old.note (or a v1 .json)")
    con.add_argument("new", metavar="NEW", help="new.note (or a v1 .json)")
    con.add_argument("public_key", metavar="PUBKEY", help="key file (base64 or PEM) or base64")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        key = _public_key_arg(args.public_key)
        history: list[LogKey] = []
        if args.key_history:
            try:
                history = parse_key_history(_read(args.key_history, "key history").decode("utf-8"))
            except (CheckpointError, UnicodeDecodeError) as exc:
                raise ProofFormatError(f"key history {args.key_history!r}: {exc}") from exc
        if args.command == "verify-inclusion":
            leaf = _read(args.leaf, "entry") if args.leaf else None
            proof_text = _read(args.proof, "proof")
            verify_inclusion_bundle(
                proof_text,
                _read(args.checkpoint, "checkpoint"),
                key,
                key_id=args.key_id,
                origin=args.origin,
                leaf_data=leaf,
                history=history,
            )
            proof = InclusionProof.from_json(proof_text)
            print(f"OK: leaf {proof.leaf_index} is included in the signed tree of size "
                  f"{proof.tree_size}")
        else:
            proof_text = _read(args.proof, "proof")
            verify_consistency_bundle(
                proof_text,
                _read(args.old, "old checkpoint"),
                _read(args.new, "new checkpoint"),
                key,
                key_id=args.key_id,
                origin=args.origin,
                history=history,
            )
            proof = ConsistencyProof.from_json(proof_text)
            print(f"OK: the signed tree of size {proof.new_size} extends the one of size "
                  f"{proof.old_size}")
    except ProofFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ProofError as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
