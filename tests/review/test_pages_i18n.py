"""Every page of the review app, for every role, in Danish and in English: no code shown raw, no
words of the other language, and error pages as pages (not JSON) in the page's language.

The pages come from services.review.pages (the list the browser suite walks too); the words of
each language from services.review.i18n and labels.yaml, so a new text or label is checked the
day it is added.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from ledger.domain import exchange_id
from services.review.i18n import TEXT
from services.review.labels import KINDS, Labels
from services.review.pages import ERROR_PAGES, PAGES, fill, pages_for
from services.simulation import POLICE
from tests.audit.history import CPR_A, KSP_SENDER
from tests.escalations.test_workflow import V1_DAY, pet_request
from tests.review.conftest import api_login, web_login

ROLE_USERS = {"legal_officer": "lo", "auditor": "aud", "admin": "adm", "agency": "ksp"}


class _Visible(HTMLParser):
    """The text a reader sees in the page's language: no tags, attributes, scripts or styles, and
    nothing inside an element marked as another language (lang="da" citations on English pages)."""

    def __init__(self, lang: str):
        super().__init__()
        self.lang, self.parts, self.stack = lang, [], []

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "input", "meta", "link", "img", "hr"):
            return
        a = dict(attrs)
        other = tag in ("script", "style", "title") or (a.get("lang") not in (None, self.lang) and tag != "html")
        self.stack.append(other or (self.stack[-1] if self.stack else False))

    def handle_endtag(self, tag):
        if tag not in ("br", "input", "meta", "link", "img", "hr") and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not (self.stack and self.stack[-1]):
            self.parts.append(data)

    @classmethod
    def text(cls, html: str, lang: str) -> str:
        p = cls(lang)
        p.feed(html)
        return re.sub(r"\s+", " ", " ".join(p.parts))


LABELS = Labels()
_words_of = {"da": set(), "en": set()}
for _da, _en in TEXT.values():
    if _da != _en:
        _words_of["da"].add(_da.split("{")[0].strip())
        _words_of["en"].add(_en.split("{")[0].strip())
for _kind in KINDS:
    for _pair in LABELS.data.get(_kind, {}).values():
        if _pair[0] != _pair[1]:
            _words_of["da"].add(_pair[0])
            _words_of["en"].add(_pair[1])
_words_of["en"].update(v for k, v in LABELS.data["check"].items() if k != v)
_words_of["da"].update(k for k, v in LABELS.data["check"].items() if k != v)
# Long enough to be the language's own phrase, not a word both languages share, and not part of an
# authority's name (names are proper nouns, the same in both languages: "Kriminalforsorgen Østjylland").
_NAMES = " ".join([*LABELS.orgs.values(), *LABELS.coops.values()])
FOREIGN = {lang: sorted(w for w in words if len(w) >= 12 and w not in _words_of["en" if lang == "da" else "da"]
                        and w not in _NAMES)
           for lang, words in _words_of.items()}

CODE_RES = [
    re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b"),                      # DENY_…, MUNI_SOCIAL_CHILD, …
    re.compile(r"\b[a-z]+_[a-z_]+\b"),                                # legal_officer, socially_vulnerable
    re.compile(r"\b(?:kommune|politikreds|kriminalforsorgen|region|ssp|psp|ksp|infohus):[a-z0-9][a-z0-9:-]*"),
    re.compile(r"\b(?:ALLOW|DENY|ESCALATE|NONE|POLICE|PENDING|UPHELD|UPHOLD|OVERTURN|FLAG|OPEN|APPROVED|REFUSED)\b"),
    re.compile(r"\b[PCAHEDL][0-9]\b"),                                  # rule and step ids
]


def raw_codes(text: str) -> list[str]:
    return sorted({m.group(0) for r in CODE_RES for m in r.finditer(text)})


@pytest.fixture
def ids(history):
    # An escalation to look at, and a review with a note on a KSP decision.
    history.record(history.signed(pet_request("1203911234"), message_id="pet-00001", org_role=POLICE, at=V1_DAY))
    ex = str(exchange_id(KSP_SENDER[0], history.sent["p5-21"]))
    return {"exchange_id": ex, "escalated_id": str(exchange_id(POLICE[0], "pet-00001")),
            "pseudonym": history.pseudonym(CPR_A)}


@pytest.fixture
def reviewed(web, ids):
    with TestClient(web, base_url="http://127.0.0.1") as c:
        token = api_login(c, "lo")
        r = c.post(f"/api/decisions/{ids['exchange_id']}/reviews", headers={"X-CSRF-Token": token},
                   json={"action": "FLAG", "note": "internt notat om sagen", "reason": "følges op"})
        assert r.status_code == 201
    return ids


@pytest.mark.parametrize("lang", ["da", "en"])
def test_every_page_for_every_role_is_in_one_language_without_raw_codes(web, reviewed, lang):
    walked = 0
    for role, user in ROLE_USERS.items():
        with TestClient(web, base_url="http://127.0.0.1") as c:
            assert web_login(c, user).status_code == 303
            c.get("/queue", params={"lang": lang})  # the language is remembered from here on
            for path in pages_for(role):
                r = c.get(fill(path, **reviewed))
                assert r.status_code == 200, (role, path, r.status_code)
                assert f'<html lang="{lang}">' in r.text, (role, path)
                text = _Visible.text(r.text, lang)
                assert raw_codes(text) == [], (role, path, raw_codes(text))
                foreign = [w for w in FOREIGN["en" if lang == "da" else "da"] if w in text]
                assert foreign == [], (role, path, foreign)
                walked += 1
    assert walked == sum(len(pages_for(r)) for r in ROLE_USERS)
    assert set().union(*(pages_for(r) for r in ROLE_USERS)) == set(PAGES)


@pytest.mark.parametrize("lang", ["da", "en"])
def test_error_pages_are_pages_in_the_users_language(web, reviewed, lang):
    with TestClient(web, base_url="http://127.0.0.1") as c:
        web_login(c, "lo")
        c.get("/queue", params={"lang": lang})
        for path, status in ERROR_PAGES.items():
            r = c.get(path)
            assert r.status_code == status, (path, r.status_code)
            assert r.headers["content-type"].startswith("text/html") and f'<html lang="{lang}">' in r.text, path
            title = {404: ("Siden findes ikke", "Page not found"), 422: ("Ugyldigt input", "Invalid input")}[status]
            assert title[0 if lang == "da" else 1] in r.text, path
            text = _Visible.text(r.text, lang)
            assert [w for w in FOREIGN["en" if lang == "da" else "da"] if w in text] == [], path
        # the same mistakes under /api/ are JSON
        for path, status in (("/api/decisions/does-not-exist", 404), ("/api/decisions?since=notadate", 422),
                             ("/api/subjects/zzz", 404), ("/api/decisions?page=100000000000000000000", 422),
                             ("/api/no-such-thing", 404)):
            r = c.get(path)
            assert r.status_code == status and r.headers["content-type"].startswith("application/json"), path
