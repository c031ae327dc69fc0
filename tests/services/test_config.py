"""Settings round-trip through XLEDGER_* variables, so child processes get exactly the parent's settings."""

from __future__ import annotations

import pytest

from services.config import ConfigError, Settings


def test_to_env_is_the_inverse_of_from_env():
    settings = Settings.from_env(env={"XLEDGER_ENV": "development"}, ledger_url="sqlite:///x.sqlite").with_embedded_broker("127.0.0.1:1234")
    env = settings.to_env()
    assert env["XLEDGER_BOOTSTRAP_SERVERS"] == "127.0.0.1:1234" and env["XLEDGER_SESSION_TIMEOUT_MS"] == "2000"
    assert Settings.from_env(env=env) == settings


def test_a_malformed_number_names_the_variable():
    with pytest.raises(ConfigError, match="XLEDGER_MAX_POLL_RECORDS must be an integer"):
        Settings.from_env(env={"XLEDGER_MAX_POLL_RECORDS": "many"})


def test_the_connect_timeout_is_at_least_a_second_and_reaches_the_kafka_clients():
    from services.kafka import client_config

    with pytest.raises(ConfigError, match="XLEDGER_CONNECT_TIMEOUT"):
        Settings.from_env(env={"XLEDGER_CONNECT_TIMEOUT": "0"})
    settings = Settings.from_env(env={"XLEDGER_CONNECT_TIMEOUT": "7", "XLEDGER_BOOTSTRAP_SERVERS": "k:9092"})
    assert client_config(settings)["bootstrap_timeout_ms"] == 7000
