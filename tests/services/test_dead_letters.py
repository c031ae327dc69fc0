"""Unit tests of the dead-letter sender: records too large are cut, any other refusal is raised, never swallowed.

The producer here is a stand-in that refuses the way kafka-python does (the real broker does
not enforce a size limit, see tests/adversarial for the real thing).
"""

from __future__ import annotations

import hashlib

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, TopicAuthorizationFailedError
from kafka.future import Future

from ledger.domain import RejectedMessage
from services.dead_letters import CUT_TO, KEY_CUT_TO, DeadLetters, DeadLetterUnavailable, dead_letter_headers


def rejection(value: bytes, offset: int = 7) -> RejectedMessage:
    return RejectedMessage(source={"topic": "exchange.requests", "partition": 1, "offset": offset}, reason="BAD_MARKER",
                           detail="dk.xledger.SignedMessage: expected marker", size=len(value),
                           message_digest="sha256:" + hashlib.sha256(value).hexdigest())


class Answered(Future):
    """A produce future already answered, with kafka-python's ``get``."""

    def get(self, timeout=None):
        if self.failed():
            raise self.exception
        return self.value


class RefusingProducer:
    """Refuses like kafka-python: ``send`` raises over ``limit``; the broker answers with ``broker_error``."""

    def __init__(self, limit: int = 1_048_576, broker_error: Exception | None = None, broker_limit: int | None = None):
        self.limit, self.broker_error, self.broker_limit = limit, broker_error, broker_limit
        self.stored: list[dict] = []

    def send(self, topic, key=None, value=None, headers=None):
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v) for k, v in headers or [])
        if size > self.limit:
            raise MessageSizeTooLargeError(f"The message is {size} bytes")
        future = Answered()
        if self.broker_error is not None:
            future.failure(self.broker_error)
        elif self.broker_limit is not None and size > self.broker_limit:
            future.failure(MessageSizeTooLargeError())
        else:
            self.stored.append({"topic": topic, "key": key, "value": value, "headers": dict(headers)})
            future.success(None)
        return future

    def flush(self, timeout=None):
        pass


def test_a_record_that_fits_goes_unchanged_with_digest_and_size():
    producer = RefusingProducer()
    value = b"\xc3\x01 not really avro"
    assert DeadLetters(producer).publish([(rejection(value), b"k", value)]) == 0
    [stored] = producer.stored
    assert (stored["key"], stored["value"]) == (b"k", value)
    assert stored["headers"]["x-message-digest"] == ("sha256:" + hashlib.sha256(value).hexdigest()).encode()
    assert stored["headers"]["x-original-size"] == str(len(value)).encode()
    assert "x-cut" not in stored["headers"]


def test_a_record_the_producer_refuses_as_too_large_is_cut_and_says_so():
    producer = RefusingProducer()
    value, key = bytes(range(256)) * 4096, b"K" * 5000  # 1 MiB value, 5 kB key
    assert DeadLetters(producer).publish([(rejection(value), key, value)]) == 1
    [stored] = producer.stored
    assert stored["value"] == value[:CUT_TO] and stored["key"] == key[:KEY_CUT_TO]
    headers = stored["headers"]
    assert headers["x-cut"] == b"key,value"
    assert headers["x-original-size"] == str(len(value)).encode()
    assert headers["x-message-digest"] == ("sha256:" + hashlib.sha256(value).hexdigest()).encode()
    assert (headers["x-source-partition"], headers["x-source-offset"]) == (b"1", b"7")


def test_a_record_the_broker_refuses_as_too_large_is_sent_again_cut():
    producer = RefusingProducer(broker_limit=200_000)
    small, large = b"x" * 100, b"y" * 300_000
    assert DeadLetters(producer).publish([(rejection(small, 1), None, small), (rejection(large, 2), None, large)]) == 1
    assert [s["value"] for s in producer.stored] == [small, large[:CUT_TO]]
    assert producer.stored[1]["headers"]["x-cut"] == b"value"


@pytest.mark.parametrize("error", [KafkaTimeoutError(), TopicAuthorizationFailedError()], ids=["timeout", "denied"])
def test_any_other_refusal_is_raised_so_the_batch_is_not_recorded(error):
    with pytest.raises(DeadLetterUnavailable):
        DeadLetters(RefusingProducer(broker_error=error)).publish([(rejection(b"v"), None, b"v")])


def test_a_broker_that_refuses_even_the_cut_record_is_raised():
    with pytest.raises(DeadLetterUnavailable):
        DeadLetters(RefusingProducer(broker_limit=1000)).publish([(rejection(b"z" * 200_000), None, b"z" * 200_000)])


def test_the_detail_header_is_bounded_and_always_utf8():
    r = rejection(b"v")
    r.detail = "æ" * 5000 + "\udcff"
    detail = dict(dead_letter_headers(r))["x-error-detail"]
    assert len(detail) <= 2000
    detail.decode("utf-8")  # cut on a character boundary


def test_the_asyncapi_document_names_the_same_cut_sizes():
    from schemas import asyncapi

    assert (asyncapi.DEAD_LETTER_CUT_TO, asyncapi.DEAD_LETTER_KEY_CUT_TO) == (CUT_TO, KEY_CUT_TO)
    headers = {name for name, _ in dead_letter_headers(rejection(b"v"), ("value",))}
    documented = asyncapi.build()["components"]["messages"]["DeadLetter"]["headers"]["properties"]
    assert headers == set(documented)
