"""AvroCodec resolves a writer fingerprint once per codec: every error stays the same, however often and
in whatever order it is met, and only fingerprints of known schemas are remembered."""

from __future__ import annotations

import pytest

from schemas.codec import HEADER_LEN, AvroCodec, CodecError
from schemas.registry import SchemaRegistry, default_registry
from tests.schemas.examples import PAYLOADS
from tests.schemas.test_evolution import NAME as NOTICE, V1_RECORD, V2_RECORD

NAME = "dk.xledger.payload.CaseNote"


def _error(codec: AvroCodec, data: bytes, expect: str | None = None) -> tuple[str, str]:
    with pytest.raises(CodecError) as info:
        codec.decode(data, expect=expect)
    return info.value.reason, info.value.message


def test_the_same_clear_errors_before_and_after_the_codec_has_warmed_up():
    wire, fresh = AvroCodec(legacy_fingerprints=False), lambda: AvroCodec(legacy_fingerprints=False)
    good = wire.encode(NAME, PAYLOADS[NAME])
    unknown = good[:2] + bytes(8) + good[HEADER_LEN:]
    reversed_ = good[:2] + good[2:HEADER_LEN][::-1] + good[HEADER_LEN:]
    bad = [unknown, reversed_, good[:-1], good + b"\0"]
    expected = [_error(fresh(), d) for d in bad]
    assert [r for r, _ in expected] == ["UNKNOWN_FINGERPRINT", "UNKNOWN_FINGERPRINT", "MALFORMED", "MALFORMED"]
    assert "big-endian" in expected[1][1]
    for _ in range(3):  # cold, after a good message, and again
        assert [_error(wire, d) for d in bad] == expected
        assert wire.decode(good).record == PAYLOADS[NAME]
    assert _error(wire, good, expect=NOTICE) == _error(fresh(), good, expect=NOTICE) == \
        ("WRONG_TYPE", f"expected {NOTICE}, got {NAME}")
    assert set(wire._readers) == {good[2:HEADER_LEN]}  # nothing remembered for the unknown ones


def test_a_schema_known_to_one_codec_is_not_served_to_another():
    full = AvroCodec()
    v1_only = AvroCodec(SchemaRegistry([v for v in default_registry().all_versions()
                                        if not (v.name == NOTICE and v.version == 2)]))
    v1_bytes, v2_bytes = full.encode(NOTICE, V1_RECORD, version=1), full.encode(NOTICE, V2_RECORD)
    assert full.decode(v2_bytes).record == V2_RECORD
    assert full.decode(v1_bytes).record == {**V1_RECORD, "municipality_contact": None}  # resolved to v2
    assert v1_only.decode(v1_bytes).record == V1_RECORD  # read as v1: its own latest
    assert _error(v1_only, v2_bytes)[0] == "UNKNOWN_FINGERPRINT"
    assert full.decode(v1_bytes).record == {**V1_RECORD, "municipality_contact": None}


def test_legacy_order_is_remembered_per_codec_not_across_codecs():
    stored = AvroCodec()
    good = stored.encode(NAME, PAYLOADS[NAME])
    legacy = good[:2] + good[2:HEADER_LEN][::-1] + good[HEADER_LEN:]
    assert stored.decode(legacy).record == PAYLOADS[NAME]  # old ledgers' bytes
    wire = AvroCodec(legacy_fingerprints=False)
    for _ in range(2):
        assert _error(wire, legacy)[0] == "UNKNOWN_FINGERPRINT"
