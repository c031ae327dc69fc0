"""The benchmark load: signed KSP release notices, as ``tests/services/test_faults.publish_load`` makes them.

About 2/3 are lawful (released in 20 days: ALLOW to the municipality) and 1/3 are out of
the release window (DENY). No garbage, so every message takes the full decision path.
"""
from __future__ import annotations

from datetime import datetime, timezone

from services.agency import Publisher, request_key
from services.config import Settings
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.keyring import DEV_KEY_ID, dev_private_key

NOW = datetime.now(timezone.utc)
SENDER, RECIPIENT = KSP_SENDER, KALUNDBORG_SOCIAL


def publisher(settings: Settings | None = None, codec=None) -> Publisher:
    return Publisher(*SENDER, producer=None, key=dev_private_key(SENDER[0]), key_id=DEV_KEY_ID,
                     codec=codec)


def requests(n: int, tag: str = "bench"):
    cprs = [f"{d:02d}0391{s:04d}" for d, s in zip(range(1, 29), range(1234, 9999, 311))]
    for i in range(n):
        lawful = i % 3 != 0
        req = release_notice(NOW.date(), cpr=cprs[i % len(cprs)], name=f"Person {i}",
                             release_in_days=20 if lawful else 400, age=30)
        yield dict(occurred_at=NOW, message_id=f"{tag}-{i:07d}", **req)


def signed_messages(n: int, tag: str = "bench", settings: Settings | None = None) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) pairs ready for exchange.requests."""
    pub = publisher(settings)
    out = []
    for req in requests(n, tag):
        env = pub.envelope(**req)
        out.append((request_key(env["payload_type"], req["payload"]).encode(), pub.signed_bytes(env)))
    return out
