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


# -- adversarial review of the step-by-step batch (h/attack) -----------------------------------

import base64  # noqa: E402
from datetime import timedelta  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

from bench.messages import requests  # noqa: E402
from services.agency import Publisher  # noqa: E402
from services.demo import KSP_SENDER  # noqa: E402
from services.gate import Rejected  # noqa: E402
from services.keyring import DEV_KEY_ID, dev_private_key  # noqa: E402
from services.signing import _public_key, public_bytes  # noqa: E402


def _pipeline(keys=None, clock=lambda: AT):
    settings = Settings.development()
    return GatePipeline(PolicyEngine.load_default(), None, settings.pseudonym_secret.encode(),
                        keys or KeySet.load(DEV_KEYSET), AvroCodec(legacy_fingerprints=False), clock=clock)


def _one_at_a_time(p: GatePipeline, msg: Inbound):
    """main's GatePipeline._run_steps, kept here as the reference the batch must match."""
    w = Work(msg, at=p.clock())
    step_name = ""
    try:
        for step in p.steps:
            step_name = step.__name__
            step(w)
            if step == p.verify_sender:
                w.sender = w.envelope["sender"]["org"]
        return w
    except Rejected as r:
        return p._rejected(w, r.reason, r.detail)
    except Exception as exc:
        return p._internal_error(w, step_name, exc)


def _mixed_values() -> list[bytes]:
    """Good messages from two senders, and every kind of bad one, duplicates included."""
    ksp = [v for _, v in signed_messages(5, "mix")]
    other_org = "kriminalforsorgen:bornholm"
    other = Publisher(other_org, "KRIMINALFORSORGEN", producer=None, key=dev_private_key(other_org), key_id=DEV_KEY_ID)
    theirs = [other.signed_bytes(other.envelope(**r)) for r in requests(3, "mix-other")]
    impostor = Publisher(KSP_SENDER[0], KSP_SENDER[1], producer=None, key=dev_private_key(other_org),
                         key_id=DEV_KEY_ID)  # KSP's name, bornholm's key
    forged = [impostor.signed_bytes(impostor.envelope(**r)) for r in requests(1, "forged")]
    flipped = ksp[1][:-1] + bytes([ksp[1][-1] ^ 1])
    return [b"", ksp[0], theirs[0], flipped, ksp[0], ksp[1][:40], forged[0], ksp[2], theirs[1], b"\xc3\x01" + b"\0" * 8,
            ksp[2], theirs[2], ksp[3], b"not avro at all", ksp[4], theirs[0]]


def _msgs(values):
    return [Inbound("exchange.requests", 0, i, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("shape", ["mixed", "first_bad", "last_bad", "all_bad", "all_good", "one"])
def test_batch_matches_main_one_at_a_time_for_every_shape(shape):
    good = [v for _, v in signed_messages(4, f"shape-{shape}")]
    values = {"mixed": _mixed_values(), "first_bad": [b"junk", *good], "last_bad": [*good, good[0][:-3]],
              "all_bad": [b"", b"x", good[0][:12], good[1][:-1]], "all_good": good, "one": good[:1]}[shape]
    p = _pipeline()
    msgs = _msgs(values)
    assert [_outcome(r) for r in p._run_batch(msgs)] == [_outcome(_one_at_a_time(p, m)) for m in msgs]


def test_a_rejected_message_reaches_no_later_step_and_an_exception_is_its_own():
    p = _pipeline()
    calls: list[tuple[str, int]] = []
    boom_at = {7: "categorise", 12: "decode_payload", 0: "decode_signed"}

    def wrap(step):
        def run(w):
            calls.append((step.__name__, w.msg.offset))
            if boom_at.get(w.msg.offset) == step.__name__:
                raise RuntimeError("a fault of ours")
            return step(w)
        run.__name__ = step.__name__
        return run

    p.steps = [wrap(s) for s in p.steps]
    p.verify_sender = p.steps[2]  # the batch compares by identity to set the sender
    msgs = _msgs(_mixed_values())
    batched = p._run_batch(msgs)
    assert [_outcome(r) for r in batched] == [_outcome(_one_at_a_time(p, m)) for m in msgs]
    names = [s.__name__ for s in p.steps]
    for r in batched:
        if isinstance(r, RejectedMessage):
            off = r.source["offset"]
            seen = [n for n, o in calls if o == off]
            # each step at most once per run (two runs above), and none after the rejecting one
            assert seen[: len(seen) // 2] == names[: len(seen) // 2]
    internal = {r.source["offset"]: r.detail for r in batched if isinstance(r, RejectedMessage)
                and r.reason == "INTERNAL_ERROR"}
    assert internal == {0: "decode_signed: RuntimeError", 7: "categorise: RuntimeError",
                        12: "decode_payload: RuntimeError"}


def test_batch_order_and_sources_are_the_inputs(tmp_path):
    p = _pipeline()
    msgs = _msgs(_mixed_values() * 40)  # 640 messages, more than one poll's worth
    out = p._run_batch(msgs)
    assert [r.msg.source if isinstance(r, Work) else r.source for r in out] == [m.source for m in msgs]


def _keyset_with(tmp_path, org: str, **fields) -> KeySet:
    data = yaml.safe_load(DEV_KEYSET.read_text())
    data["keys"][org][0].update(fields)
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump(data))
    return KeySet.load(path)


def test_a_cached_public_key_does_not_outlive_its_revocation_or_rotation(tmp_path):
    values = [v for _, v in signed_messages(2, "revoke")]
    org = KSP_SENDER[0]
    assert _outcome(_pipeline()._run_batch(_msgs(values[:1]))[0])[0] == "decided"  # cached now
    revoked = _pipeline(_keyset_with(tmp_path, org, revoked_at=(AT - timedelta(seconds=1)).isoformat()))
    expired = _pipeline(_keyset_with(tmp_path, org, valid_to=(AT - timedelta(days=1)).date().isoformat()))
    future = _pipeline(_keyset_with(tmp_path, org, valid_from=(AT + timedelta(days=1)).date().isoformat()))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other_bytes = base64.b64encode(public_bytes(Ed25519PrivateKey.generate())).decode()  # same id, new key
    rotated = _pipeline(_keyset_with(tmp_path, org, public_key=other_bytes))
    for pipeline, reason in ((revoked, "KEY_REVOKED"), (expired, "KEY_EXPIRED"), (future, "KEY_NOT_YET_VALID"),
                             (rotated, "BAD_SIGNATURE")):
        out = pipeline._run_batch(_msgs(values))
        assert [_outcome(r)[:2] for r in out] == [("rejected", reason)] * 2


def test_the_key_cache_is_bounded():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    size = _public_key.cache_info().maxsize
    assert size is not None and size <= 4096
    for _ in range(size + 50):
        _public_key(public_bytes(Ed25519PrivateKey.generate()))
    assert _public_key.cache_info().currsize <= size


def test_a_key_revoked_while_the_batch_is_decoded_is_refused(tmp_path):
    """The key's status is judged at the time the gate checks it, not when the batch was polled:
    a revocation that is in force before a message's signature is checked refuses that message
    (one poll may be 500 messages: decoding them all takes a while)."""
    revoke_at = AT + timedelta(seconds=1)
    keys = _keyset_with(tmp_path, KSP_SENDER[0], revoked_at=revoke_at.isoformat())
    now = [AT]
    p = _pipeline(keys, clock=lambda: now[0])
    decode_request = p.decode_request

    def decode_then_time_passes(w):
        decode_request(w)
        if w.msg.offset == 2:  # the last message's envelope decoded: the revocation is now in force
            now[0] = revoke_at + timedelta(seconds=1)

    p.steps[1] = decode_then_time_passes
    out = p._run_batch(_msgs([v for _, v in signed_messages(3, "revoked-mid-batch")]))
    assert [_outcome(r)[:2] for r in out] == [("rejected", "KEY_REVOKED")] * 3


def test_a_mixed_batch_on_the_real_broker_is_recorded_in_offset_order_once_each(settings, broker):
    """One poll of good, bad and duplicate messages from two senders (then the same again: every good
    one now a duplicate of the ledger): each offset recorded exactly once, as main would record it,
    in offset order; one dead letter per rejection; the ledger's position after the last offset."""
    from kafka import KafkaProducer

    from ledger.domain import exchange_id
    from services import topics
    from tests.harness import ksp_runtime, read_topic

    values = _mixed_values()
    reference = _pipeline()
    expected, seen = {}, set()
    for i, v in enumerate(values * 2):
        r = _one_at_a_time(reference, Inbound(topics.REQUESTS, 0, i, v))
        if isinstance(r, Work):
            xid = exchange_id(r.envelope["sender"]["org"], r.envelope["message_id"])
            expected[i] = "DUPLICATE_MESSAGE" if xid in seen else "decided"
            seen.add(xid)
        else:
            expected[i] = r.reason
    with ksp_runtime(settings, request_partitions=1) as rt:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for round_ in range(2):
            for v in values:
                producer.send(topics.REQUESTS, key=b"k", value=v, partition=0)
            producer.flush()
            worker = rt.gate_worker(f"attack-gate-{round_}")
            try:
                # Generous: under load joining the group alone took over 2 s, and the worker stopped idle
                # before its first record (seen once on PostgreSQL).
                worker.run(idle_stop_after=10)
            finally:
                worker.consumer.close()
                worker.producer.close()
            assert rt.ledger.position(f"kafka:{topics.REQUESTS}:0") == len(values) * (round_ + 1)
        producer.close()
        got, order = {}, []
        for n in rt.ledger.all_notifications():
            if n.topic.endswith(("Exchange.RequestDecided", "RejectedMessage.Rejected")):
                e = rt.ledger.mapper.to_domain_event(n)
                off = e.source["offset"]
                assert off not in got, f"offset {off} recorded twice"
                got[off] = "decided" if n.topic.endswith("Exchange.RequestDecided") else e.reason
                order.append(off)
        assert got == expected
        assert order == sorted(order)
        rejected = [o for o, r in expected.items() if r != "decided"]
        dead = read_topic(broker.bootstrap, topics.DEAD_LETTERS, expect=len(rejected), timeout=30)
        assert sorted(int(dict(d.headers)["x-source-offset"]) for d in dead) == rejected
