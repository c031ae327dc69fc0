"""Every CodecError reason, from the bytes that cause it."""

from __future__ import annotations

import pytest

from schemas.codec import HEADER_LEN, MARKER, MAX_MESSAGE_BYTES, AvroCodec, CodecError
from tests.schemas.examples import PAYLOADS

codec = AvroCodec()
NAME = "dk.xledger.payload.CaseNote"
GOOD = codec.encode(NAME, PAYLOADS[NAME])


def reason(data: bytes, expect: str | None = None) -> str:
    with pytest.raises(CodecError) as info:
        codec.decode(data, expect=expect)
    assert str(info.value).startswith(info.value.reason + ": ")
    return info.value.reason


@pytest.mark.parametrize("n", [0, 1, 2, 9])
def test_truncated_header(n):
    assert reason(GOOD[:n]) == "TRUNCATED"


@pytest.mark.parametrize("marker", [b"\x00\x00", b"\xc3\x00", b"\x01\xc3", b"Ob"])
def test_bad_marker(marker):
    assert reason(marker + GOOD[2:]) == "BAD_MARKER"


def test_unknown_fingerprint():
    data = GOOD[:2] + bytes(8) + GOOD[HEADER_LEN:]
    assert reason(data) == "UNKNOWN_FINGERPRINT"
    flipped = GOOD[:2] + bytes([GOOD[2] ^ 0x01]) + GOOD[3:]
    assert reason(flipped) == "UNKNOWN_FINGERPRINT"


def test_header_only_is_malformed():
    assert reason(GOOD[:HEADER_LEN]) == "MALFORMED"


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_body_is_malformed(cut):
    assert reason(GOOD[:-cut]) == "MALFORMED"


@pytest.mark.parametrize("extra", [b"\x00", b"trailing", bytes(100)])
def test_trailing_bytes_are_malformed(extra):
    with pytest.raises(CodecError) as info:
        codec.decode(GOOD + extra)
    assert info.value.reason == "MALFORMED" and "trailing" in info.value.message


def test_invalid_utf8_and_bad_union_index_are_malformed():
    # The cpr string starts right after the header: its length byte, then the digits.
    assert GOOD[HEADER_LEN] == 20  # zigzag 10
    bad_utf8 = GOOD[:HEADER_LEN + 1] + b"\xff" + GOOD[HEADER_LEN + 2:]
    assert reason(bad_utf8) == "MALFORMED"
    negative_length = GOOD[:HEADER_LEN] + b"\x01" + GOOD[HEADER_LEN + 1:]
    assert reason(negative_length) == "MALFORMED"


def test_oversized():
    assert reason(GOOD + bytes(MAX_MESSAGE_BYTES)) == "OVERSIZED"
    assert reason(bytes(MAX_MESSAGE_BYTES + 1)) == "OVERSIZED"
    # Exactly at the limit is not oversized (it fails later for another reason).
    assert reason(MARKER + GOOD[2:HEADER_LEN] + bytes(MAX_MESSAGE_BYTES - HEADER_LEN)) != "OVERSIZED"


def test_wrong_type():
    assert reason(GOOD, expect="dk.xledger.ExchangeRequest") == "WRONG_TYPE"
    assert codec.decode(GOOD, expect=NAME).name == NAME


def test_encode_errors():
    with pytest.raises(CodecError) as info:
        codec.encode(NAME, {"cpr": 1})
    assert info.value.reason == "INVALID_RECORD"
    with pytest.raises(CodecError) as info:
        codec.encode(NAME, PAYLOADS[NAME], version=7)
    assert info.value.reason == "UNKNOWN_SCHEMA"


def test_encode_refuses_unknown_fields_instead_of_dropping_them():
    from schemas.codec import AvroCodec, CodecError
    import pytest as _pytest

    with _pytest.raises(CodecError) as info:
        AvroCodec().encode("dk.xledger.DecisionReceipt", {
            "receipt_id": "r", "exchange_id": "e", "message_id": "m", "recipient": "x", "outcome": "ALLOW",
            "reasno": "typo"})
    assert info.value.reason == "INVALID_RECORD" and "reasno" in info.value.message
