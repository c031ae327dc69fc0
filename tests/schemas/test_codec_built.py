"""``AvroCodec.encode(..., built=True)``: the relay's records written without fastavro's validation,
byte for byte as with it, and any wrong value still refused with an error naming its field."""

from __future__ import annotations

import io

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas.codec import _WRITER_CHECKED, AvroCodec, CodecError, _writer_checks

codec = AvroCodec()
INBOX, RECEIPT = "dk.xledger.DeliveredExchange", "dk.xledger.DecisionReceipt"

GOOD = {
    INBOX: {
        "delivery_id": "0b5e1f3c-0000-5000-8000-000000000001", "exchange_id": "0b5e1f3c-0000-5000-8000-000000000002",
        "message_id": "m-1", "sender": {"org": "kriminalforsorgen:ksp", "role": "KRIMINALFORSORGEN"},
        "recipient": "kommune:kalundborg:social", "context": "KSP", "cooperation_id": None,
        "purpose": "RELEASE_PLANNING", "occurred_at": "2026-12-01T10:00:00+00:00", "rule": "P5", "via": "P9",
        "citation": "§ 115, stk. 3", "warnings": ["W1", "W2"], "policy_version": "sha256:" + "a" * 64,
        "subject_pseudonym": "p" * 43, "payload_type": "dk.xledger.payload.ReleaseNotice",
        "payload": b"\xc3\x01" + bytes(range(256)),
    },
    RECEIPT: {
        "receipt_id": "r-1", "exchange_id": "e-1", "message_id": "m-1", "recipient": "kommune:x", "outcome": "ESCALATE",
        "rule": None, "via": None, "reason": "E1", "citation": "§ 115", "warnings": [],
        "policy_version": "sha256:" + "a" * 64, "request_digest": "sha256:" + "b" * 64,
    },
}


@pytest.mark.parametrize("name", [INBOX, RECEIPT])
def test_both_record_types_take_the_unvalidated_path(name):
    arrays, unions = _writer_checks(codec.registry.latest(name).raw)
    assert arrays == ("warnings",) and "via" in unions


@pytest.mark.parametrize("name", [INBOX, RECEIPT])
def test_built_bytes_are_the_validated_bytes(name):
    variants = [GOOD[name], {k: v for k, v in GOOD[name].items() if k not in ("via", "warnings")},
                dict(GOOD[name], warnings=("W3",)), dict(GOOD[name], message_id="æøå €")]
    for record in variants:
        assert codec.encode(name, record, built=True) == codec.encode(name, record)
        assert codec.decode(codec.encode(name, record, built=True), expect=name).record["message_id"] == \
            record["message_id"]


class _Str(str):
    pass


# Wrong values per field type, as our code could get them wrong: every one must be refused.
WRONG = {
    "string": [None, 5, True, 1.5, b"x", ["x"], {"x": 1}, "\ud800"],
    # ("null", "x") the writer alone would write as null: the tuple check sends it to validation
    "optional string": [5, True, b"x", ["x"], ("x",), ("null", "x"), ("string", 5), {"x"}, "\ud800"],
    "bytes": [None, "x", 5, ["x"]],
    "array": [None, "WX", {"W": 1}, {"W"}, iter(["W"]), [5], [None], [b"W"]],
    "enum": [None, "MAYBE", "allow", 1, b"ALLOW"],
    "record": [None, "org", ["org", "role"], {"org": "o"}, {"org": 5, "role": "r"}],
}
CASES = [(INBOX, f, kind) for f, kind in [("delivery_id", "string"), ("message_id", "string"),
                                          ("cooperation_id", "optional string"), ("via", "optional string"),
                                          ("payload", "bytes"), ("warnings", "array"), ("sender", "record")]] + \
        [(RECEIPT, f, kind) for f, kind in [("recipient", "string"), ("outcome", "enum"), ("reason", "optional string"),
                                            ("warnings", "array"), ("request_digest", "optional string")]]


@pytest.mark.parametrize("name,field,kind", CASES)
def test_a_wrong_value_is_refused_naming_its_field(name, field, kind):
    for wrong in WRONG[kind]:
        record = dict(GOOD[name], **{field: wrong})
        with pytest.raises(CodecError) as info:
            codec.encode(name, record, built=True)
        assert info.value.reason == "INVALID_RECORD", (field, wrong)
        assert name in info.value.message, (field, wrong)
        # The field, or for a nested record the record type whose field is wrong (fastavro names it so).
        named = (field, "DeliveredParty") if kind == "record" else (field,)
        assert any(n in info.value.message for n in named), (field, wrong, info.value.message)


@pytest.mark.parametrize("name", [INBOX, RECEIPT])
def test_a_missing_required_field_is_refused(name):
    record = dict(GOOD[name])
    del record["message_id"]
    with pytest.raises(CodecError) as info:
        codec.encode(name, record, built=True)
    assert info.value.reason == "INVALID_RECORD" and "message_id" in info.value.message


def test_unknown_fields_are_still_refused():
    with pytest.raises(CodecError) as info:
        codec.encode(RECEIPT, dict(GOOD[RECEIPT], reasno="x"), built=True)
    assert info.value.reason == "INVALID_RECORD" and "reasno" in info.value.message


def test_null_on_its_own_is_not_left_to_the_writer():
    # fastavro's writer writes nothing for a "null" field whatever its value.
    assert _writer_checks({"type": "record", "name": "R", "fields": [{"name": "f", "type": "null"}]}) is None
    assert _writer_checks({"type": "record", "name": "R", "fields": [{"name": "f", "type": ["null", "string"]}]}) == \
        ((), ("f",))


def test_a_union_below_the_top_is_not_left_to_the_writer():
    # A tuple there would be read as (branch, value): ("null", "x") written as null, unseen by encode.
    nested = {"type": "record", "name": "N", "fields": [{"name": "g", "type": ["null", "string"]}]}
    assert _writer_checks({"type": "record", "name": "R", "fields": [{"name": "f", "type": nested}]}) is None
    items = {"type": "array", "items": ["null", "string"]}
    assert _writer_checks({"type": "record", "name": "R", "fields": [{"name": "f", "type": items}]}) is None


def test_the_writer_alone_would_write_a_tagged_tuple_as_its_branch():
    # Why unions are checked for tuples: without validation, ("null", "x") becomes null on the wire.
    schema = parse_schema({"type": "record", "name": "R", "fields": [{"name": "f", "type": ["null", "string"]}]})
    buf = io.BytesIO()
    schemaless_writer(buf, schema, {"f": ("null", "x")})
    assert buf.getvalue() == b"\x00"


def test_a_schema_the_writer_does_not_check_is_validated_anyway():
    # A payload schema with ints and booleans: fastavro's writer writes True into an int as 1 and "x"
    # into a boolean as true without a word, so built=True must still validate.
    name = "dk.xledger.payload.AggregateStatistics"
    raw = codec.registry.latest(name).raw
    assert _writer_checks(raw) is None
    int_field = next(f["name"] for f in raw["fields"] if f["type"] == "int")
    from tests.schemas.examples import PAYLOADS
    with pytest.raises(CodecError) as info:
        codec.encode(name, dict(PAYLOADS[name], **{int_field: True}), built=True)
    assert info.value.reason == "INVALID_RECORD" and int_field in info.value.message


@pytest.mark.parametrize("avro_type,good,wrongs", [
    ("string", "s", [None, 1, True, 1.5, b"s", bytearray(b"s"), ["s"], {"s": 1}]),
    ("bytes", b"b", [None, 1, True, "b", ["b"], {"b": 1}]),
    ({"type": "enum", "name": "E", "symbols": ["A", "B"]}, "A", [None, "C", "a", 0, True, b"A", ["A"]]),
    (["null", "string"], "s", [1, True, b"s", ["s"], {"s"}, ("s",), ("string", 5), ("X", "s")]),
    (["null", "string"], None, [0, False, b"", []]),
    ({"type": "record", "name": "P", "fields": [{"name": "o", "type": "string"}]}, {"o": "s"},
     [None, 1, "s", ["s"], {"x": "s"}]),
])
def test_fastavros_writer_refuses_what_built_relies_on_it_to_refuse(avro_type, good, wrongs):
    """The premise of built=True for the types in _WRITER_CHECKED (and records, unions of them): the writer
    raises on a wrong value rather than writing something. Fails if a fastavro upgrade changes that."""
    kinds = avro_type if isinstance(avro_type, list) else [avro_type]
    assert all((k if isinstance(k, str) else k["type"]) in _WRITER_CHECKED | {"record", "null"} for k in kinds)
    schema = parse_schema({"type": "record", "name": "R", "fields": [{"name": "f", "type": avro_type}]})
    schemaless_writer(io.BytesIO(), schema, {"f": good})
    for wrong in wrongs:
        with pytest.raises(Exception):
            schemaless_writer(io.BytesIO(), schema, {"f": wrong})


# --- the relay's records (services.delivery.Messages), which encode with built=True ---------------

def _exchange(summary_overrides=None, decision_overrides=None):
    import uuid

    from services.delivery import DecidedExchange

    summary = {"occurred_at": "2026-12-01T10:00:00+00:00", "sender": {"org": "kriminalforsorgen:ksp", "role": "KRIMINALFORSORGEN"},
               "context": "KSP", "cooperation_id": "ksp:kalundborg", "purpose": "RELEASE_PLANNING"}
    summary.update(summary_overrides or {})
    decision = {"policy_version": "sha256:" + "a" * 64, "request_digest": "sha256:" + "b" * 64, "results": []}
    decision.update(decision_overrides or {})
    return DecidedExchange(uuid.UUID(int=7), "kriminalforsorgen:ksp", "m-0001", "p" * 64, summary, "sealed", decision)


ALLOWED = {"recipient": "kommune:326", "outcome": "ALLOW", "rule": "P5", "via": None, "reason": None,
           "citation": "§ 115, stk. 3", "warnings": ["W1"]}
ESCALATED = {"recipient": "kommune:327", "outcome": "ESCALATE", "rule": None, "via": None, "reason": "E1",
             "citation": "§ 115", "warnings": []}
PAYLOAD = {"payload_type": "dk.xledger.payload.ReleaseNotice", "payload": b"\xc3\x01" + bytes(40)}


def test_the_relays_records_are_byte_for_byte_what_validated_encoding_writes():
    from services.delivery import Messages, RejectedRequest

    messages = Messages(codec)
    ex = _exchange()
    rejected = RejectedRequest(ex.id, "kriminalforsorgen:ksp", "m-0002", "INVALID_RECORD", "cpr: bad", "sha256:" + "c" * 64)
    sent = [(INBOX, messages.inbox(ex, ALLOWED, PAYLOAD)), (RECEIPT, messages.receipt(ex, ALLOWED)),
            (RECEIPT, messages.receipt(ex, ESCALATED)), (RECEIPT, messages.receipt(ex, ESCALATED, "review-receipt")),
            (RECEIPT, messages.rejected_receipt(rejected))]
    for name, out in sent:
        record = codec.decode(out.value, expect=name).record
        assert out.value == codec.encode(name, record)  # validated: the same bytes


def test_a_wrong_value_in_the_ledgers_data_is_quarantined_as_encode_failed():
    # A summary or decision the relay did not expect (a datetime where the schema has a string,
    # a number as the policy version) is still refused: the delivery is not made.
    from services.delivery import Messages, Undeliverable

    messages = Messages(codec)
    from datetime import datetime, timezone
    cases = [lambda: messages.inbox(_exchange({"occurred_at": datetime.now(timezone.utc)}), ALLOWED, PAYLOAD),
             lambda: messages.inbox(_exchange({"sender": {"org": 5, "role": "POLICE"}}), ALLOWED, PAYLOAD),
             lambda: messages.inbox(_exchange(), ALLOWED, dict(PAYLOAD, payload="not bytes")),
             lambda: messages.receipt(_exchange(decision_overrides={"policy_version": 3}), ALLOWED),
             lambda: messages.receipt(_exchange(), dict(ALLOWED, outcome="MAYBE")),
             lambda: messages.receipt(_exchange(), dict(ALLOWED, warnings=[None]))]
    for build in cases:
        with pytest.raises(Undeliverable) as info:
            build()
        assert info.value.reason == "ENCODE_FAILED"


def test_validated_encoding_names_the_field_fastavro_itself_cannot_judge():
    # The envelope (named types referred to by short name, nested records): a lone surrogate passes
    # fastavro's validation and fails its writer; a 1-tuple in a union makes the validation itself raise.
    from tests.schemas.examples import envelope

    env = envelope("dk.xledger.payload.CaseNote", codec)
    for field, wrong in [("necessity", "\ud800"), ("necessity", ("x",)), ("cooperation_id", "\udfff")]:
        with pytest.raises(CodecError) as info:
            codec.encode("dk.xledger.ExchangeRequest", dict(env, **{field: wrong}))
        assert info.value.reason == "INVALID_RECORD"
        assert info.value.message == f"dk.xledger.ExchangeRequest: invalid value in {field}"
