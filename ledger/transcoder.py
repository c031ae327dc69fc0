"""eventsourcing's JSON transcoder with orjson underneath: the same stored bytes, the same objects back.

Every ledger event is JSON-encoded by the gate and the relay and decoded again by the relay, the
read models and the auditors' tools; the standard library's encoder was ~9 % of the gate's CPU
and its decoder ~20 % of the relay's (py-spy, bench/README.md). This transcoder writes what
``eventsourcing.persistence.JSONTranscoder`` writes (compact separators, UTF-8, custom types as
``{"_type_": name, "_data_": ...}``), so old rows and new rows read alike, by this code and by
the plain one, and falls back to the plain one wherever orjson would not give the same result:

* encoding: orjson writes ``uuid.UUID`` as a bare string, where eventsourcing writes a typed
  ``uuid_hex`` object. When the output holds a string shaped like a UUID (message ids often
  are), the object is searched for a ``uuid.UUID``, and if it holds one, the plain encoder
  encodes it. datetimes, dataclasses and subclasses of built-in types are handed to the
  registered transcodings, as the plain encoder does. An object nothing can encode raises the
  plain encoder's error.
* decoding: orjson reads integers beyond 64 bits as floats, so what it read is written back and
  compared with the input; anything that does not come back byte for byte (such an integer, an
  escaped character, another form of a float), and anything orjson refuses (NaN), is decoded
  by the plain decoder. orjson has no object hook: the typed objects are counted in the bytes,
  and when they are all values of the top-level object (an event's ``timestamp``, nearly always
  the only one) they are converted there; otherwise the plain decoder decodes the whole text.

Not the same: a non-finite float, which JSON cannot hold, is written as ``null`` instead of the
plain encoder's non-standard ``NaN``; no ledger event carries a float.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder
from eventsourcing.utils import resolve_topic

_ENCODE_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
# How orjson writes a uuid.UUID (str(uuid)): seen anywhere in the output, the plain encoder decides.
_UUID_STRING = re.compile(rb'"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')
# The same search without the regular expression, which tries every quote of the output (~4 us for
# a gate's RequestDecided event): each byte translated to its class in that pattern (a lower-case hex
# digit to "h", "-" and '"' to themselves, anything else to "x"), then the pattern's class sequence
# looked for as a plain substring. Found exactly where _UUID_STRING matches (tests/ledger/test_transcoder.py).
_UUID_CLASSES = bytes(ord("h") if c in b"0123456789abcdef" else c if c in b'-"' else ord("x") for c in range(256))
_UUID_SHAPE = b'"hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh"'
# What every such string holds from its first dash on: looked for first, with a regular expression
# whose leading literal lets it skip to each dash. A gate's RequestDecided event (~5 KB, most of it
# its sealed message, base64 without a dash) holds none: 2.3 µs instead of the translation's 3.2.
_UUID_TAIL = re.compile(rb'-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"').search
_TYPED = b'"_type_"'


class OrjsonTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        try:
            data = orjson.dumps(obj, default=self._encode_obj, option=_ENCODE_OPTIONS)
        except (orjson.JSONEncodeError, TypeError):
            return super().encode(obj)  # raises the plain encoder's error, or encodes what orjson cannot
        if _uuid_shaped(data) and _holds_uuid(obj):
            return super().encode(obj)
        return data

    def decode(self, data: bytes) -> Any:
        typed = data.count(_TYPED)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return super().decode(data)
        # orjson reads an integer beyond 64 bits as a float, silently. Written back, such a value
        # (or anything orjson would write otherwise: an escape, a float's form, a repeated key)
        # differs from the input: then the plain decoder reads it. What does not differ was read
        # exactly as the plain decoder reads it.
        if orjson.dumps(obj) != data:
            return super().decode(data)
        if not typed:
            return obj
        if type(obj) is dict:
            names = self.names
            for key, value in obj.items():
                if (type(value) is dict and len(value) == 2 and "_type_" in value and "_data_" in value
                        and value["_type_"] in names):
                    obj[key] = names[value["_type_"]].decode(value["_data_"])
                    typed -= 1
            if not typed:
                return obj
        # Typed objects nested deeper (or unknown names, which the plain decoder reports): decode as it does.
        return super().decode(data)


def _uuid_shaped(data: bytes) -> bool:
    """Whether ``data`` holds a string shaped as orjson writes a ``uuid.UUID`` (``_UUID_STRING``)."""
    return _UUID_TAIL(data) is not None and _UUID_SHAPE in data.translate(_UUID_CLASSES)


def _holds_uuid(obj: Any) -> bool:
    kind = type(obj)
    if kind is UUID:
        return True
    if kind is dict:
        obj = obj.values()
    elif kind is not list and kind is not tuple:
        return False
    for value in obj:
        kind = type(value)
        if (kind is dict or kind is list or kind is tuple or kind is UUID) and _holds_uuid(value):
            return True
    return False


# How the ledger's events store their timestamp (eventsourcing's DatetimeAsISO): the one typed
# object an event of this ledger holds.
_DATETIME = "datetime_iso"


def event_state(mapper: Any, stored: Any, *, traces: bool = True) -> dict[str, Any]:
    """The attributes of a stored event as ``mapper.to_domain_event(stored).__dict__`` holds them,
    without building the event, except ``timestamp``: the ISO text it is stored as
    (``DatetimeAsISO`` writes ``datetime.isoformat()``, which ``fromisoformat`` reads back to the
    same text).

    For the relay and the read models, which decode every event once: orjson alone reads it when
    the event holds no typed object but its timestamp, no cipher or compressor is configured, the
    event class has no upcasting (``class_version``), and what orjson read, written back, gives the
    stored bytes again (as ``OrjsonTranscoder.decode`` checks): an integer beyond 64 bits, which
    orjson reads as a float, does not. Then orjson read what the plain decoder reads. The check
    written back costs less than looking for long runs of digits in the stored bytes did (a copy
    of every event, its sealed message included, and a search of it). Anything else goes through
    ``mapper.to_domain_event``, as before.

    With ``traces=False`` every list that is the value of a key ``"trace"`` is read as an empty list
    (a decision's per-recipient policy trace: ~half of a RequestDecided event's bytes and most of its
    objects, which neither the relay nor the read models read). Where the stored bytes allow an exact
    cut (``_without_traces``), those lists are not decoded at all; otherwise the event is read whole
    and they are emptied afterwards, so the result is the same either way. The content cut out is not
    read, so bytes that are not JSON inside a trace (written into the store by hand, never by the
    gate's encoder) pass here; ``verify`` finds such a change by the Merkle tree, and ``audit`` and
    ``replay`` read the traces whole.
    """
    data = stored.state
    if (mapper.cipher is None and mapper.compressor is None and type(data) is bytes
            and (traces or (data := _without_traces(data)) is not None)
            and data.count(_TYPED) == 1 and _plain_class(stored.topic)):
        try:
            state = orjson.loads(data)
            # orjson writes back at most 254 levels deep, which it reads: deeper goes the plain way.
            same = type(state) is dict and orjson.dumps(state) == data
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            same = False
        if same:
            ts = state.get("timestamp")
            if type(ts) is dict and len(ts) == 2 and ts.get("_type_") == _DATETIME and type(ts.get("_data_")) is str:
                state["timestamp"] = ts["_data_"]
                state["originator_id"] = stored.originator_id
                state["originator_version"] = stored.originator_version
                return state
    event = mapper.to_domain_event(stored)
    state = dict(vars(event))
    state["timestamp"] = event.timestamp.isoformat()
    if not traces:
        # The event object is this call's own: its nested values may be changed in place.
        _empty_traces(state)
    return state


_TRACE = b'"trace":['


def _without_traces(data: bytes) -> bytes | None:
    """``data`` with the content of every array under a key ``"trace"`` cut out (``"trace":[]``), or
    None when it cannot be cut exactly without parsing (then the caller reads the event whole).

    Exact without a parser because the bytes hold no backslash, so every ``"`` opens or closes a
    string. A cut starts just after a ``"trace":[`` and ends at the first ``]`` after it that an even
    number of ``"`` precede within the cut (so, like the ``[``, outside any string), with no ``[``
    in the cut at all (no nested array: None). Were that ``"`` of ``"trace"`` a string's closing
    quote instead of an opening one, what is left would hold a string followed by ``trace`` and
    not parse: read whole. What is left is checked as every event is (read by orjson, written
    again, compared byte for byte); the cut-out content is not read, nor checked to be JSON."""
    at = data.find(_TRACE)
    if at < 0:
        return data
    if b"\\" in data:
        return None
    pieces: list[bytes] = []
    kept = 0  # data[kept:] is not yet in pieces
    while at >= 0:
        start = at + len(_TRACE)
        end = data.find(b"]", start)
        while end >= 0 and data.count(b'"', start, end) % 2:
            end = data.find(b"]", end + 1)
        if end < 0 or data.find(b"[", start, end) >= 0:
            return None
        pieces.append(data[kept:start])
        kept = end
        at = data.find(_TRACE, end)
    pieces.append(data[kept:])
    return b"".join(pieces)


def _empty_traces(obj: Any) -> None:
    """Every list under a key ``"trace"`` in ``obj``'s dicts and lists, at any depth, emptied in place."""
    if type(obj) is dict:
        for key, value in obj.items():
            if key == "trace" and type(value) is list:
                obj[key] = []
            elif isinstance(value, (dict, list)):
                _empty_traces(value)
    elif type(obj) is list:
        for value in obj:
            if isinstance(value, (dict, list)):
                _empty_traces(value)


_PLAIN: dict[str, bool] = {}


def _plain_class(topic: str) -> bool:
    """Whether the event class of ``topic`` reads its stored state as is (no upcasting)."""
    plain = _PLAIN.get(topic)
    if plain is None:
        plain = _PLAIN[topic] = getattr(resolve_topic(topic), "class_version", 1) == 1
    return plain
