"""Repeated failed log-ins lock the user name and the client address out, on the web form and the API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.review.app import create_app
from services.review.throttle import LoginThrottle
from tests.review.conftest import PASSWORD, SECRET, csrf_of


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_lockout_starts_after_the_allowed_failures_and_doubles():
    clock = Clock()
    t = LoginThrottle(allowed=3, window=60, base_lock=10, max_lock=25, clock=clock)
    for _ in range(2):
        t.failed("user:a")
    assert t.retry_after("user:a") == 0
    t.failed("user:a")
    assert t.retry_after("user:a") == 10
    clock.now += 10
    assert t.retry_after("user:a") == 0
    t.failed("user:a")  # still within the window: locked again, twice as long
    assert t.retry_after("user:a") == 20
    clock.now += 20
    t.failed("user:a")
    assert t.retry_after("user:a", "addr:x") == 25  # capped at max_lock
    t.succeeded("user:a")
    assert t.retry_after("user:a") == 0


def test_failures_outside_the_window_are_forgotten():
    clock = Clock()
    t = LoginThrottle(allowed=3, window=60, clock=clock)
    t.failed("addr:x")
    t.failed("addr:x")
    clock.now += 61
    t.failed("addr:x")
    assert t.retry_after("addr:x") == 0


def test_memory_stays_bounded_under_made_up_names():
    clock = Clock()
    t = LoginThrottle(allowed=3, window=60, clock=clock, max_keys=100)
    for i in range(1000):
        t.failed(f"user:made-up-{i}")
        clock.now += 61
    assert len(t._records) <= 101


@pytest.fixture
def throttled(history):
    clock = Clock()
    app = create_app(history.ledger, pseudonym_secret=history.rt.pseudonym_secret, session_secret_value=SECRET,
                     login_throttle=LoginThrottle(allowed=3, window=60, base_lock=30, clock=clock))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, clock


def _web(client, user, password):
    page = client.get("/login")
    return client.post("/login", data={"username": user, "password": password, "csrf_token": csrf_of(page.text),
                                       "next": "/"}, follow_redirects=False)


def test_web_form_locks_out_then_lets_the_right_password_in(throttled):
    client, clock = throttled
    assert [_web(client, "lo", "wrong").status_code for _ in range(3)] == [401, 401, 401]
    locked = _web(client, "lo", PASSWORD)
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "30"
    assert "Too many failed attempts" in locked.text or "For mange mislykkede" in locked.text
    clock.now += 30
    assert _web(client, "lo", PASSWORD).status_code == 303


def test_api_locks_out_by_client_address_across_user_names(throttled):
    client, clock = throttled
    for name in ("lo", "aud", "adm"):
        assert client.post("/api/login", json={"username": name, "password": "wrong"}).status_code == 401
    r = client.post("/api/login", json={"username": "ksp", "password": PASSWORD})
    assert r.status_code == 429 and "try again" in r.json()["detail"] and r.headers["Retry-After"] == "30"
    clock.now += 30
    assert client.post("/api/login", json={"username": "ksp", "password": PASSWORD}).status_code == 200


def test_one_user_name_one_count_whatever_its_unicode_form():
    from services.review.routes.auth import user_key

    # "andré" with a combining accent (as some keyboards send it) logs in as "andré": the same failures count
    assert user_key("andre\u0301") == user_key("andré") == user_key(" Andre\u0301 ")
    assert user_key("jørgen") != user_key("jorgen")
