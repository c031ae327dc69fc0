"""kafka-python clients built from Settings, identical for the embedded broker and production Kafka."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2

from services.config import ConfigError, Settings


def client_config(settings: Settings) -> dict[str, Any]:
    """The connection and security settings every client gets; raises ConfigError for an incomplete SASL set-up."""
    _check_security(settings)
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "security_protocol": settings.security_protocol,
        # A client first reaches the cluster in its constructor: fail there within the
        # configured time (kafka-python waits 30 s by default).
        "bootstrap_timeout_ms": settings.connect_timeout * 1000,
    }
    if settings.sasl_mechanism:
        cfg.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username or None,
            sasl_plain_password=settings.sasl_password or None,
        )
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(settings, name):
            cfg[name] = getattr(settings, name)
    return cfg


def _check_security(settings: Settings) -> None:
    # kafka-python accepts these half-set and fails later, at the broker, with a less clear error.
    sasl = settings.security_protocol.upper().startswith("SASL_")
    if sasl and not settings.sasl_mechanism:
        raise ConfigError(f"XLEDGER_SECURITY_PROTOCOL={settings.security_protocol} needs XLEDGER_SASL_MECHANISM "
                          "(e.g. SCRAM-SHA-512)")
    if settings.sasl_mechanism and not sasl:
        raise ConfigError(f"XLEDGER_SASL_MECHANISM is set but XLEDGER_SECURITY_PROTOCOL={settings.security_protocol} "
                          "does not use SASL (SASL_SSL or SASL_PLAINTEXT)")
    if settings.sasl_mechanism.upper() in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        missing = [name for name, value in (("XLEDGER_SASL_USERNAME", settings.sasl_username),
                                            ("XLEDGER_SASL_PASSWORD", settings.sasl_password)) if not value]
        if missing:
            raise ConfigError(f"XLEDGER_SASL_MECHANISM={settings.sasl_mechanism} needs {' and '.join(missing)}")


class MemoPartitioner(DefaultPartitioner):
    """Kafka's default key partitioning, with the key's murmur2 hash remembered.

    Records are keyed by subject pseudonym, so the same few keys recur; kafka-python's
    murmur2 is pure Python and was ~4 % of the relay (bench/). Same partitions as the default.
    """

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        if topic not in cluster.topics():
            raise ValueError("Topic %s not found in ClusterMetadata" % (topic,))
        all_partitions = sorted(cluster.partitions_for_topic(topic))
        return all_partitions[(_murmur2(bytes(serialized_key)) & 0x7FFFFFFF) % len(all_partitions)]


@lru_cache(maxsize=65536)
def _murmur2(key: bytes) -> int:
    return murmur2(key)


def producer_config(settings: Settings) -> dict[str, Any]:
    # acks=all with the idempotent producer (kafka-python's default, made explicit): a write counts
    # once min.insync.replicas copies hold it, and a retried batch is never written twice.
    # Lingering batches lift throughput ~2x (bench/).
    return {**client_config(settings), "acks": "all", "enable_idempotence": True, "linger_ms": 10,
            "batch_size": 262144, "partitioner": MemoPartitioner()}


def consumer_config(settings: Settings, group_id: str | None) -> dict[str, Any]:
    return {
        **client_config(settings),
        "group_id": group_id,
        # Offsets of record live in the ledger; Kafka's own commits are only informational.
        "enable_auto_commit": False,
        "allow_auto_create_topics": False,
        # 'latest' is wrong on the embedded broker; every reader seeks explicitly anyway.
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "max_poll_records": settings.max_poll_records,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    return KafkaProducer(**{**producer_config(settings), **overrides})


def make_consumer(settings: Settings, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    return KafkaConsumer(**{**consumer_config(settings, group_id), **overrides})


def make_admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**{**client_config(settings), **overrides})


def create_topics(admin: KafkaAdminClient, names: list[str], partitions: int, *, replication_factor: int = 1,
                  min_insync_replicas: int = 1, configs: dict[str, str] | None = None) -> list[str]:
    """Creates the topics of ``names`` that do not exist yet; returns the names it created.

    Existing topics are left as they are (Kafka cannot change a topic's replication in place).
    """
    if not 1 <= min_insync_replicas <= replication_factor:
        raise ValueError(f"min.insync.replicas ({min_insync_replicas}) must be between 1 and the replication "
                         f"factor ({replication_factor})")
    existing = set(admin.list_topics())
    missing = [n for n in names if n not in existing]
    if missing:
        spec = {"num_partitions": partitions, "replication_factor": replication_factor,
                "configs": {"min.insync.replicas": str(min_insync_replicas), **(configs or {})}}
        try:
            admin.create_topics({name: spec for name in missing})
        except TopicAlreadyExistsError:
            pass  # another process created them meanwhile
    return missing
