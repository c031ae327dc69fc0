"""Configuration: environment variables with the XLEDGER_ prefix; CLI flags override them.

Embedded defaults (no XLEDGER_BOOTSTRAP_SERVERS) start the in-memory test broker
and a SQLite ledger under ./var/. The development secrets below are public and
exist so the embedded demo runs with no set-up; a production deployment must set
its own (``Settings.require_production_secrets`` refuses the dev ones there).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

PREFIX = "XLEDGER_"

# Public, development-only secrets derived from a fixed label.
DEV_PSEUDONYM_SECRET = hashlib.sha256(b"exchange-ledger dev pseudonym secret").hexdigest()
DEV_MASTER_KEY = base64.b64encode(hashlib.sha256(b"exchange-ledger dev master key").digest()).decode()
# Raw 32-byte Ed25519 private key (base64) that signs ledger checkpoints.
DEV_CHECKPOINT_KEY = base64.b64encode(hashlib.sha256(b"exchange-ledger dev checkpoint key").digest()).decode()


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = ""
    ledger_url: str = "sqlite:///var/ledger.sqlite"
    group_id: str = "xledger-gate"
    # Kafka client security for production brokers; passed through to kafka-python unchanged.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    # Group timing: fast values suit the embedded broker (see shared/kafka-notes.md).
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 3000
    max_poll_interval_ms: int = 300000
    max_poll_records: int = 500
    fetch_max_wait_ms: int = 500
    # Copies of every topic and how many must hold a write before it counts (with acks=all).
    # A single-node broker (the embedded one, a one-node compose) needs 1 and 1.
    replication_factor: int = 3
    min_insync_replicas: int = 2
    pseudonym_secret: str = field(default=DEV_PSEUDONYM_SECRET, repr=False)
    master_key: str = field(default=DEV_MASTER_KEY, repr=False)
    checkpoint_key: str = field(default=DEV_CHECKPOINT_KEY, repr=False)
    ledger_origin: str = "exchange-ledger/dev"
    checkpoint_interval: int = 1000
    # A file of retired checkpoint keys with the tree sizes each signed (ledger.checkpoint.parse_key_history).
    checkpoint_key_history: str = ""
    # Witnesses that cosign the log's checkpoints: '<vkey>@<url>' entries, comma or space separated.
    witnesses: str = ""
    witness_timeout_ms: int = 2000
    cosign_retry_ms: int = 10000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The XLEDGER_* variables that make ``from_env`` return these settings (for child processes)."""
        return {PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    @property
    def embedded(self) -> bool:
        return not self.bootstrap_servers

    def with_embedded_broker(self, bootstrap: str) -> "Settings":
        # Values measured on the embedded broker: first join ~1 s instead of ~23 s.
        return replace(
            self,
            bootstrap_servers=bootstrap,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
            max_poll_interval_ms=10000,
            # Tansu sometimes holds a fetch for the whole wait although records are there
            # (a 5k-record read took 0.08 s or 0.56 s at 500 ms); a short wait bounds that stall.
            fetch_max_wait_ms=50,
            replication_factor=1,
            min_insync_replicas=1,
        )

    def require_production_secrets(self) -> None:
        dev = (DEV_PSEUDONYM_SECRET, DEV_MASTER_KEY, DEV_CHECKPOINT_KEY)
        if {self.pseudonym_secret, self.master_key, self.checkpoint_key} & set(dev):
            raise ConfigError(
                "XLEDGER_PSEUDONYM_SECRET, XLEDGER_MASTER_KEY and XLEDGER_CHECKPOINT_KEY must be set to deployment secrets "
                "when running against an external broker"
            )


def _coerce(name: str, typ: Any, raw: str) -> Any:
    if typ in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name.upper()} must be an integer, got {raw!r}") from None
    return raw
