"""MemoPartitioner must put every key on the partition kafka-python's default partitioner picks."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from kafka.partitioner import DefaultPartitioner

from services.kafka import MemoPartitioner


class Cluster:
    """ClusterMetadata's three read calls the partitioners use (unit test stand-in)."""

    def __init__(self, partitions: int):
        self.parts = set(range(partitions))

    def topics(self):
        return {"inbox.kommune.326"}

    def partitions_for_topic(self, topic):
        return self.parts

    def available_partitions_for_topic(self, topic):
        return self.parts


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=0, max_size=80), partitions=st.integers(1, 64))
def test_same_partition_as_the_default(key, partitions):
    cluster = Cluster(partitions)
    args = ("inbox.kommune.326", key, key, b"v", b"v", cluster)
    assert MemoPartitioner().partition(*args) == DefaultPartitioner().partition(*args)
    assert MemoPartitioner().partition(*args) == DefaultPartitioner().partition(*args)  # and when remembered


def test_an_unknown_topic_is_refused_like_the_default():
    import pytest

    with pytest.raises(ValueError, match="not found"):
        MemoPartitioner().partition("nope", b"k", b"k", b"v", b"v", Cluster(1))
