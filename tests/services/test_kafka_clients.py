"""Kafka client settings: security reaches every kafka-python client, producers are acks=all and
idempotent, and topics get replication factor 3 with min.insync.replicas=2 on real Kafka.

The embedded broker has no SASL or TLS, so these check what the clients are given (real
kafka-python producers and consumers, built without connecting; the admin client connects in its
constructor, so a recording stand-in takes its place), plus one run on the embedded broker.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from services import kafka as kafka_clients
from services.cli import app
from services.config import ConfigError, Settings
from services.kafka import client_config, make_consumer, make_producer
from services.runtime import Runtime

SECURE = Settings(
    bootstrap_servers="kafka-1:9093,kafka-2:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
    sasl_username="kommune.326", sasl_password="s3cret-from-the-deployment", ssl_cafile="/run/secrets/ca.pem",
)
SECURITY_KEYS = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                 "sasl_plain_username": "kommune.326", "sasl_plain_password": "s3cret-from-the-deployment",
                 "ssl_cafile": "/run/secrets/ca.pem", "bootstrap_servers": ["kafka-1:9093", "kafka-2:9093"]}

NO_CONNECT = {"api_version": (3, 9)}  # kafka-python then builds the client without asking a broker


def test_security_settings_reach_the_producer():
    producer = make_producer(SECURE, **NO_CONNECT)
    try:
        assert {k: producer.config[k] for k in SECURITY_KEYS} == SECURITY_KEYS
    finally:
        producer.close(timeout=0)


def test_security_settings_reach_the_consumer():
    consumer = make_consumer(SECURE, "kommune.326", **NO_CONNECT)
    try:
        assert {k: consumer.config[k] for k in SECURITY_KEYS} == SECURITY_KEYS
    finally:
        consumer.close()


def test_security_settings_reach_the_admin_client(monkeypatch):
    seen = {}
    monkeypatch.setattr(kafka_clients, "KafkaAdminClient", lambda **config: seen.update(config) or object())
    kafka_clients.make_admin(SECURE)
    assert {k: seen[k] for k in SECURITY_KEYS} == SECURITY_KEYS


def test_producers_wait_for_all_in_sync_replicas_and_are_idempotent():
    producer = make_producer(Settings(bootstrap_servers="kafka:9092"), **NO_CONNECT)
    try:
        assert producer.config["acks"] == -1  # kafka-python's spelling of acks=all
        assert producer.config["enable_idempotence"] is True
    finally:
        producer.close(timeout=0)


@pytest.mark.parametrize("settings, message", [
    (Settings(security_protocol="SASL_SSL"), "XLEDGER_SECURITY_PROTOCOL=SASL_SSL needs XLEDGER_SASL_MECHANISM"),
    (Settings(sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p"),
     "XLEDGER_SASL_MECHANISM is set but XLEDGER_SECURITY_PROTOCOL=PLAINTEXT"),
    (Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512"),
     "needs XLEDGER_SASL_USERNAME and XLEDGER_SASL_PASSWORD"),
    (Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="xledger-gate"),
     "needs XLEDGER_SASL_PASSWORD"),
])
def test_an_incomplete_sasl_set_up_is_refused_by_name(settings, message):
    with pytest.raises(ConfigError, match=message):
        client_config(settings)


def test_a_service_with_an_incomplete_sasl_set_up_stops_with_one_line():
    result = CliRunner().invoke(app, ["relay", "run"], env={
        "XLEDGER_BOOTSTRAP_SERVERS": "kafka:9092", "XLEDGER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "XLEDGER_SASL_MECHANISM": "SCRAM-SHA-512", "XLEDGER_SASL_USERNAME": "xledger-relay"})
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: XLEDGER_SASL_MECHANISM=SCRAM-SHA-512 needs XLEDGER_SASL_PASSWORD"]


# -- topic durability -------------------------------------------------------------------------------------

class RecordingAdmin:
    def __init__(self, existing=()):
        self.existing = set(existing)
        self.created: dict[str, dict] = {}

    def list_topics(self):
        return sorted(self.existing)

    def create_topics(self, specs):
        self.created.update(specs)

    def close(self):
        pass


@pytest.fixture
def admin(monkeypatch):
    recording = RecordingAdmin(existing={"exchange.requests"})
    monkeypatch.setattr("services.runtime.make_admin", lambda settings: recording)
    return recording


def test_real_kafka_gets_three_replicas_and_two_in_sync_by_default(admin):
    Runtime(Settings.from_env(env={}, bootstrap_servers="kafka:9092")).create_topics(["kommune:326"])
    assert "exchange.requests" not in admin.created  # existing topics are left alone
    assert admin.created == {
        "exchange.requests.dlq": {"num_partitions": 4, "replication_factor": 3, "configs": {"min.insync.replicas": "2"}},
        "inbox.kommune.326": {"num_partitions": 1, "replication_factor": 3, "configs": {"min.insync.replicas": "2"}},
        "receipts.kommune.326": {"num_partitions": 1, "replication_factor": 3, "configs": {"min.insync.replicas": "2"}},
        "ledger.checkpoints": {"num_partitions": 1, "replication_factor": 3,
                               "configs": {"min.insync.replicas": "2", "cleanup.policy": "compact"}},
    }


def test_topics_create_takes_flags_and_environment(admin):
    runner = CliRunner()
    result = runner.invoke(app, ["topics", "create", "--bootstrap-servers", "kafka:9092", "--replication-factor", "5",
                                 "--min-insync-replicas", "3"])
    assert result.exit_code == 0, result.output
    assert "replication factor 5, min.insync.replicas 3" in result.output
    assert {(s["replication_factor"], s["configs"]["min.insync.replicas"]) for s in admin.created.values()} == {(5, "3")}
    # The dead-letter topic, two per authority and ledger.checkpoints; requests existed.
    assert len(admin.created) == 1 + 2 * 153 + 1

    admin.created.clear()
    result = runner.invoke(app, ["topics", "create", "--bootstrap-servers", "kafka:9092"],
                           env={"XLEDGER_REPLICATION_FACTOR": "1", "XLEDGER_MIN_INSYNC_REPLICAS": "1"})
    assert result.exit_code == 0, result.output
    assert {(s["replication_factor"], s["configs"]["min.insync.replicas"]) for s in admin.created.values()} == {(1, "1")}


def test_more_in_sync_replicas_than_copies_is_refused(admin):
    result = CliRunner().invoke(app, ["topics", "create", "--bootstrap-servers", "kafka:9092",
                                      "--replication-factor", "2", "--min-insync-replicas", "3"])
    assert result.exit_code == 2
    assert "--min-insync-replicas (3) cannot exceed --replication-factor (2)" in result.output
    assert admin.created == {}


def test_a_broker_refusing_the_topics_is_one_line(monkeypatch):
    from kafka.errors import InvalidReplicationFactorError

    class TooFewBrokers(RecordingAdmin):
        def create_topics(self, specs):
            raise InvalidReplicationFactorError("Replication factor: 3 larger than available brokers: 1.")

    monkeypatch.setattr("services.runtime.make_admin", lambda settings: TooFewBrokers())
    result = CliRunner().invoke(app, ["topics", "create", "--bootstrap-servers", "kafka:9092"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: topics not created: InvalidReplicationFactorError: [Error 38] InvalidReplicationFactorError: "
        "Replication factor: 3 larger than available brokers: 1."]


def test_the_embedded_broker_keeps_one_copy(broker):
    settings = Settings.from_env(env={}).with_embedded_broker(broker.bootstrap)
    assert (settings.replication_factor, settings.min_insync_replicas) == (1, 1)
    Runtime(settings).create_topics(["kommune:326"])
    admin = kafka_clients.make_admin(settings)
    try:
        described = admin.describe_topics(["exchange.requests", "inbox.kommune.326"])
    finally:
        admin.close()
    assert {t["name"] for t in described} == {"exchange.requests", "inbox.kommune.326"}
    assert all(len(p["replica_nodes"]) == 1 for t in described for p in t["partitions"])
