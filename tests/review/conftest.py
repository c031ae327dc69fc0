"""The review app over a ledger with real recorded exchanges, with one user per role."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from services.review.app import create_app
from services.review.users import UserStore
from tests.audit.history import build_history

PASSWORD = "correct horse battery"
USERS = {
    "lo": ["legal_officer"],
    "aud": ["auditor"],
    "adm": ["admin"],
    "ksp": ["agency:kriminalforsorgen:kif-midt-vestsjaelland"],
    "pol": ["agency:politikreds:bornholm"],
}
SECRET = "test session secret"


@pytest.fixture
def history(ledger_url):
    h = build_history(ledger_url)
    store = UserStore(h.ledger.tables)
    for name, roles in USERS.items():
        store.add(name, PASSWORD, roles)
    yield h
    h.rt.close()


@pytest.fixture
def web(history):
    from ledger.checkpoint import load_private_key

    key = load_private_key(history.settings.checkpoint_key).public_key()
    return create_app(history.ledger, pseudonym_secret=history.rt.pseudonym_secret, session_secret_value=SECRET,
                      checkpoint_public_key=key)


@pytest.fixture
def client(web):
    with TestClient(web, base_url="http://127.0.0.1") as c:
        yield c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def web_login(client: TestClient, user: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"username": user, "password": password, "csrf_token": csrf_of(page.text),
                                       "next": "/"}, follow_redirects=False)


def api_login(client: TestClient, user: str) -> str:
    r = client.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]
