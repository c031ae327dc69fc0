"""The queue's pages by cursor (``after``/``before``, what the pager links to) list exactly the rows
the numbered pages list, in every sort order and with the escalated cases first, forwards and back."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from services.review.app import create_app
from services.review.users import UserStore
from tests.audit.history import KSP_SENDER, NOW, build_history
from tests.review.conftest import PASSWORD, SECRET, api_login
from tests.review.test_scale import grow

ROWS = 120  # exchanges added to the base history: three pages of 50


@pytest.fixture
def big(ledger_url):
    history = build_history(ledger_url)
    UserStore(history.ledger.tables).add("lo", PASSWORD, ["legal_officer"])
    UserStore(history.ledger.tables).add("ksp", PASSWORD, [f"agency:{KSP_SENDER[0]}"])
    grow(history, ROWS, 0)
    app = create_app(history.ledger, pseudonym_secret=history.rt.pseudonym_secret, session_secret_value=SECRET)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        api_login(c, "lo")
        yield c
    history.rt.close()


def _key(item):
    return item["exchange_id"], item["recipient"]


@pytest.mark.parametrize("query", ["sort=newest", "sort=oldest", "sort=recorded", "escalated_first=true",
                                   "escalated_first=true&sort=oldest", "outcome=ALLOW&sort=oldest",
                                   "authority=kommune:326", "authority=kommune:326&sort=recorded"])
def test_cursor_pages_are_the_numbered_pages_forwards_and_back(big, query):
    numbered, page = [], 1
    while True:
        got = big.get(f"/api/decisions?{query}&page={page}").json()
        if not got["items"]:
            break
        numbered.append([_key(i) for i in got["items"]])
        page += 1
    assert len(numbered) >= 3 and sum(map(len, numbered)) == len({k for p in numbered for k in p})

    forward, data = [], big.get(f"/api/decisions?{query}").json()
    assert data["prev"] is None
    while True:
        forward.append([_key(i) for i in data["items"]])
        if not data["next"]:
            break
        data = big.get(f"/api/decisions?{query}&" + urlencode({"after": data["next"]})).json()
    assert forward == numbered

    backward = [forward[-1]]
    while data["prev"]:
        data = big.get(f"/api/decisions?{query}&" + urlencode({"before": data["prev"]})).json()
        backward.insert(0, [_key(i) for i in data["items"]])
    assert backward == numbered


def test_the_pager_links_by_cursor_and_a_bad_cursor_is_named(big):
    from tests.review.conftest import web_login

    web_login(big, "lo")
    first = big.get("/queue")
    assert "after=" in first.text and "before=" not in first.text
    nxt = first.text.split('class="pager"', 1)[1].split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    second = big.get(nxt)
    assert second.status_code == 200 and "before=" in second.text
    bad = big.get("/queue?after=nonsense")
    assert bad.status_code == 422 and "Ugyldigt sidemærke" in bad.text
    assert big.get("/api/decisions?before=x|y|z|q").status_code == 422


def _walk(client, query: str) -> int:
    n, data = 0, client.get(f"/api/decisions?{query}").json()
    while True:
        n += len(data["items"])
        if not data["next"]:
            return n
        data = client.get(f"/api/decisions?{query}&" + urlencode({"after": data["next"]})).json()


def test_counts_from_the_counters_are_the_rows_listed(big):
    """The counts for an authority, a review status and an agency come from the ``counts`` read model;
    they are exactly the rows the queue lists, also after a review moved a decision's status."""
    csrf = api_login(big, "lo")
    first = big.get("/api/decisions?outcome=ALLOW").json()["items"][0]
    r = big.post(f"/api/decisions/{first['exchange_id']}/reviews", json={"action": "UPHOLD"},
                 headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    for query in ("status=PENDING", "status=UPHELD", "status=UPHELD&outcome=ALLOW", "authority=kommune:326",
                  "authority=kriminalforsorgen:kif-midt-vestsjaelland", "outcome=DENY&status=PENDING",
                  f"since={(NOW - timedelta(days=6)).date()}&until={(NOW - timedelta(days=2)).date()}",
                  f"since={(NOW - timedelta(days=6)).date()}&authority=kommune:326", "pending=true"):
        data = big.get(f"/api/decisions?{query}").json()
        assert data["total"] == _walk(big, query), query
    assert big.get("/api/decisions?status=UPHELD").json()["counts"]["ALLOW"] == 1
    api_login(big, "ksp")  # an agency: its own decisions only
    for query in ("", "outcome=ALLOW"):
        data = big.get(f"/api/decisions?{query}").json()
        assert 0 < data["total"] == _walk(big, query), query
