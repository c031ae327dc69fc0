"""Shared fixtures: the real embedded broker, and ledgers on SQLite and on PostgreSQL.

Every ledger test runs on both backends. A test session creates its own
PostgreSQL database (dropped at the end), and each test gets its own schema in
it, so runs and tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import psycopg
import pytest

from services.broker import EmbeddedBroker
from services.config import Settings

# The test suite is development: public secrets and the development key set, unless a test
# says production itself (Settings.from_env(env=...), or the env of a CLI run or a subprocess).
os.environ["XLEDGER_ENV"] = "development"

PG_ADMIN_URL = os.environ.get("XLEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_conninfo(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"xltest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for the ledger tests ({PG_ADMIN_URL}): {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.sqlite"
    dbname = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_conninfo(dbname), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{_pg_conninfo(dbname)}?schema={schema}"


@pytest.fixture(scope="session", autouse=True)
def _logging_on_the_session_stream() -> None:
    # structlog binds the stream it is first configured with. Configured inside a CliRunner, that
    # would be the runner's stream, closed after the command, and later log lines would fail.
    from services import logging as xlog

    xlog.configure()


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker().start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def settings(broker: EmbeddedBroker, ledger_url: str) -> Settings:
    return Settings.development(ledger_url=ledger_url).with_embedded_broker(broker.bootstrap)


def pytest_collection_modifyitems(config, items):
    """``slow`` tests (the full-size fault run) run only with XLEDGER_SLOW=1."""
    if os.environ.get("XLEDGER_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="full-size run: set XLEDGER_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
