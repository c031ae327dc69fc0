"""A crafted envelope that a field-skipping Avro reader reads differently from a full read.

An Avro array may be written in blocks with a negative count followed by the block's size in
bytes, so that a reader can skip it. fastavro's full read ignores that size; a reader that skips the
array (a reduced reader schema) jumps by it. A signed envelope can therefore carry two tails: the one
the gate decodes and decides, and another that a skipping reader lands in. The relay must read the
envelope as the gate read it (review finding, 2026-12-01: the relay briefly read only payload_type
and payload through a reduced schema, and delivered a payload type policy had never seen).
"""
from __future__ import annotations

import io
import uuid

from fastavro import parse_schema, schemaless_reader

from schemas.codec import HEADER_LEN, AvroCodec
from services.delivery import DecidedExchange, Messages
from tests.schemas.examples import envelope

ENVELOPE = "dk.xledger.ExchangeRequest"
EVIL = b"dk.xledger.payload.Evil"
MARK = "\u00a7MARK\u00a7"


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _length_as_utf8(length: int) -> bytes | None:
    """A varint of ``length`` whose bytes are also valid UTF-8 inside the decoy string (non-canonical)."""
    v = 2 * length
    if v < 128:
        return bytes([v])
    low, high = v & 0x7F, v >> 7
    return bytes([low | 0x80, high | 0x80, 0]) if 0x42 <= low <= 0x5F and high <= 0x3F else None


def _smuggling_envelope(codec: AvroCodec) -> bytes:
    """One data category written as a negative-count block whose byte size points into the
    ``necessity`` text, which holds a second copy of the remaining fields ending in EVIL."""
    rec = envelope("dk.xledger.payload.CaseNote", codec)
    rec["data_categories"], rec["necessity"] = [rec["data_categories"][0]], MARK
    good = codec.encode(ENVELOPE, rec)
    i = good.index(MARK.encode())
    union_at = i - len(_zigzag(len(MARK.encode()))) - 1  # necessity's union branch byte
    assert good[union_at] == 2 and good[union_at - 3] == 2 and good[union_at - 1] == 0
    category = good[union_at - 2]
    head, tail = good[:union_at - 3], good[i + len(MARK.encode()):]
    for pad in range(2000):
        decoy = b"\x00" + b"\x02" + _zigzag(0) + b"\x00\x00\x00\x00" + _zigzag(len(EVIL)) + EVIL
        length = _length_as_utf8(pad + len(tail))
        if length is None:
            continue
        text = decoy + length + b"x" * pad
        text_len = _zigzag(len(text))
        data = (head + _zigzag(-1) + _zigzag(3 + len(text_len)) + bytes([category]) + b"\x00" + b"\x02" + text_len
                + text + tail)
        try:
            codec.decode(data, expect=ENVELOPE)
        except Exception:  # noqa: BLE001 - not a valid envelope with this padding: try the next
            continue
        return data
    raise AssertionError("no padding gives a valid envelope")


def test_a_skipping_reader_reads_another_payload_type():
    codec = AvroCodec()
    data = _smuggling_envelope(codec)
    full = codec.decode(data, expect=ENVELOPE).record
    latest = codec.registry.latest(ENVELOPE)
    reduced = {k: v for k, v in latest.raw.items() if k != "fields"}
    reduced["fields"] = [f for f in latest.raw["fields"] if f["name"] in ("payload_type", "payload")]
    skipped = schemaless_reader(io.BytesIO(data[HEADER_LEN:]), parse_schema(latest.raw), parse_schema(reduced))
    assert full["payload_type"] == "dk.xledger.payload.CaseNote"
    assert skipped["payload_type"] == EVIL.decode()  # the hazard this guards against is real


class _Opened:
    """Stands in for the ledger's sealer: gives back the signed message as stored."""

    def __init__(self, raw: bytes):
        self.raw = raw

    def open(self, subject, sealed, aad):
        return self.raw


def test_the_relay_opens_the_payload_the_gate_decoded():
    codec = AvroCodec()
    data = _smuggling_envelope(codec)
    signed = codec.encode("dk.xledger.SignedMessage", {"signer": "x", "key_id": "k", "signature": b"\0" * 64,
                                                       "body": data})
    exchange = DecidedExchange(uuid.uuid4(), "x", "m-1", "subject", {}, "sealed", {})
    opened = Messages(codec).open_payload(exchange, _Opened(signed))
    gate = codec.decode(data, expect=ENVELOPE).record
    assert opened == {"payload_type": gate["payload_type"], "payload": gate["payload"]}
    assert opened["payload_type"] != EVIL.decode()
