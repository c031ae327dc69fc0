"""A legal officer's queue: newest first, sortable both ways, escalated cases first on request,
and "awaiting manual assessment" (escalated and still open) as a filter."""

from __future__ import annotations

from datetime import timedelta

from ledger.domain import exchange_id
from services.simulation import POLICE
from tests.audit.history import NOW
from tests.escalations.test_workflow import V1_DAY, pet_request
from tests.review.conftest import api_login, web_login


def test_newest_first_sortable_escalated_first_and_pending(history, client):
    # one more KSP decision, a day before the others, and one escalation (after them)
    history.add("p5-early", "0508882345", 40, 37, at=NOW - timedelta(days=1))
    history.record(history.signed(pet_request("1203911234"), message_id="pet-00001", org_role=POLICE, at=V1_DAY))
    pet = str(exchange_id(POLICE[0], "pet-00001"))
    token = api_login(client, "lo")

    newest = client.get("/api/decisions").json()["items"]
    times = [i["occurred_at"] for i in newest]
    assert times == sorted(times, reverse=True) and len(times) == 7
    oldest = client.get("/api/decisions", params={"sort": "oldest"}).json()["items"]
    assert [i["occurred_at"] for i in oldest] == sorted(times)
    assert oldest[0]["message_id"] == "msg-p5-early"

    first = client.get("/api/decisions", params={"sort": "oldest", "escalated_first": True}).json()["items"]
    assert first[0]["exchange_id"] == pet and first[0]["outcome"] == "ESCALATE"
    assert [i["occurred_at"] for i in first[1:]] == sorted(i["occurred_at"] for i in first[1:])

    pending = client.get("/api/decisions", params={"pending": True}).json()
    assert pending["total"] == 1 and [i["exchange_id"] for i in pending["items"]] == [pet]
    r = client.post(f"/api/escalations/{pet}/approve", headers={"X-CSRF-Token": token},
                    json={"basis": "Trusselsvurdering", "citation": "PET-loven § 4, stk. 1"})
    assert r.status_code == 201
    after = client.get("/api/decisions", params={"pending": True}).json()
    assert after["total"] == 0 and after["items"] == []

    web_login(client, "lo")
    page = client.get("/queue")
    assert 'aria-sort="descending"' in page.text and "sort=oldest" in page.text
    assert "Kun sager, der afventer manuel vurdering" in page.text and "Eskalerede sager først" in page.text
    assert client.get("/queue", params={"pending": "1"}).text.count('href="/decisions/') == 0
