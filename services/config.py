"""Configuration: environment variables with the XLEDGER_ prefix; CLI flags override them.

Two modes, set by ``XLEDGER_ENV``: ``production`` (the default, so a deployment that
sets nothing can never run on public values) and ``development`` (the demo, the
embedded broker and the tests say so explicitly). The development secrets below are
public: they are derived from fixed labels so the embedded demo runs with no set-up.
In development a secret left unset takes its development value; in production it
stays empty, and ``Settings.problems`` names every secret a command needs that is
missing, malformed or public.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

PREFIX = "XLEDGER_"

DEVELOPMENT, PRODUCTION = "development", "production"
MODES = (DEVELOPMENT, PRODUCTION)

# Public, development-only secrets derived from a fixed label.
DEV_PSEUDONYM_SECRET = hashlib.sha256(b"exchange-ledger dev pseudonym secret").hexdigest()
DEV_MASTER_KEY = base64.b64encode(hashlib.sha256(b"exchange-ledger dev master key").digest()).decode()
# Raw 32-byte Ed25519 private key (base64) that signs ledger checkpoints.
DEV_CHECKPOINT_KEY = base64.b64encode(hashlib.sha256(b"exchange-ledger dev checkpoint key").digest()).decode()
DEV_SESSION_SECRET = hashlib.sha256(b"exchange-ledger dev session secret").hexdigest()

# Secrets that are HMAC keys: at least this many characters (256 bits of hex or 192 of base64).
MIN_SECRET_CHARS = 32

# The secrets a command may need, by Settings field. ``Settings.problems(*uses)`` checks these
# (and "keyset", which services.keyset checks because it needs the key set itself).
PSEUDONYM_SECRET, MASTER_KEY, CHECKPOINT_KEY, SESSION_SECRET, KEYSET = (
    "pseudonym_secret", "master_key", "checkpoint_key", "session_secret", "keyset")
_DEV_VALUES = {
    PSEUDONYM_SECRET: DEV_PSEUDONYM_SECRET,
    MASTER_KEY: DEV_MASTER_KEY,
    CHECKPOINT_KEY: DEV_CHECKPOINT_KEY,
    SESSION_SECRET: DEV_SESSION_SECRET,
}
# Secrets that may come from a mounted file (XLEDGER_<NAME>_FILE) and are read without surrounding
# whitespace either way: the Kafka password as well as the four above.
_SECRETS = (*_DEV_VALUES, "sasl_password")
# Field names whose variable is not simply PREFIX + NAME.
_VARIABLE = {"mode": "ENV"}


class ConfigError(ValueError):
    """Configuration that cannot be used; ``lines`` holds one line per offending setting."""

    def __init__(self, message: str | list[str]):
        self.lines = [message] if isinstance(message, str) else list(message)
        super().__init__("; ".join(self.lines))


def variable(name: str) -> str:
    """The environment variable of a Settings field, e.g. ``mode`` -> ``XLEDGER_ENV``."""
    return PREFIX + _VARIABLE.get(name, name.upper())


@dataclass(frozen=True)
class Settings:
    mode: str = PRODUCTION
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
    # Group timing: fast values suit the embedded broker (see docs/architecture.md, "Running it").
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 3000
    max_poll_interval_ms: int = 300000
    max_poll_records: int = 500
    fetch_max_wait_ms: int = 500
    # Copies of every topic and how many must hold a write before it counts (with acks=all).
    # A single-node broker (the embedded one, a one-node compose) needs 1 and 1.
    replication_factor: int = 3
    min_insync_replicas: int = 2
    # Secrets: empty means unset (development fills in the public development values).
    pseudonym_secret: str = field(default="", repr=False)
    # One or more base64 32-byte keys, comma-separated (ledger.master_keys: rotation).
    master_key: str = field(default="", repr=False)
    checkpoint_key: str = field(default="", repr=False)
    session_secret: str = field(default="", repr=False)
    # The authority key set: a YAML file or a directory of them (services/keyset.py).
    keyset: str = ""
    ledger_origin: str = "exchange-ledger/dev"
    checkpoint_interval: int = 1000
    # A file of retired checkpoint keys with the tree sizes each signed (ledger.checkpoint.parse_key_history).
    checkpoint_key_history: str = ""
    # Witnesses that cosign the log's checkpoints: '<vkey>@<url>' entries, comma or space separated.
    witnesses: str = ""
    witness_timeout_ms: int = 2000
    cosign_retry_ms: int = 10000
    # Seconds to reach the Kafka broker or the ledger database at start-up before giving up
    # with one line (exit 3); while running, the services wait outages out instead.
    connect_timeout: int = 5
    log_level: str = "INFO"
    # An escalation open longer than this is flagged in the escalation queue and its statistics.
    escalation_max_open_hours: int = 48

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{variable('mode')} must be development or production, got {self.mode!r}")
        if self.mode == DEVELOPMENT:
            for name, dev in _DEV_VALUES.items():
                if not getattr(self, name):
                    object.__setattr__(self, name, dev)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """From XLEDGER_* variables. A secret may instead come from a file named by XLEDGER_<NAME>_FILE
        (a mounted secret: Kubernetes, Vault agent, systemd credentials), so it never sits in the
        process environment."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(variable(f.name))
            if f.name in _SECRETS:
                # Stripped from the environment as from a file: a secret given with its newline to one
                # process and as a file to another must be the same key (the same pseudonyms).
                raw = _from_file(f.name, raw, env.get(variable(f.name) + "_FILE"))
                raw = None if raw is None else raw.strip()
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("mode"), str):
            values["mode"] = values["mode"].strip().lower() or PRODUCTION
        if values.get("connect_timeout", 1) < 1:
            raise ConfigError(f"{PREFIX}CONNECT_TIMEOUT must be a whole number of seconds, at least 1")
        return cls(**values)

    @classmethod
    def development(cls, **values: Any) -> "Settings":
        """Settings in development mode (demo, tests, benchmarks): public secrets filled in."""
        return cls(mode=DEVELOPMENT, **values)

    def to_env(self) -> dict[str, str]:
        """The XLEDGER_* variables that make ``from_env`` return these settings (for child processes)."""
        return {variable(f.name): str(getattr(self, f.name)) for f in fields(self)}

    @property
    def is_development(self) -> bool:
        return self.mode == DEVELOPMENT

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

    def problems(self, *uses: str) -> list[str]:
        """One line per secret in ``uses`` that this command cannot run with.

        Malformed values are problems in every mode; outside development a secret that is
        missing or equals a public development value is one too. "keyset" is skipped here:
        ``services.keyset.keyset_problems`` checks the key set, which it has to load.
        """
        lines: list[str] = []
        for name in uses:
            if name == KEYSET:
                continue
            value = getattr(self, name)
            var = variable(name)
            if not value:
                lines.append(f"{var} is not set; production (the default XLEDGER_ENV) needs the deployment's own value")
                continue
            problem = _CHECKS[name](value, self.mode)
            if problem:
                lines.append(f"{var} {problem}")
        return lines

    def require(self, *uses: str) -> None:
        """Raises ConfigError with one line per problem (``problems``)."""
        lines = self.problems(*uses)
        if lines:
            raise ConfigError(lines)


def _public(mode: str) -> str | None:
    return None if mode == DEVELOPMENT else "is the public development value; production needs the deployment's own"


def _check_hmac_secret(dev: str):
    def check(value: str, mode: str) -> str | None:
        if value.strip() == dev:
            return _public(mode)
        if len(value.strip()) < MIN_SECRET_CHARS:
            return f"is shorter than {MIN_SECRET_CHARS} characters"
        return None

    return check


def _check_master_key(value: str, mode: str) -> str | None:
    from ledger.subject_crypto import load_master_key, load_master_keys, master_key_id

    try:
        ring = load_master_keys(value)
    except ValueError as exc:
        return f"is malformed: {exc}"
    if master_key_id(load_master_key(DEV_MASTER_KEY)) in ring:
        return _public(mode) if len(ring.ids) == 1 else (None if mode == DEVELOPMENT else (
            "holds the public development key; rotate away from it in development mode "
            "(docs/production.md), then remove it"))
    return None


def _check_checkpoint_key(value: str, mode: str) -> str | None:
    from ledger.checkpoint import CheckpointError, load_private_key

    try:
        key = load_private_key(value)
    except CheckpointError as exc:
        return f"is not an Ed25519 private key: {exc}"
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _public(mode) if public == dev_checkpoint_public_key() else None


def dev_checkpoint_public_key() -> bytes:
    """The raw public half of DEV_CHECKPOINT_KEY, to recognise it wherever it turns up."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from ledger.checkpoint import load_private_key

    return load_private_key(DEV_CHECKPOINT_KEY).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


_CHECKS = {
    PSEUDONYM_SECRET: _check_hmac_secret(DEV_PSEUDONYM_SECRET),
    SESSION_SECRET: _check_hmac_secret(DEV_SESSION_SECRET),
    MASTER_KEY: _check_master_key,
    CHECKPOINT_KEY: _check_checkpoint_key,
}


def _from_file(name: str, value: str | None, path: str | None) -> str | None:
    if not path:
        return value
    var = variable(name)
    if value is not None:
        raise ConfigError(f"{var} and {var}_FILE are both set; set one")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"{var}_FILE: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{var}_FILE: {path} is not UTF-8 text") from None
    if not text:
        # Not "unset": the operator did set it, and development must not fall back to the public value.
        raise ConfigError(f"{var}_FILE: {path} is empty")
    return text


def _coerce(name: str, typ: Any, raw: str) -> Any:
    if typ in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{variable(name)} must be an integer, got {raw!r}") from None
    return raw
