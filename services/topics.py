"""Topic names. Authority ids contain ':' which Kafka forbids in topic names
(legal: letters, digits, '.', '_', '-'), so it is written as '.' there:
``inbox.kommune:326`` is the topic ``inbox.kommune.326``.
"""

from __future__ import annotations

from functools import lru_cache

REQUESTS = "exchange.requests"
DEAD_LETTERS = "exchange.requests.dlq"
# Cosigned ledger checkpoints (C2SP signed notes), compacted, keyed by the log origin: the relay writes
# it, every authority may read it.
CHECKPOINTS = "ledger.checkpoints"
INBOX_PREFIX = "inbox."
RECEIPTS_PREFIX = "receipts."


@lru_cache(maxsize=4096)  # the relay asks for two topics per exchange; the authorities are few
def authority_suffix(authority_id: str) -> str:
    """The authority id as it appears in topic names (and as its Kafka user name): ':' written as '.'."""
    suffix = authority_id.replace(":", ".")
    bad = {c for c in suffix if not (c.isascii() and (c.isalnum() or c in "._-"))}
    if bad or not suffix:
        raise ValueError(f"authority id {authority_id!r} cannot form a topic name (bad characters: {sorted(bad)})")
    return suffix


def inbox(authority_id: str) -> str:
    return INBOX_PREFIX + authority_suffix(authority_id)


def receipts(authority_id: str) -> str:
    return RECEIPTS_PREFIX + authority_suffix(authority_id)
