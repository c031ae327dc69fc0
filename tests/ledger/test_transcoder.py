"""The orjson transcoder (ledger.transcoder) writes and reads what eventsourcing's JSON transcoder does.

Reference: eventsourcing's own ``JSONTranscoder`` (the standard library's json) with the same
transcodings registered. Old rows (the 2026-11-26 release's ledger) decode to the same objects
and re-encode to the same bytes; generated values with UUIDs, datetimes and Decimals anywhere
round-trip to the same objects through either transcoder in either direction.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.domain import datetime_now_with_tzinfo
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, TranscodingNotRegisteredError, UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application import Ledger
from ledger.transcoder import OrjsonTranscoder

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ledger-2026-11-26.sqlite"


def _registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    for t in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(t)
    return transcoder


PLAIN, FAST = _registered(JSONTranscoder()), _registered(OrjsonTranscoder())


def _fixture_states(tmp_path) -> list[bytes]:
    copy = tmp_path / "old.sqlite"  # a copy: opening the fixture itself would leave WAL files beside it
    shutil.copy(FIXTURE, copy)
    db = sqlite3.connect(copy)
    try:
        return [bytes(r[0]) for r in db.execute("SELECT state FROM stored_events ORDER BY rowid")]
    finally:
        db.close()


def test_the_ledger_uses_it(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/l.sqlite")
    try:
        assert isinstance(ledger.mapper.transcoder, OrjsonTranscoder)
    finally:
        ledger.close()


def test_old_rows_decode_the_same_and_encode_to_the_same_bytes(tmp_path):
    states = _fixture_states(tmp_path)
    assert len(states) > 200
    for state in states:
        plain = PLAIN.decode(state)
        assert FAST.decode(state) == plain
        assert FAST.encode(plain) == PLAIN.encode(plain) == state


def test_a_recorded_exchange_reads_back_alike(tmp_path):
    """What the ledger writes now (through orjson) is what the plain transcoder writes and reads,
    with a message id shaped like a UUID (the encoder then looks for uuid.UUID objects)."""
    from ledger.domain import Delivery, Exchange

    ledger = Ledger(f"sqlite:///{tmp_path}/g.sqlite")
    try:
        ex = Exchange(sender="kommune:326", message_id="0b6c4a4e-9d7e-4b8e-8f3f-2f9a3c1d5e77",
                      source={"topic": "exchange.requests", "partition": 0, "offset": 7},
                      summary={"purpose": "SSP", "declared_categories": ["health"], "mandatory": False},
                      subject="ps1:abc", message_digest="sha256:00", sealed_message="c2VhbGVk")
        ex.decide({"policy_version": "sha256:11", "results": [{"recipient": "politi:1", "outcome": "ALLOW",
                                                               "warnings": [], "trace": [{"step": "C7", "passed": True}]}]})
        delivery = Delivery(exchange=str(ex.id), recipient="politi:1", kind="inbox", topic="inbox.politi.1",
                            outcome="PUBLISHED")
        ledger.record([ex, delivery])
        notes = list(ledger.all_notifications())
        assert [n.topic.rsplit(".", 1)[1] for n in notes] == ["Requested", "Decided", "Published"]
        for n in notes:
            plain = PLAIN.decode(n.state)
            assert isinstance(plain["timestamp"], datetime)
            assert FAST.decode(n.state) == plain
            assert PLAIN.encode(plain) == n.state
        assert ledger.get_exchange(ex.id).decision["results"][0]["outcome"] == "ALLOW"
    finally:
        ledger.close()


_keys = st.text(max_size=8)
_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
            | st.floats(allow_nan=False, allow_infinity=False) | st.uuids()
            | st.datetimes(timezones=st.just(timezone.utc)) | st.decimals(allow_nan=False, allow_infinity=False))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
                       max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_any_state_round_trips_the_same_through_either(state):
    expected = PLAIN.decode(PLAIN.encode(state))
    assert FAST.decode(FAST.encode(state)) == expected
    assert PLAIN.decode(FAST.encode(state)) == expected
    assert FAST.decode(PLAIN.encode(state)) == expected


def test_typed_values_anywhere():
    u = UUID("12345678-1234-5678-1234-567812345678")
    now = datetime_now_with_tzinfo()
    state = {"timestamp": now, "id": u, "nested": {"at": now, "ids": [u, {"d": Decimal("1.50")}]},
             "text": "_type_", "fake": {"_type_": "x", "_data_": 1, "extra": 2}}
    encoded = FAST.encode(state)
    assert encoded == PLAIN.encode(state)
    assert FAST.decode(encoded) == PLAIN.decode(encoded) == state


def test_errors_are_the_plain_transcoders():
    with pytest.raises(TranscodingNotRegisteredError):
        FAST.encode({"x": object()})
    unknown = b'{"timestamp":{"_type_":"nope","_data_":"1"}}'
    with pytest.raises(TranscodingNotRegisteredError):
        FAST.decode(unknown)
    assert FAST.decode(b'{"x":NaN}') == PLAIN.decode(b'{"x":NaN}')


_uuid_like = st.text(alphabet='0123456789abcdefABCDEF-"x', max_size=80)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_uuid_like | st.uuids().map(lambda u: f'"{u}"') | st.binary(max_size=40).map(lambda b: b.hex()),
                max_size=6))
def test_the_uuid_shape_is_found_where_the_regular_expression_finds_it(parts):
    # The encoder looks for str(uuid)'s shape by its tail, byte classes and a substring, not the regular expression.
    from ledger.transcoder import _UUID_STRING, _uuid_shaped

    for data in ("".join(parts).encode(), "-".join(parts).encode(), '"'.join(parts).encode()):
        assert _uuid_shaped(data) == (_UUID_STRING.search(data) is not None)


def test_the_uuid_shape_at_the_edges():
    from ledger.transcoder import _UUID_STRING, _uuid_shaped

    u = '"12345678-1234-5678-1234-567812345678"'
    for data in (u, "x" + u, u + "x", u.upper(), u.replace("-", "_"), u[:-1], u[1:], u.replace("8", "g", 1),
                 u[:10] + "\u00e6" + u[11:], "\u00e6" + u, u.replace("1", "\u0661", 1)):
        raw = data.encode()
        assert _uuid_shaped(raw) == (_UUID_STRING.search(raw) is not None), data
