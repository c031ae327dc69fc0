"""The review app's escalation pages and API: roles, CSRF, four eyes, what a refused form keeps, access records."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ledger.domain import exchange_id
from services.review.app import create_app
from services.review.users import UserStore
from services.simulation import POLICE
from tests.audit.history import build_history
from tests.escalations.test_workflow import SOCIAL, V1_DAY, V2_DAY, no_basis_request, pet_request
from tests.review.conftest import PASSWORD, SECRET, api_login, csrf_of, web_login

USERS = {"lo": ["legal_officer"], "lo2": ["legal_officer"], "aud": ["auditor"], "adm": ["admin"],
         "ksp": ["agency:kriminalforsorgen:horserod"]}


@pytest.fixture
def history(ledger_url):
    h = build_history(ledger_url, plan=[])
    store = UserStore(h.ledger.tables)
    for name, roles in USERS.items():
        store.add(name, PASSWORD, roles)
    h.record(h.signed(pet_request("1203911234"), message_id="pet-00001", org_role=POLICE, at=V1_DAY))
    h.record(h.signed(no_basis_request("0508882345"), message_id="jc-000001", org_role=SOCIAL, at=V2_DAY))
    yield h
    h.rt.close()


@pytest.fixture
def client(history):
    with TestClient(create_app(history.ledger, pseudonym_secret=history.rt.pseudonym_secret,
                               session_secret_value=SECRET), base_url="http://127.0.0.1") as c:
        yield c


PET = str(exchange_id(POLICE[0], "pet-00001"))
JC = str(exchange_id(SOCIAL[0], "jc-000001"))


@pytest.mark.parametrize("user,status", [("lo", 200), ("aud", 200), ("adm", 403), ("ksp", 403), (None, 401)])
def test_who_sees_escalations(client, user, status):
    if user:
        api_login(client, user)
    for path in ("/api/escalations", "/api/escalations/statistics", f"/api/escalations/{PET}"):
        assert client.get(path).status_code == status, path


def test_api_approve_refuse_and_four_eyes(client, history):
    token = api_login(client, "lo")
    items = client.get("/api/escalations").json()["items"]
    assert {(i["exchange_id"], i["approvals_required"]) for i in items} == {(PET, 1), (JC, 2)}
    # CSRF is required on every verdict
    r = client.post(f"/api/escalations/{PET}/approve", json={"basis": "b", "citation": "c"})
    assert r.status_code == 403
    r = client.post(f"/api/escalations/{PET}/approve", headers={"X-CSRF-Token": token},
                    json={"basis": "Trusselsvurdering efter anmodning", "citation": "PET-loven § 4, stk. 1"})
    assert r.status_code == 201, r.text
    assert (r.json()["officer"], r.json()["status"], r.json()["via"]) == ("lo", "APPROVED", "api")
    r = client.post(f"/api/escalations/{PET}/refuse", headers={"X-CSRF-Token": token}, json={"reason": "for sent"})
    assert r.status_code == 409 and r.json()["code"] == "CLOSED"
    r = client.post(f"/api/escalations/{JC}/approve", headers={"X-CSRF-Token": token}, json={"basis": "", "citation": "x"})
    assert r.status_code == 422 and r.json()["code"] == "BASIS_REQUIRED"
    r = client.post(f"/api/escalations/{JC}/approve", headers={"X-CSRF-Token": token},
                    json={"basis": "Forenelig videregivelse", "citation": "databeskyttelsesloven § 8, stk. 2, nr. 2"})
    assert r.status_code == 201 and r.json()["status"] == "OPEN" and r.json()["approvals"] == 1
    r = client.post(f"/api/escalations/{JC}/approve", headers={"X-CSRF-Token": token},
                    json={"basis": "Igen", "citation": "databeskyttelsesloven § 8"})
    assert r.status_code == 409 and r.json()["code"] == "SAME_OFFICER"
    assert client.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 200
    token2 = api_login(client, "lo2")
    r = client.post(f"/api/escalations/{JC}/approve", headers={"X-CSRF-Token": token2},
                    json={"basis": "Enig", "citation": "databeskyttelsesloven § 8, stk. 2, nr. 2"})
    assert r.status_code == 201 and r.json()["status"] == "APPROVED"
    chain = client.get(f"/api/escalations/{JC}").json()
    assert [(v["officer"], v["status"]) for v in chain["escalations"][0]["verdicts"]] == [("lo", "OPEN"),
                                                                                       ("lo2", "APPROVED")]
    stats = client.get("/api/escalations/statistics").json()
    assert (stats["open"], stats["approved"], stats["refused"]) == (0, 2, 0)
    # every view of a chain is in the ledger's access records
    views = [history.ledger.mapper.to_domain_event(n) for n in history.ledger.notifications(1, 10_000)
             if n.topic.endswith("AccessRecord.AccessLogged")]
    assert any(getattr(v, "action", None) == "view_escalation" for v in views)


def test_auditor_reads_but_cannot_decide(client):
    token = api_login(client, "aud")
    assert client.get(f"/api/escalations/{PET}").status_code == 200
    r = client.post(f"/api/escalations/{PET}/approve", headers={"X-CSRF-Token": token},
                    json={"basis": "b", "citation": "c"})
    assert r.status_code == 403
    page = client.get(f"/escalations/{PET}")
    assert page.status_code == 200 and "Godkend videregivelsen" not in page.text


def test_html_forms_in_danish_keep_what_was_typed(client):
    assert web_login(client, "lo").status_code == 303
    page = client.get("/escalations")
    assert page.status_code == 200
    assert "Eskalationer til juridisk kontrol" in page.text and "ESCALATE_NO_BASIS_FOUND" not in page.text
    assert "Intet hjemmelsgrundlag fundet" in page.text
    assert 'href="/escalations"' in page.text  # in the navigation
    chain = client.get(f"/escalations/{JC}")
    assert chain.status_code == 200 and "Kræver 2 forskellige juristers godkendelser" in chain.text
    token = csrf_of(chain.text)
    r = client.post(f"/escalations/{JC}/approve", data={"csrf_token": token, "recipient": "kommune:326",
                                                        "basis": "Sagsbehandling", "citation": "dbl § 8, stk. 2, nr. 2"},
                    follow_redirects=False)
    assert r.status_code == 303
    # the same officer again: refused in Danish, and the form keeps what was typed
    r = client.post(f"/escalations/{JC}/approve", data={"csrf_token": token, "recipient": "kommune:326",
                                                        "basis": "Min anden begrundelse", "citation": "dbl § 8"})
    assert r.status_code == 409
    assert "Den anden godkendelse skal komme fra en anden jurist" in r.text and "Min anden begrundelse" in r.text
    r = client.post(f"/escalations/{JC}/refuse", data={"csrf_token": token, "recipient": "kommune:326", "reason": " "})
    assert r.status_code == 422 and "Angiv en begrundelse" in r.text
    r = client.post(f"/escalations/{JC}/refuse", data={"csrf_token": "forged", "recipient": "kommune:326",
                                                       "reason": "Ikke nødvendigt"})
    assert r.status_code == 403
    r = client.post(f"/escalations/{JC}/refuse", data={"csrf_token": token, "recipient": "kommune:326",
                                                       "reason": "Ikke nødvendigt for jobcentret"}, follow_redirects=False)
    assert r.status_code == 303
    done = client.get(f"/escalations/{JC}")
    assert "Afvist" in done.text and "Ikke nødvendigt for jobcentret" in done.text and "Godkend videregivelsen" not in done.text
    assert client.get("/escalations?status=REFUSED").text.count(f'href="/escalations/{JC}"') == 1
    assert client.get("/escalations?status=bogus").status_code == 422
    assert client.get("/escalations/not-an-id").status_code == 404


def test_decisions_show_the_version_that_made_them(client):
    api_login(client, "lo")
    v1 = client.get(f"/api/decisions/{PET}").json()
    v2 = client.get(f"/api/decisions/{JC}").json()
    assert (v1["bundle"], v1["bundle_effective_from"]) == ("dk-115-2026", "2026-01-01")
    assert (v2["bundle"], v2["bundle_effective_from"]) == ("dk-115-2026-12-15", "2026-12-15")
    # version 2's trace cites by step: the escalating D0 item carries D0's Danish citation
    d0 = [c for c in v2["results"][0]["trace"] if c["step"] == "D0"]
    assert d0 and d0[0]["citation"] == "databeskyttelsesloven §§ 6-8; databeskyttelsesforordningen art. 6 og 9"
    page = client.get(f"/decisions/{JC}")
    assert page.status_code == 200 and "dk-115-2026-12-15, 2026-12-15" in page.text
