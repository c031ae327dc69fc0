"""Mutated valid messages never raise anything but CodecError or RecordInvalid, and every input is classified."""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.categories import present_categories
from schemas.codec import HEADER_LEN, AvroCodec, CodecError
from schemas.registry import default_registry
from schemas.validation import RecordInvalid, validate
from tests.schemas.examples import PAYLOADS, envelope, signed

codec = AvroCodec()
CODEC_REASONS = {"OVERSIZED", "TRUNCATED", "BAD_MARKER", "UNKNOWN_FINGERPRINT", "WRONG_TYPE", "MALFORMED"}

SEEDS: list[bytes] = [codec.encode(name, rec) for name, rec in sorted(PAYLOADS.items())]
SEEDS += [codec.encode("dk.xledger.ExchangeRequest", envelope(name, codec)) for name in sorted(PAYLOADS)]
SEEDS += [signed("dk.xledger.payload.InfohusAssessment", codec)]
SEEDS += [codec.encode("dk.xledger.payload.ReleaseNotice",
                       {k: v for k, v in PAYLOADS["dk.xledger.payload.ReleaseNotice"].items()
                        if k != "municipality_contact"}, version=1)]


def classify(data: bytes, expect: str | None = None) -> str:
    """What the gate would do: a codec reason, INVALID, or OK (and then the categories must compute).

    Nested values are followed as the gate does: SignedMessage.body is an ExchangeRequest, whose
    payload is the record named by payload_type.
    """
    try:
        decoded = codec.decode(data, expect=expect)
    except CodecError as exc:
        assert exc.reason in CODEC_REASONS, exc.reason
        return exc.reason
    if decoded.name == "dk.xledger.SignedMessage":
        return classify(decoded.record["body"], expect="dk.xledger.ExchangeRequest")
    try:
        validate(decoded.name, decoded.record)
    except RecordInvalid as exc:
        assert exc.problems
        return "INVALID"
    if decoded.name == "dk.xledger.ExchangeRequest":
        return classify(decoded.record["payload"], expect=decoded.record["payload_type"])
    if decoded.name.startswith("dk.xledger.payload."):
        present_categories(default_registry().latest(decoded.name).raw, decoded.record)
    return "OK"


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    kind = draw(st.sampled_from(["flip", "flips", "truncate", "insert", "replace", "body", "random"]))
    if kind == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "flips":
        # Flip bits in the body only, so most cases get past the header into the Avro decoder.
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(HEADER_LEN, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)):]
    elif kind == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "replace":
        i = draw(st.integers(HEADER_LEN, len(data) - 1))
        j = draw(st.integers(i, min(len(data), i + 16)))
        data[i:j] = draw(st.binary(min_size=0, max_size=16))
    elif kind == "body":
        # A valid header followed by random bytes: the decoder sees arbitrary input for a known schema.
        data = data[:HEADER_LEN] + bytearray(draw(st.binary(min_size=0, max_size=300)))
    else:
        data = bytearray(draw(st.binary(min_size=0, max_size=300)))
    return bytes(data)


@settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_are_always_classified(data):
    outcome = classify(data)
    event(outcome)
    assert outcome in CODEC_REASONS | {"INVALID", "OK"}


def test_seeds_are_valid():
    assert {classify(s) for s in SEEDS} == {"OK"}


def test_known_mutations_are_classified():
    seed = SEEDS[0]
    assert classify(seed[:5]) == "TRUNCATED"
    assert classify(b"\x00" + seed[1:]) == "BAD_MARKER"
    assert classify(seed + b"\x00") == "MALFORMED"
