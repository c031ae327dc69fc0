"""Production mode end to end, on the real broker and both ledger back-ends.

The gate and the relay run with the deployment's own secrets and a deployment key set. A
sender that holds no pseudonym secret (a separate `xledger agency publish` process whose
environment has none) gets an allowed exchange delivered. Messages signed with a public
development key, a revoked key, an expired key, or by an authority without keys are each
rejected with their own reason, recorded in the ledger and dead-lettered, and nothing of
theirs is delivered.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.domain import exchange_id
from schemas.codec import AvroCodec
from schemas.cpr import ordering_key, pseudonym
from services import topics
from services.agency import Publisher
from services.config import ConfigError, Settings
from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.kafka import make_producer
from services.keyring import DEV_KEY_ID, dev_private_key
from services.keyset import KeySetFile
from services.signing import public_bytes_b64
from tests.harness import ksp_runtime, read_topic, running, wait_for
from tests.services.test_agency_cli import request_file

TODAY = datetime.now(timezone.utc).date()
HORSEROD = "kriminalforsorgen:horserod"  # sends to Helsingør's KSP (tests/services/test_agency_cli.request_file)
HELSINGOR = "kommune:217"


@pytest.fixture
def deployment(tmp_path, broker, ledger_url):
    """Production settings with fresh secrets, and a key set: Horserød's current, expired and revoked keys."""
    keys = {name: Ed25519PrivateKey.generate() for name in ("current", "expired", "stolen")}
    keyset = KeySetFile(tmp_path / "keyset.yaml")
    keyset.add(HORSEROD, "horserod-2026-1", public_bytes_b64(keys["current"]), valid_from=TODAY - timedelta(days=30))
    keyset.add(HORSEROD, "horserod-2025-1", public_bytes_b64(keys["expired"]), valid_from=date(2025, 1, 1),
               valid_to=TODAY - timedelta(days=1))
    keyset.add(HORSEROD, "horserod-laptop", public_bytes_b64(keys["stolen"]))
    keyset.revoke(HORSEROD, "horserod-laptop", datetime.now(timezone.utc) - timedelta(hours=1))
    keyset.add(KALUNDBORG_SOCIAL[0], "kalundborg-2026-1", public_bytes_b64(Ed25519PrivateKey.generate()))
    env = {
        "XLEDGER_ENV": "production",
        "XLEDGER_PSEUDONYM_SECRET": secrets.token_hex(32),
        "XLEDGER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "XLEDGER_CHECKPOINT_KEY": base64.b64encode(os.urandom(32)).decode(),
        "XLEDGER_SESSION_SECRET": secrets.token_hex(32),
        "XLEDGER_KEYSET": str(tmp_path / "keyset.yaml"),
    }
    settings = Settings.from_env(env=env, ledger_url=ledger_url).with_embedded_broker(broker.bootstrap)
    assert settings.mode == "production"
    key_file = tmp_path / "horserod.key"
    key_file.write_text(base64.b64encode(keys["current"].private_bytes_raw()).decode())
    return settings, keys, key_file


def publish_as_a_separate_sender(settings: Settings, key_file, request_path) -> dict:
    """`xledger agency publish` in its own process, whose environment holds no pseudonym secret at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLEDGER_")}
    env.update(XLEDGER_ENV="production", XLEDGER_BOOTSTRAP_SERVERS=settings.bootstrap_servers)
    sent = subprocess.run([sys.executable, "-m", "services.cli", "agency", "publish", request_path,
                           "--org", HORSEROD, "--role", "KRIMINALFORSORGEN", "--key-file", str(key_file),
                           "--key-id", "horserod-2026-1"], capture_output=True, text=True, env=env, timeout=120)
    assert sent.returncode == 0, sent.stderr
    return json.loads(sent.stdout)


def rejections(rt) -> dict[str, str]:
    """message digest -> reason of every RejectedMessage recorded."""
    out = {}
    for n in rt.ledger.all_notifications():
        if n.topic.endswith("RejectedMessage.Rejected"):
            event = rt.ledger.mapper.to_domain_event(n)
            out[event.source["offset"]] = event.reason
    return out


def test_only_the_deployments_valid_keys_get_through_in_production(deployment, broker, tmp_path):
    settings, keys, key_file = deployment
    with ksp_runtime(settings, request_partitions=1) as rt:
        rt.create_topics([HORSEROD, HELSINGOR], request_partitions=1)
        with pytest.raises(ConfigError, match="works only in development"):
            rt.dev_publisher(*KSP_SENDER)
        sent = publish_as_a_separate_sender(settings, key_file, request_file(tmp_path, TODAY + timedelta(days=14)))

        # Four that must not get through, each signed validly by the key it names.
        lawful = release_notice(TODAY, cpr="0508882345", name="Should Not Arrive", release_in_days=21, age=37)
        producer = make_producer(settings, client_id="forgers")
        forgers = {
            "UNKNOWN_KEY": Publisher(HORSEROD, "KRIMINALFORSORGEN", producer=producer, key=dev_private_key(HORSEROD),
                                     key_id=DEV_KEY_ID),
            "KEY_REVOKED": Publisher(HORSEROD, "KRIMINALFORSORGEN", producer=producer, key=keys["stolen"],
                                     key_id="horserod-laptop"),
            "KEY_EXPIRED": Publisher(HORSEROD, "KRIMINALFORSORGEN", producer=producer, key=keys["expired"],
                                     key_id="horserod-2025-1"),
            "UNKNOWN_SIGNER": Publisher("politikreds:bornholm", "POLICE", producer=producer,
                                        key=Ed25519PrivateKey.generate(), key_id="bornholm-1"),
        }
        offsets = {}
        for reason, forger in forgers.items():
            offsets[forger.publish(**lawful).offset] = reason
        producer.close()

        relay = rt.relay()
        with running(rt.gate_worker(), relay):
            assert wait_for(lambda: len(rejections(rt)) == 4 and relay.stats["receipts"] >= 1)
            assert wait_for(lambda: relay.stats["inbox"] >= 1)

        # Each rejection recorded with its own reason ...
        assert rejections(rt) == offsets
        # ... and dead-lettered with it.
        dead = read_topic(broker.bootstrap, topics.DEAD_LETTERS, expect=4)
        assert sorted(dict(r.headers)["x-error-reason"].decode() for r in dead) == sorted(offsets.values())
        # Only the genuine request was delivered: one record in the inbox, the sender's message.
        inbox = read_topic(broker.bootstrap, topics.inbox(HELSINGOR), expect=1)
        delivered = [AvroCodec().decode(r.value).record for r in inbox]
        assert [d["message_id"] for d in delivered] == [sent["message_id"]]
        assert "Should Not Arrive" not in repr([r.value for r in inbox])

        # The decision record names the key that verified the sender, and when.
        exchange = rt.ledger.get_exchange(exchange_id(HORSEROD, sent["message_id"]))
        assert exchange.decision["signer_key_id"] == "horserod-2026-1"
        assert datetime.fromisoformat(exchange.decision["verified_at"]).date() == TODAY
        assert exchange.decision["results"][0]["outcome"] == "ALLOW"
        # The gate made the pseudonym with the deployment's secret; the sender keyed by the public bucket.
        assert exchange.subject == pseudonym("1203911234", settings.pseudonym_secret.encode())
        requests = read_topic(broker.bootstrap, topics.REQUESTS, expect=5)
        assert requests[0].key == ordering_key("1203911234").encode()
        assert delivered[0]["subject_pseudonym"] == exchange.subject


def test_a_revocation_reaches_the_running_gate(deployment, broker, tmp_path):
    settings, keys, key_file = deployment
    with ksp_runtime(settings, request_partitions=1) as rt:
        rt.keyset.every = 0  # re-read on every look-up instead of once a second
        worker = rt.gate_worker()
        with running(worker):
            publish_as_a_separate_sender(settings, key_file, request_file(tmp_path, TODAY + timedelta(days=14)))
            assert wait_for(lambda: worker.stats["decided"] == 1)
            KeySetFile(settings.keyset).revoke(HORSEROD, "horserod-2026-1", datetime.now(timezone.utc))
            publish_as_a_separate_sender(settings, key_file, request_file(tmp_path, TODAY + timedelta(days=15)))
            assert wait_for(lambda: worker.stats["rejected"] == 1)
        assert list(rejections(rt).values()) == ["KEY_REVOKED"]
