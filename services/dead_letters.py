"""The dead-letter topic: every rejected message goes there once, whatever its size.

A record the gate can read may still be too large to write back: the sender's producer,
or broker, may allow more than ours, and the headers add a few hundred bytes. Such a
record is *cut*: the value keeps its first ``CUT_TO`` bytes, the key its first
``KEY_CUT_TO``, and the headers carry the original's digest and size and say what was
cut. The ledger's ``RejectedMessage`` always holds the same digest, size and source
position, so an auditor can match the two.

``publish`` returns only when the broker has stored every record. Anything else raises
``DeadLetterUnavailable``: the gate records nothing for the batch and tries it again
later, so a rejection is never recorded without its dead letter.
"""

from __future__ import annotations

from typing import Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from services import topics
from services.logging import get_logger

log = get_logger(__name__)

# What stays of a value or key that does not fit: enough to see what it was.
CUT_TO = 64 * 1024
KEY_CUT_TO = 1024
DETAIL_MAX_BYTES = 2000
# The producer's own check and the broker's answer for a record over the limit.
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class DeadLetterUnavailable(Exception):
    """The dead-letter topic did not store a record; nothing of the batch may be recorded yet."""


class Rejection(Protocol):
    source: dict
    reason: str
    detail: str
    message_digest: str
    size: int


def dead_letter_headers(rejected: Rejection, cut: tuple[str, ...] = ()) -> list[tuple[str, bytes]]:
    s = rejected.source
    headers = [
        ("x-error-reason", rejected.reason.encode()),
        ("x-error-detail", _utf8_prefix(rejected.detail, DETAIL_MAX_BYTES)),
        ("x-source-topic", s["topic"].encode()),
        ("x-source-partition", str(s["partition"]).encode()),
        ("x-source-offset", str(s["offset"]).encode()),
        ("x-message-digest", rejected.message_digest.encode()),
        ("x-original-size", str(rejected.size).encode()),
    ]
    if cut:
        headers.append(("x-cut", ",".join(cut).encode()))
    return headers


def _utf8_prefix(text: str, limit: int) -> bytes:
    # Cut on a character boundary, and never fail on text that is not valid UTF-8.
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore").encode()


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str = topics.DEAD_LETTERS, *, timeout_s: float = 30.0):
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def publish(self, letters: list[tuple[Rejection, bytes | None, bytes]]) -> int:
        """Sends (rejection, key, value) triples and waits until each is stored; returns how many were cut."""
        if not letters:
            return 0
        sent = [(letter, *self._send(*letter)) for letter in letters]
        try:
            self.producer.flush(timeout=self.timeout_s)
        except KafkaError as exc:
            raise DeadLetterUnavailable(f"flush: {type(exc).__name__}") from exc
        cut_count = 0
        for letter, future, cut in sent:
            try:
                future.get(timeout=self.timeout_s)
            except TOO_LARGE:
                # The broker's limit is below the producer's: cut the record, if that makes it smaller.
                if cut or not _cut_parts(*letter[1:]):
                    raise DeadLetterUnavailable("the broker refuses the record even cut") from None
                future, cut = self._send_cut(*letter)
                try:
                    future.get(timeout=self.timeout_s)
                except KafkaError as exc:
                    raise DeadLetterUnavailable(f"cut record: {type(exc).__name__}") from exc
            except KafkaError as exc:
                raise DeadLetterUnavailable(type(exc).__name__) from exc
            cut_count += bool(cut)
        return cut_count

    def _send(self, rejected: Rejection, key: bytes | None, value: bytes):
        try:
            return self.producer.send(self.topic, key=key, value=value, headers=dead_letter_headers(rejected)), ()
        except TOO_LARGE:
            if not _cut_parts(key, value):
                raise DeadLetterUnavailable("the producer refuses the record even cut") from None
            return self._send_cut(rejected, key, value)
        except KafkaError as exc:  # e.g. no metadata for the topic within max_block_ms
            raise DeadLetterUnavailable(type(exc).__name__) from exc

    def _send_cut(self, rejected: Rejection, key: bytes | None, value: bytes):
        cut = _cut_parts(key, value)
        log.warning("gate.dead_letter_cut", reason=rejected.reason, size=rejected.size, cut=",".join(cut),
                    **rejected.source)
        try:
            future = self.producer.send(self.topic, key=None if key is None else key[:KEY_CUT_TO],
                                        value=value[:CUT_TO], headers=dead_letter_headers(rejected, cut))
        except KafkaError as exc:
            raise DeadLetterUnavailable(f"cut record: {type(exc).__name__}") from exc
        return future, cut


def _cut_parts(key: bytes | None, value: bytes) -> tuple[str, ...]:
    """What cutting would shorten: ("key", "value"), one of them, or nothing."""
    return tuple(part for part, data, limit in (("key", key, KEY_CUT_TO), ("value", value, CUT_TO))
                 if data is not None and len(data) > limit)
