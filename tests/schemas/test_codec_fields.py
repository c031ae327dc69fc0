"""AvroCodec.decode_fields: a record's named fields alone, with decode's checks and errors."""

from __future__ import annotations

import pytest

from schemas.codec import HEADER_LEN, AvroCodec, CodecError
from schemas.registry import default_registry
from tests.schemas.examples import PAYLOADS, envelope

ENVELOPE = "dk.xledger.ExchangeRequest"
FIELDS = ("payload_type", "payload")
PAYLOAD = "dk.xledger.payload.CaseNote"


def _error(fn, *args) -> tuple[str, str]:
    with pytest.raises(CodecError) as info:
        fn(*args)
    return info.value.reason, info.value.message


@pytest.mark.parametrize("version", [1, 2])
def test_the_fields_as_a_whole_decode_gives_them(version):
    codec = AvroCodec()
    record = envelope(PAYLOAD, codec)
    if version == 1:
        names = {f["name"] for f in default_registry().versions(ENVELOPE)[0].raw["fields"]}
        record = {k: v for k, v in record.items() if k in names}
    data = codec.encode(ENVELOPE, record, version=version)
    full = codec.decode(data, expect=ENVELOPE).record
    for _ in range(2):  # the projection made, then reused
        part = codec.decode_fields(data, ENVELOPE, FIELDS)
        assert list(part) == list(FIELDS)
        assert part == {k: full[k] for k in FIELDS}


def test_the_same_errors_as_decode():
    codec = AvroCodec()
    good = codec.encode(ENVELOPE, envelope(PAYLOAD, codec))
    bad = [good[:HEADER_LEN - 1], b"\x00\x01" + good[2:], good[:2] + bytes(8) + good[HEADER_LEN:], good[:-1],
           good + b"\0", b"\xc3\x01" + good[2:HEADER_LEN] + b"\x00" * (1024 * 1024)]
    for data in bad:
        assert _error(codec.decode_fields, data, ENVELOPE, FIELDS) == \
            _error(lambda d: codec.decode(d, expect=ENVELOPE), data)
    other = codec.encode(PAYLOAD, PAYLOADS[PAYLOAD])
    assert _error(codec.decode_fields, other, ENVELOPE, FIELDS) == ("WRONG_TYPE", f"expected {ENVELOPE}, got {PAYLOAD}")


def test_a_field_the_schema_lacks_is_a_mistake_of_the_caller():
    codec = AvroCodec()
    data = codec.encode(ENVELOPE, envelope(PAYLOAD, codec))
    with pytest.raises(ValueError, match="no_such_field"):
        codec.decode_fields(data, ENVELOPE, ("payload", "no_such_field"))


def test_encode_still_names_unknown_fields():
    codec = AvroCodec()
    record = {**PAYLOADS[PAYLOAD], "zz_extra": 1, "aa_extra": 2}
    for _ in range(2):  # the field names remembered after the first
        assert _error(codec.encode, PAYLOAD, record) == \
            ("INVALID_RECORD", f"{PAYLOAD}: unknown fields ['aa_extra', 'zz_extra']")


def test_a_projection_made_for_one_type_refuses_another():
    codec = AvroCodec()
    data = codec.encode(ENVELOPE, envelope(PAYLOAD, codec))
    codec.decode_fields(data, ENVELOPE, FIELDS)
    assert _error(codec.decode_fields, data, PAYLOAD, FIELDS) == ("WRONG_TYPE", f"expected {PAYLOAD}, got {ENVELOPE}")
