"""The review app and its API: every endpoint and role, CSRF, log-in, reviews and access records in the ledger."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ledger.domain import exchange_id
from ledger.readmodels import ReadModels
from tests.audit.history import CPR_A, KSP_SENDER
from tests.review.conftest import PASSWORD, USERS, api_login, csrf_of, web_login


def ex_id(history, label: str) -> str:
    return str(exchange_id(KSP_SENDER[0], history.sent[label]))


def access_records(history) -> list:
    out = []
    for n in history.ledger.notifications(1, 10_000):
        if n.topic.endswith("AccessRecord.AccessLogged"):
            out.append(history.ledger.mapper.to_domain_event(n))
    return out


# -- the role matrix -------------------------------------------------------------------------------

ALL = ("lo", "aud", "adm", "ksp", "pol")


def _api_get(path_fn):
    return path_fn


API_GET = {
    # path (with {ex} and {p}) -> users allowed (200); others 403; anonymous 401
    "/api/decisions": {"lo", "aud", "ksp", "pol"},
    "/api/decisions/{ex}": {"lo", "aud", "ksp"},
    "/api/subjects/{p}": {"lo", "aud"},
    "/api/stats": {"lo", "aud", "adm"},
    "/api/ledger": {"lo", "aud", "adm"},
    "/api/users": {"adm"},
    "/api/me": set(ALL),
}
PAGES = {
    "/queue": {"lo", "aud", "ksp", "pol"},
    "/decisions/{ex}": {"lo", "aud", "ksp"},
    "/subjects": {"lo", "aud"},
    "/subjects/{p}": {"lo", "aud"},
    "/stats": {"lo", "aud", "adm"},
    "/ledger": {"lo", "aud", "adm"},
    "/admin/users": {"adm"},
}


def _fill(path: str, history) -> str:
    return path.format(ex=ex_id(history, "p5-21"), p=history.pseudonym(CPR_A))


@pytest.mark.parametrize("path", sorted(API_GET))
def test_api_role_matrix(history, web, path):
    url = _fill(path, history)
    with TestClient(web, base_url="http://127.0.0.1") as anon:
        assert anon.get(url).status_code == 401
    for user in ALL:
        with TestClient(web, base_url="http://127.0.0.1") as c:
            api_login(c, user)
            expected = 200 if user in API_GET[path] else 403
            assert c.get(url).status_code == expected, (path, user)


def test_api_post_role_matrix(history, web):
    url = f"/api/decisions/{ex_id(history, 'p5-60')}/reviews"
    with TestClient(web, base_url="http://127.0.0.1") as anon:
        assert anon.post(url, json={"action": "UPHOLD"}).status_code == 401
        assert anon.post("/api/subjects/lookup", json={"subject": CPR_A}).status_code == 401
    for user in ALL:
        with TestClient(web, base_url="http://127.0.0.1") as c:
            token = api_login(c, user)
            r = c.post(url, json={"action": "UPHOLD"}, headers={"X-CSRF-Token": token})
            assert r.status_code == (201 if user == "lo" else 403), (user, r.text)
            r = c.post("/api/subjects/lookup", json={"subject": CPR_A}, headers={"X-CSRF-Token": token})
            assert r.status_code == (200 if user in ("lo", "aud") else 403), user


@pytest.mark.parametrize("path", sorted(PAGES))
def test_page_role_matrix(history, web, path):
    url = _fill(path, history)
    with TestClient(web, base_url="http://127.0.0.1") as anon:
        r = anon.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    for user in ALL:
        with TestClient(web, base_url="http://127.0.0.1") as c:
            assert web_login(c, user).status_code == 303
            r = c.get(url)
            expected = 200 if user in PAGES[path] else 403
            assert r.status_code == expected, (path, user)
            if expected == 200:
                assert "<html" in r.text and 'lang="da"' in r.text


def test_review_post_page_is_legal_officers_only(history, web):
    url = f"/decisions/{ex_id(history, 'p5-21')}/review"
    for user in ALL:
        with TestClient(web, base_url="http://127.0.0.1") as c:
            web_login(c, user)
            page = c.get("/login")
            r = c.post(url, data={"action": "UPHOLD", "csrf_token": csrf_of(page.text)}, follow_redirects=False)
            assert r.status_code == (303 if user == "lo" else 403), user


# -- log-in, sessions, CSRF -------------------------------------------------------------------------


def test_login_failure_and_success(client):
    r = web_login(client, "lo", "wrong password!")
    assert r.status_code == 401 and "Forkert brugernavn eller adgangskode" in r.text
    assert web_login(client, "nobody").status_code == 401
    assert client.post("/api/login", json={"username": "lo", "password": "nope"}).status_code == 401
    assert client.post("/api/login", json={"username": "x", "password": PASSWORD}).status_code == 401
    r = web_login(client, "lo")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain http on localhost
    assert client.get("/queue").status_code == 200


def test_session_cookie_is_secure_off_localhost(history, web):
    with TestClient(web, base_url="https://review.example.dk") as c:
        r = c.get("/login")
        assert "Secure" in r.headers["set-cookie"]


def test_forged_or_stale_sessions_are_refused(history, web):
    from services.review.sessions import SessionCodec

    with TestClient(web, base_url="http://127.0.0.1") as c:
        forged = SessionCodec("not the secret").dumps({"u": "lo", "c": "x", "v": "y"})
        c.cookies.set("xl_session", forged)
        assert c.get("/api/me").status_code == 401
    with TestClient(web, base_url="http://127.0.0.1") as c:
        api_login(c, "lo")
        assert c.get("/api/me").status_code == 200
        web.state.users.passwd("lo", "a brand new password")
        assert c.get("/api/me").status_code == 401  # the old session died with the old password
    with TestClient(web, base_url="http://127.0.0.1") as c:
        api_login(c, "aud")
        web.state.users.remove("aud")
        assert c.get("/api/me").status_code == 401


def test_csrf_is_checked_on_every_post(history, client):
    page = client.get("/login")
    # log-in form without / with a wrong token
    assert client.post("/login", data={"username": "lo", "password": PASSWORD}).status_code == 403
    assert client.post("/login", data={"username": "lo", "password": PASSWORD, "csrf_token": "x"}).status_code == 403
    assert web_login(client, "lo").status_code == 303
    url = f"/decisions/{ex_id(history, 'p5-21')}/review"
    assert client.post(url, data={"action": "UPHOLD"}).status_code == 403
    assert client.post(url, data={"action": "UPHOLD", "csrf_token": csrf_of(page.text)}).status_code == 403  # pre-login token
    assert client.post("/subjects", data={"subject": CPR_A}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    # API: header required
    token = api_login(client, "lo")
    api = f"/api/decisions/{ex_id(history, 'p5-21')}/reviews"
    assert client.post(api, json={"action": "UPHOLD"}).status_code == 403
    assert client.post(api, json={"action": "UPHOLD"}, headers={"X-CSRF-Token": "nope"}).status_code == 403
    assert client.post(api, json={"action": "UPHOLD"}, headers={"X-CSRF-Token": token}).status_code == 201
    assert client.post("/api/logout").status_code == 403
    assert client.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 200
    assert client.get("/api/me").status_code == 401


def test_logout(client):
    web_login(client, "lo")
    page = client.get("/queue")
    r = client.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/queue", follow_redirects=False).status_code == 303


def test_login_redirect_stays_on_site(client):
    page = client.get("/login")
    r = client.post("/login", data={"username": "lo", "password": PASSWORD, "csrf_token": csrf_of(page.text),
                                    "next": "//evil.example/x"}, follow_redirects=False)
    assert r.headers["location"] == "/"


# -- the queue, decisions, reviews ------------------------------------------------------------------


def test_queue_filters_and_counts(history, client):
    api_login(client, "lo")
    data = client.get("/api/decisions").json()
    assert data["total"] == 5 and data["counts"] == {"ALLOW": 4, "DENY": 1, "ESCALATE": 0}
    # The choices come from the bundles (no scan of the decisions): every reason a bundle can give.
    assert "DENY_SUBJECT_OUT_OF_SCOPE" in data["choices"]["reason"] and "ESCALATE_NO_BASIS_FOUND" in data["choices"]["reason"]
    assert not any(r.startswith("WARN_") for r in data["choices"]["reason"])
    assert "kommune:326" in data["choices"]["authority"] and "NONE" in data["choices"]["cooperation"]
    denied = client.get("/api/decisions", params={"outcome": "DENY"}).json()
    assert [i["message_id"] for i in denied["items"]] == ["msg-deny-4y"]
    assert client.get("/api/decisions", params={"reason": "DENY_SUBJECT_OUT_OF_SCOPE"}).json()["total"] == 1
    assert client.get("/api/decisions", params={"rule": "P5", "cooperation": "KSP"}).json()["total"] == 4
    assert client.get("/api/decisions", params={"cooperation": "SSP"}).json()["total"] == 0
    assert client.get("/api/decisions", params={"authority": "kommune:326"}).json()["total"] == 5
    assert client.get("/api/decisions", params={"since": "2026-03-11"}).json()["total"] == 0
    assert client.get("/api/decisions", params={"since": "2026-03-10", "until": "2026-03-10"}).json()["total"] == 5
    assert client.get("/api/decisions", params={"since": "nonsense"}).status_code == 422
    page = client.get("/queue", params={"outcome": "DENY"})
    assert ex_id(history, "deny-4y") in page.text and ex_id(history, "p5-21") not in page.text
    assert "I alt: <strong>1</strong>" in page.text


def test_agency_sees_only_its_own_receipts(history, client):
    api_login(client, "pol")
    assert client.get("/api/decisions").json()["total"] == 0
    assert client.get(f"/api/decisions/{ex_id(history, 'p5-21')}").status_code == 403
    with TestClient(client.app, base_url="http://127.0.0.1") as c:
        api_login(c, "ksp")
        data = c.get("/api/decisions").json()
        assert data["total"] == 5
        d = c.get(f"/api/decisions/{ex_id(history, 'p5-21')}").json()
        assert "subject" not in d  # an agency does not need the pseudonym
        assert d["results"][0]["rule"] == "P5"


def test_decision_page_shows_trace_citations_and_policy_version_never_the_cpr(history, client):
    web_login(client, "lo")
    page = client.get(f"/decisions/{ex_id(history, 'deny-4y')}")
    assert page.status_code == 200
    # Danish names, not codes; the whole exchange id in the URL and the heading's copy button
    assert "Personen er ikke omfattet" in page.text and "DENY_SUBJECT_OUT_OF_SCOPE" not in page.text
    assert "rpl § 115" in page.text and "Kalundborg Kommune" in page.text and 'title="kommune:326"' in page.text
    assert "sha256:" in page.text and "ikke opfyldt" in page.text
    eid = ex_id(history, "deny-4y")
    heading = page.text.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert eid[:8] in heading and f'data-copy="{eid}"' in heading
    assert "0101801234" not in page.text and "Test Person" not in page.text
    api = client.get(f"/api/decisions/{ex_id(history, 'deny-4y')}").json()
    assert api["subject"] == history.pseudonym("0101801234")
    steps = {c["step"]: c for c in api["results"][0]["trace"]}
    assert steps["C3"]["passed"] is False and steps["C3"]["citation"]
    assert client.get("/api/decisions/not-a-uuid").status_code == 404
    assert client.get("/api/decisions/00000000-0000-0000-0000-000000000000").status_code == 404


def test_decision_page_names_the_directory_version_in_both_languages(history, client):
    from policies.directory import Directory

    web_login(client, "lo")
    version = Directory.load().version  # the directory the gate decided these exchanges with
    url = f"/decisions/{ex_id(history, 'deny-4y')}"
    da, en = client.get(url).text, client.get(url + "?lang=en").text
    assert "Myndighedskatalog" in da and "Directory version" in en
    assert f'data-copy="{version}"' in da and f'data-copy="{version}"' in en
    assert client.get(f"/api/decisions/{ex_id(history, 'deny-4y')}").json()["directory_version"] == version


def test_review_is_appended_to_the_ledger(history, client):
    web_login(client, "lo")
    url = f"/decisions/{ex_id(history, 'p5-85')}"
    page = client.get(url)
    r = client.post(url + "/review", data={"action": "OVERTURN", "recipient": "kommune:326", "reason": "",
                                           "note": "mit notat, ikke tabt", "csrf_token": csrf_of(page.text)},
                    follow_redirects=False)
    # Refused, and the form keeps what was typed
    assert r.status_code == 422 and "En omgørelse kræver en begrundelse" in r.text
    assert "mit notat, ikke tabt" in r.text and '<option value="OVERTURN" selected>' in r.text
    r = client.post(url + "/review", data={"action": "OVERTURN", "recipient": "kommune:326",
                                           "reason": "Løsladelsen ligger for langt ude", "note": "drøftet",
                                           "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    ex = history.ledger.get_exchange(exchange_id(KSP_SENDER[0], history.sent["p5-85"]))
    assert ex.reviews[-1]["action"] == "OVERTURN" and ex.reviews[-1]["reviewer"] == "lo"
    assert ex.reviews[-1]["reason"] == "Løsladelsen ligger for langt ude"
    row = ReadModels(history.ledger).query("decisions", "message_id = ?", ["msg-p5-85"])[0]
    assert row["review_status"] == "OVERTURNED"
    assert "Løsladelsen ligger for langt ude" in client.get(url).text
    token = api_login(client, "lo")
    bad = client.post(f"/api/decisions/{ex.id}/reviews", json={"action": "DELETE"}, headers={"X-CSRF-Token": token})
    assert bad.status_code == 422
    bad = client.post(f"/api/decisions/{ex.id}/reviews", json={"action": "FLAG", "recipient": "kommune:101"},
                      headers={"X-CSRF-Token": token})
    assert bad.status_code == 422
    ok = client.post(f"/api/decisions/{ex.id}/reviews", json={"action": "FLAG", "note": "opfølgning"},
                     headers={"X-CSRF-Token": token})
    assert ok.status_code == 201 and ok.json()["action"] == "FLAG"
    assert client.get("/api/decisions", params={"status": "FLAGGED"}).json()["total"] == 1


# -- subject report, access log, stats, ledger, users ----------------------------------------------


def test_subject_report_page_and_access_log(history, client):
    web_login(client, "aud")
    page = client.get("/subjects")
    r = client.post("/subjects", data={"subject": CPR_A, "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    p = history.pseudonym(CPR_A)
    assert r.status_code == 303 and r.headers["location"] == f"/subjects/{p}"
    report = client.get(r.headers["location"])
    assert "msg-p5-21" in report.text and "msg-p5-85" in report.text and CPR_A not in report.text
    bad = client.post("/subjects", data={"subject": "3213991234", "csrf_token": csrf_of(page.text)})
    assert bad.status_code == 422 and "3213991234" not in bad.text
    client.get(f"/decisions/{ex_id(history, 'p5-21')}")
    logged = access_records(history)
    assert [(a.who, a.action, a.target_kind) for a in logged] == [
        ("aud", "subject_report", "subject"), ("aud", "view_decision", "exchange")]
    assert logged[0].target == p and CPR_A not in repr(logged[0].__dict__)
    token = api_login(client, "lo")
    data = client.post("/api/subjects/lookup", json={"subject": CPR_A}, headers={"X-CSRF-Token": token}).json()
    assert data["disclosed"] == 2 and data["subject"] == p
    assert client.post("/api/subjects/lookup", json={"subject": "12"}, headers={"X-CSRF-Token": token}).status_code == 422
    assert client.get("/api/subjects/nothex").status_code == 404
    assert len(access_records(history)) == 3


def test_stats_charts_ledger_status_and_users(history, client):
    web_login(client, "adm")
    stats = client.get("/stats")
    assert stats.status_code == 200 and stats.text.count('class="chart"') == 2 and "KSP" in stats.text
    assert "Personen er ikke omfattet" in stats.text and "DENY_SUBJECT_OUT_OF_SCOPE" not in stats.text
    ledger_page = client.get("/ledger")
    assert f'id="latest">{history.ledger.max_notification_id()}<' in ledger_page.text
    # Everything folded into the Merkle tree and signed: verification must pass, and say so.
    history.ledger.checkpoint_now(history.rt.checkpoint_signer, origin=history.settings.ledger_origin)
    verified = client.get("/ledger", params={"verify": "1"})
    assert verified.status_code == 200
    assert 'class="ok-text" id="verify-result"' in verified.text and 'role="alert"' not in verified.text
    users = client.get("/admin/users")
    assert all(u in users.text for u in USERS) and "scrypt" not in users.text
    api_login(client, "adm")
    rows = client.get("/api/stats").json()["rows"]
    assert sum(r["n"] for r in rows) == 5
    assert client.get("/api/stats", params={"since": "2026-03-11"}).json()["rows"] == []
    status = client.get("/api/ledger").json()
    assert status["counts"]["requests"] == 5 and status["latest_notification_id"] >= 6  # an entry each, a rejection
    verification = client.get("/api/ledger", params={"verify": True}).json()["verification"]
    assert verification["ok"] is True and verification["findings"] == []
    assert verification["tree_size"] == history.ledger.max_notification_id() and verification["checkpoints"] >= 1
    assert [u["username"] for u in client.get("/api/users").json()] == sorted(USERS)


def test_english_switch_is_remembered(client):
    web_login(client, "lo")
    page = client.get("/queue", params={"lang": "en"})
    assert 'lang="en"' in page.text and "Decisions" in page.text
    assert 'lang="en"' in client.get("/queue").text  # cookie
    assert "Afgørelser" in client.get("/queue", params={"lang": "da"}).text


def test_openapi_document_lists_the_api(client):
    doc = client.get("/openapi.json").json()
    for path in ("/api/login", "/api/decisions", "/api/decisions/{exchange_id}", "/api/decisions/{exchange_id}/reviews",
                 "/api/subjects/{pseudonym}", "/api/subjects/lookup", "/api/stats", "/api/ledger", "/api/users"):
        assert path in doc["paths"], path
    assert "/queue" not in doc["paths"]


def test_security_headers(client):
    r = client.get("/login")
    assert r.headers["x-frame-options"] == "DENY" and "default-src 'self'" in r.headers["content-security-policy"]
