"""GatePipeline runs each step across the batch: every message gets what it got one at a time."""

from __future__ import annotations

from datetime import datetime, timezone

from bench.messages import signed_messages
from ledger.domain import RejectedMessage
from policies.engine import PolicyEngine
from schemas.codec import AvroCodec
from services.config import Settings
from services.gate import GatePipeline, Inbound, Work
from services.keyset import DEV_KEYSET, KeySet

AT = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _outcome(r):
    if isinstance(r, RejectedMessage):
        return ("rejected", r.reason, r.detail, r.sender, r.message_id, r.source)
    assert isinstance(r, Work)
    return ("decided", r.subject, r.key_id, sorted(r.present), r.decision)


def test_a_batch_gets_what_its_messages_get_one_at_a_time():
    settings = Settings.development()
    pipeline = GatePipeline(PolicyEngine.load_default(), None, settings.pseudonym_secret.encode(),
                            KeySet.load(DEV_KEYSET), AvroCodec(legacy_fingerprints=False), clock=lambda: AT)
    values = [v for _, v in signed_messages(6, "batch")]
    forged = values[1][:-1] + bytes([values[1][-1] ^ 1])  # the body changed: the signature fails
    values[1:1] = [b"not avro", forged, values[0][:40]]
    msgs = [Inbound("exchange.requests", 0, i, v) for i, v in enumerate(values)]
    one_by_one = [_outcome(pipeline._run_steps(m)) for m in msgs]
    batched = [_outcome(r) for r in pipeline._run_batch(msgs)]
    assert batched == one_by_one
    assert [o[0] for o in batched].count("rejected") == 3
