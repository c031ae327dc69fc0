"""The single-object header follows the Avro specification: C3 01, then the CRC-64-AVRO
fingerprint of the parsing canonical form, little-endian. Checked against the specification's
own algorithm (written out from the spec text in tests/outside/client.py, not taken from our code) and against the
byte-reversed form that releases before 2026-11-30 wrote, which old ledgers hold."""

from __future__ import annotations

import pytest

from schemas.codec import HEADER_LEN, AvroCodec, CodecError
from schemas.registry import default_registry
from tests.outside.client import crc64_avro
from tests.schemas.examples import PAYLOADS

def spec_fingerprint64(data: bytes) -> int:
    # The specification's CRC-64-AVRO, as the independent client (tests/outside/client.py) writes it.
    return crc64_avro(data)


def test_signed_message_fingerprint_is_the_specifications_bytes():
    v = default_registry().versions("dk.xledger.SignedMessage")[0]
    assert v.fingerprint.hex() == "8e675cc7c3ab57d9"


@pytest.mark.parametrize("v", default_registry().all_versions(), ids=lambda v: f"{v.name}-v{v.version}")
def test_every_schema_header_is_little_endian_crc64(v):
    expected = spec_fingerprint64(v.canonical_form.encode()).to_bytes(8, "little")
    assert v.fingerprint == expected
    assert v.legacy_fingerprint == expected[::-1]


def test_encoded_header_carries_the_standard_fingerprint():
    name = "dk.xledger.payload.CaseNote"
    data = AvroCodec().encode(name, PAYLOADS[name])
    assert data[:2] == b"\xc3\x01"
    assert data[2:HEADER_LEN] == default_registry().latest(name).fingerprint


def _legacy(name: str) -> bytes:
    data = AvroCodec().encode(name, PAYLOADS[name])
    return data[:2] + data[2:HEADER_LEN][::-1] + data[HEADER_LEN:]


def test_stored_legacy_bytes_still_decode():
    name = "dk.xledger.payload.CaseNote"
    assert AvroCodec().decode(_legacy(name)).record == PAYLOADS[name]


def test_wire_codec_names_the_byte_order_mistake():
    name = "dk.xledger.payload.CaseNote"
    with pytest.raises(CodecError) as info:
        AvroCodec(legacy_fingerprints=False).decode(_legacy(name))
    assert info.value.reason == "UNKNOWN_FINGERPRINT"
    assert "big-endian" in info.value.message and default_registry().latest(name).fingerprint.hex() in info.value.message


def test_the_gate_reads_the_wire_in_the_standard_form_only():
    from services.config import Settings
    from services.runtime import Runtime

    rt = Runtime(Settings.development())
    assert rt.pipeline().codec.legacy_fingerprints is False
    assert rt.codec.legacy_fingerprints is True  # stored data of earlier releases


def test_apache_avro_fingerprint_is_named():
    """avro 1.12's Schema.fingerprint() keeps logicalType: the error says so and gives the right bytes."""
    import json

    import avro.schema

    name = "dk.xledger.payload.CaseNote"  # has date fields
    v = default_registry().latest(name)
    apache = avro.schema.parse(json.dumps(v.raw)).fingerprint("CRC-64-AVRO")
    data = AvroCodec().encode(name, PAYLOADS[name])
    with pytest.raises(CodecError) as info:
        AvroCodec(legacy_fingerprints=False).decode(data[:2] + apache + data[HEADER_LEN:])
    assert info.value.reason == "UNKNOWN_FINGERPRINT"
    assert "logicalType" in info.value.message and v.fingerprint.hex() in info.value.message
