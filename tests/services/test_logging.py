"""No personal data in any log line: checked on a real run through gate and relay."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from structlog.testing import capture_logs

from services.demo import KALUNDBORG_SOCIAL, KSP_SENDER, release_notice
from services.logging import drop_personal_data
from services.runtime import Runtime
from tests.harness import running, wait_for

CPR, NAME = "1203911234", "Test Person Logged"


def test_redaction_processor_replaces_personal_keys():
    event = drop_personal_data(None, "info", {"event": "x", "cpr": CPR, "payload": b"...", "offset": 3})
    assert event == {"event": "x", "cpr": "[redacted]", "payload": "[redacted]", "offset": 3}


def test_a_full_exchange_logs_no_cpr_name_or_payload_text(settings):
    rt = Runtime(settings)
    rt.create_topics([KSP_SENDER[0], KALUNDBORG_SOCIAL[0]])
    request = release_notice(datetime.now(timezone.utc).date(), cpr=CPR, name=NAME, release_in_days=10, age=40)
    with capture_logs() as logs:
        publisher = rt.dev_publisher(*KSP_SENDER)
        publisher.publish(**request)
        publisher.producer.close()
        relay = rt.relay()
        with running(rt.gate_worker(), relay):
            assert wait_for(lambda: relay.stats["inbox"] == 1)
    rt.close()
    assert {e["event"] for e in logs} >= {"agency.published", "gate.batch_recorded", "relay.page_recorded"}
    text = json.dumps(logs, default=str)
    secrets = [CPR, NAME, "Horserød", request["payload"]["housing_need"], request["necessity"]]
    leaked = [s for s in secrets if s in text]
    assert leaked == []
