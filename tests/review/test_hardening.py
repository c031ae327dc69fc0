"""The review app's defences (issue #17.5), in-process: sessions revoked on the server, bounded
numbers, a request-body limit, whom X-Forwarded-For is believed from, and what agency users may not
see. tests/adversarial/test_review_attacks.py runs the same attacks against a real server."""

from __future__ import annotations

from fastapi.testclient import TestClient
from starlette.requests import Request

from ledger.domain import exchange_id
from services.review.sessions import SessionStore
from tests.audit.history import KSP_SENDER
from tests.review.conftest import PASSWORD, api_login, csrf_of, web_login

HOST = "http://127.0.0.1"


def _ex(history, label="p5-21") -> str:
    return str(exchange_id(KSP_SENDER[0], history.sent[label]))


def test_logout_revokes_the_session_on_the_server(history, web):
    with TestClient(web, base_url=HOST) as c:
        token = api_login(c, "lo")
        stolen = c.cookies.get("xl_session")
        assert c.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 200
    with TestClient(web, base_url=HOST) as thief:
        thief.cookies.set("xl_session", stolen)
        assert thief.get("/api/me").status_code == 401
        assert thief.get("/queue", follow_redirects=False).status_code == 303
    # the same through the page's form
    with TestClient(web, base_url=HOST) as c:
        web_login(c, "aud")
        stolen = c.cookies.get("xl_session")
        page = c.get("/queue")
        assert c.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    with TestClient(web, base_url=HOST) as thief:
        thief.cookies.set("xl_session", stolen)
        assert thief.get("/api/me").status_code == 401


def test_a_password_change_ends_every_session_of_the_user(history, web):
    store = SessionStore(history.ledger.tables)
    with TestClient(web, base_url=HOST) as a, TestClient(web, base_url=HOST) as b:
        api_login(a, "lo")
        api_login(b, "lo")
        assert store.count("lo") == 2
        web.state.users.passwd("lo", "another long password")
        assert store.count("lo") == 0
        assert a.get("/api/me").status_code == 401 and b.get("/api/me").status_code == 401


def test_numbers_are_bounded_422_never_500(history, client):
    web_login(client, "lo")
    for q in ("page=100000000000000000000", "page=0", "page=-3", "page=abc", "page=100001"):
        r = client.get(f"/queue?{q}")
        assert r.status_code == 422 and r.headers["content-type"].startswith("text/html"), q
        assert "Ugyldigt input" in r.text and "page" in r.text
        assert client.get(f"/api/decisions?{q}").status_code == 422, q
    assert client.get("/queue?page=100000").status_code == 200  # the largest page: empty, not an error
    assert client.get("/queue?sort=nonsense").status_code == 422


def test_request_bodies_over_the_limit_are_refused_before_they_are_read(history, web):
    with TestClient(web, base_url=HOST) as c:
        big = b'{"username": "lo", "password": "' + b"x" * (300 * 1024) + b'"}'
        r = c.post("/api/login", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "too large" in r.json()["detail"]

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(100):
                yield b"x" * 8192

        r = c.post("/api/login", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = c.post("/login", content=b"username=" + b"a" * (400 * 1024),
                   headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413 and 'lang="da"' in r.text
        assert c.post("/api/login", json={"username": "lo", "password": PASSWORD}).status_code == 200


def _request(peer: str, xff: str | None) -> Request:
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    return Request({"type": "http", "client": (peer, 40000), "headers": headers, "method": "GET", "path": "/",
                    "query_string": b""})


def test_x_forwarded_for_is_believed_only_from_configured_proxies(history, web):
    from services.review.app import create_app

    w = web.state.web
    # default: no proxy is trusted, whatever the header says
    assert w.client_address(_request("127.0.0.1", "203.0.113.9")) == "127.0.0.1"
    assert w.client_address(_request("10.1.2.3", "203.0.113.9")) == "10.1.2.3"
    proxied = create_app(history.ledger, pseudonym_secret=b"x" * 32, session_secret_value="s",
                         trusted_proxies=["10.0.0.0/8"]).state.web
    assert proxied.client_address(_request("10.1.2.3", "203.0.113.9")) == "203.0.113.9"
    # a client's own X-Forwarded-For in front of the proxy's is not believed: the right-most
    # address the trusted proxy added is the client
    assert proxied.client_address(_request("10.1.2.3", "198.51.100.1, 203.0.113.9")) == "203.0.113.9"
    assert proxied.client_address(_request("192.0.2.7", "203.0.113.9")) == "192.0.2.7"  # not a proxy
    assert proxied.client_address(_request("10.1.2.3", "not-an-address")) == "10.1.2.3"


def test_agency_users_see_their_own_decisions_without_internal_review_notes(history, web):
    ex = _ex(history)
    with TestClient(web, base_url=HOST) as lo:
        token = api_login(lo, "lo")
        r = lo.post(f"/api/decisions/{ex}/reviews", headers={"X-CSRF-Token": token},
                    json={"action": "FLAG", "reason": "uklar nødvendighed", "note": "internt: ring til KSP-koordinator"})
        assert r.status_code == 201
        full = lo.get(f"/api/decisions/{ex}").json()["reviews"][0]
        assert full["reviewer"] == "lo" and full["note"].startswith("internt") and full["at"]
        page = lo.get(f"/decisions/{ex}")
        assert "internt: ring til KSP-koordinator" in page.text and "Kontrolleret af" in page.text
    with TestClient(web, base_url=HOST) as ksp:
        api_login(ksp, "ksp")
        seen = ksp.get(f"/api/decisions/{ex}").json()["reviews"]
        assert seen == [{"action": "FLAG", "recipient": None, "at": full["at"]}]
        web_login(ksp, "ksp")
        page = ksp.get(f"/decisions/{ex}")
        assert page.status_code == 200 and "Markér til opfølgning" in page.text
        assert "internt" not in page.text and "uklar nødvendighed" not in page.text and "Kontrolleret af" not in page.text
    with TestClient(web, base_url=HOST) as pol:  # another authority: not its decision at all
        api_login(pol, "pol")
        assert pol.get(f"/api/decisions/{ex}").status_code == 403
        assert pol.get("/api/decisions").json()["items"] == []
