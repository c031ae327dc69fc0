"""Development signing keys for the simulated authorities.

Each key is derived from a public label and the authority id, so anyone can
recompute it: they exist only so the embedded demo and the tests can sign as
any authority. The public halves are written to policies/directory/keys.yaml
with key ids starting ``dev-``: the default key set in development only. A
production key set (XLEDGER_KEYSET) carries the authorities' real public keys,
and refuses these; no real private key ever lives in this repository.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.signing import public_bytes, public_bytes_b64

DEV_KEY_ID = "dev-2026"
_LABEL = b"exchange-ledger development signing key|"


def dev_private_key(org_id: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(_LABEL + org_id.encode()).digest())


@lru_cache(maxsize=4096)
def dev_public_key(org_id: str) -> bytes:
    """The raw public half of ``org_id``'s development key (to recognise it wherever it turns up)."""
    return public_bytes(dev_private_key(org_id))


def dev_keys_document(org_ids: Iterable[str]) -> dict[str, object]:
    """The development key set, in the key-set format (docs/keyset.md)."""
    return {"format": "xledger-keyset/v1", "keys": {
        org: [{"key_id": DEV_KEY_ID, "public_key": public_bytes_b64(dev_private_key(org))}]
        for org in sorted(set(org_ids))
    }}


def write_dev_keys(org_ids: Iterable[str], path: Path) -> int:
    doc = dev_keys_document(org_ids)
    header = ("# Development key set (services/keyring.py): public and derivable by anyone; the default key set\n"
              "# in development only. Production refuses it: a deployment names its own with XLEDGER_KEYSET.\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=True), encoding="utf-8")
    return len(doc["keys"])
