"""Authority signatures over exchange requests (Ed25519, X-Road style: the message carries its own proof of origin).

The signed input is a domain prefix plus the encoded request, so a signature
made for anything else can never pass as one made for a request.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DOMAIN = b"xledger-sig-v1\x00"


def sign(body: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(DOMAIN + body)


def verify(body: bytes, signature: bytes, public_keys: Iterable[bytes]) -> bool:
    for raw in public_keys:
        try:
            _public_key(bytes(raw)).verify(signature, DOMAIN + body)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


@lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    # The loaded key for its raw bytes, made once: the gate verifies every message with one of a
    # few hundred keys. Keyed by the bytes alone, so it says nothing about whether a key may be
    # used (revoked, expired): the caller checks that for every message. An invalid key raises
    # ValueError, which is not cached.
    return Ed25519PublicKey.from_public_bytes(raw)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public half."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_bytes_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(public_bytes(key)).decode()
