"""The review app in Debian's Chromium (Playwright), served by uvicorn over a ledger filled through the real
gate pipeline: every page each role reaches, in Danish and in English, has no horizontal overflow at
1280 px, no untranslated code in its visible text and no WCAG 2.1 A/AA violation (axe-core); the review
flow works end to end. Screenshots go to test-artifacts/browser/; with XLEDGER_UPDATE_SCREENSHOTS=1 the
two README screenshots in docs/img/ are written from the same run.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ledger.domain import exchange_id
from services.review import pages
from services.review.app import create_app
from services.review.users import UserStore
from services.simulation import POLICE
from tests.audit.history import CPR_A, CPR_B, KSP_SENDER, build_history
from tests.escalations.test_workflow import SOCIAL, V1_DAY, V2_DAY, no_basis_request, pet_request
from tests.review import browser_kit as kit
from tests.review.conftest import PASSWORD, SECRET

# One user per role; the legal officer's name has a Danish letter.
USERS = {
    "jørgen": ["legal_officer"],
    "aud": ["auditor"],
    "adm": ["admin"],
    "ksp": ["agency:kriminalforsorgen:kif-midt-vestsjaelland"],  # the KSP sender of tests/audit/history.py
}
ROLE_USER = {"legal_officer": "jørgen", "auditor": "aud", "admin": "adm", "agency": "ksp"}
PET_MESSAGE, JC_MESSAGE = "pet-00001", "jc-000001"
README_SHOTS = {"review-queue.png", "review-decision.png"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The ledger (SQLite; the back-ends are the other suites' concern), its users, the app on a port."""
    kit.require_browser()
    from ledger.checkpoint import load_private_key

    h = build_history(f"sqlite:///{tmp_path_factory.mktemp('browser')}/ledger.sqlite")
    store = UserStore(h.ledger.tables)
    for name, roles in USERS.items():
        store.add(name, PASSWORD, roles)
    # Two escalations (a PET request, one without a basis the gate knows), and one erased subject.
    h.record(h.signed(pet_request(CPR_A), message_id=PET_MESSAGE, org_role=POLICE, at=V1_DAY))
    h.record(h.signed(no_basis_request(CPR_B), message_id=JC_MESSAGE, org_role=SOCIAL, at=V2_DAY))
    h.ledger.erase_subject(h.pseudonym(CPR_B), "retten til sletning (browsertest)")
    app = create_app(h.ledger, pseudonym_secret=h.rt.pseudonym_secret, session_secret_value=SECRET,
                     checkpoint_public_key=load_private_key(h.settings.checkpoint_key).public_key())
    with kit.serve(app) as base, kit.chromium() as browser:
        yield {"history": h, "base": base, "browser": browser}
    h.rt.close()


def _seeds(world, role: str) -> list[str]:
    """Every page the app lists for the role (services/review/pages.py), with real ids filled in;
    the walk then follows every link from them, so a page missing from the list is still reached."""
    h = world["history"]
    ids = {"exchange_id": str(exchange_id(KSP_SENDER[0], h.sent["deny-4y"])),
           "escalated_id": str(exchange_id(POLICE[0], PET_MESSAGE)),
           "pseudonym": h.pseudonym(CPR_A)}
    seeds = ["/"] + [pages.fill(p, **ids) for p in pages.pages_for(role)]
    if "/subjects/{pseudonym}" in pages.pages_for(role):
        seeds.append(f"/subjects/{h.pseudonym(CPR_B)}")  # an erased subject
    return seeds


def test_every_role_of_the_page_list_is_walked():
    assert set(pages.ROLES) == set(ROLE_USER)


@pytest.mark.parametrize("lang", ["da", "en"])
@pytest.mark.parametrize("role", list(ROLE_USER))
def test_every_page_of_every_role(world, role, lang):
    page = kit.new_page(world["browser"], lang)
    findings = kit.Findings()
    try:
        kit.log_in(page, world["base"], ROLE_USER[role], PASSWORD, lang)
        visited = kit.walk(page, world["base"], _seeds(world, role), findings, lang=lang, label=f"{role}-{lang}")
    finally:
        page.context.close()
    assert len(visited) >= 2, f"{role} reached only {visited}"
    assert not findings.items, findings.report()


@pytest.mark.parametrize("lang", ["da", "en"])
def test_login_and_error_pages(world, lang):
    """The pages before and beside the app: the login page (also after a failed attempt) and the error pages."""
    base = world["base"]
    page = kit.new_page(world["browser"], lang)
    findings = kit.Findings()
    try:
        page.goto(f"{base}/login?lang={lang}")
        kit.check_page(page, "/login", findings, lang=lang, shot=f"anonymous-{lang}-login")
        page.fill("input[name=username]", "jørgen")
        page.fill("input[name=password]", "not the password")
        with page.expect_navigation():
            page.click("main form button[type=submit]")
        kit.check_page(page, "/login (failed)", findings, lang=lang, shot=f"anonymous-{lang}-login-failed")
        kit.log_in(page, base, "jørgen", PASSWORD, lang)
        for path, status in pages.ERROR_PAGES.items():
            response = page.goto(base + path)
            ctype = response.headers.get("content-type", "")
            if "text/html" not in ctype:
                findings.add(path, [f"answers {response.status} with {ctype}, not a Danish/English HTML error page"])
                continue
            if response.status != status:
                findings.add(path, [f"answers {response.status}, expected {status}"])
            kit.check_page(page, path, findings, lang=lang,
                           shot=f"errors-{lang}-{path.strip('/').replace('/', '-').replace('?', '-')}")
    finally:
        page.context.close()
    assert not findings.items, findings.report()


def test_review_flow_end_to_end(world):
    """A legal officer logs in, finds a decision in the queue, has a review refused for a missing reason
    (what was typed stays), records it, sees it listed with date, reviewer and recipient; then decides an
    escalation. The ledger holds what the browser did."""
    h, base = world["history"], world["base"]
    deny = exchange_id(KSP_SENDER[0], h.sent["deny-4y"])
    page = kit.new_page(world["browser"], "da")
    findings = kit.Findings()
    try:
        page.goto(base + "/queue")
        assert urlsplit(page.url).path == "/login"  # not logged in yet
        kit.log_in(page, base, "jørgen", PASSWORD)
        page.goto(base + "/queue")
        page.click(f"a[href='/decisions/{deny}']")
        page.wait_for_url(f"**/decisions/{deny}**")
        assert str(deny) in page.content()  # the URL's id is the one the page names

        # Overturning needs a reason: the form comes back with the error and with what was typed.
        form = page.locator("#review-form")
        form.locator("select[name=action]").select_option("OVERTURN")
        form.locator("textarea[name=note]").fill("Notat skrevet før fejlen")
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        kit.check_page(page, "review refused", findings, lang="da", shot="flow-da-review-refused")
        assert page.locator("#review-form textarea[name=note]").input_value() == "Notat skrevet før fejlen"
        assert page.locator("#review-form select[name=action]").input_value() == "OVERTURN"
        assert page.locator("[role=alert]").count() >= 1

        page.locator("#review-form select[name=action]").select_option("UPHOLD")
        page.locator("#review-form select[name=recipient]").select_option("kommune:326")
        page.locator("#review-form input[name=reason]").fill("Løsladelsen ligger uden for vinduet")
        with page.expect_navigation():
            page.locator("#review-form button[type=submit]").click()
        entry = page.locator("#reviews tbody tr").first
        cells = entry.locator("td").all_inner_texts()
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", cells[0]), cells  # date and time
        assert cells[1:4] == ["Stadfæst", "Kalundborg Kommune", "jørgen"], cells  # action, recipient, reviewer
        assert "Løsladelsen ligger uden for vinduet" in cells[4] and "Notat skrevet før fejlen" in cells[4]
        kit.check_page(page, "decision reviewed", findings, lang="da", shot="flow-da-decision-reviewed")
        if os.environ.get("XLEDGER_UPDATE_SCREENSHOTS") == "1":
            kit.README_IMAGES.mkdir(parents=True, exist_ok=True)
            page.evaluate("() => window.scrollTo(0, 0)")  # the request and the start of its check trace
            page.screenshot(path=str(kit.README_IMAGES / "review-decision.png"))

        page.goto(base + "/queue")
        row = page.locator("#queue tbody tr", has=page.locator(f"a[href='/decisions/{deny}']"))
        assert "Stadfæstet" in row.inner_text()  # the review is listed in the queue
        kit.check_page(page, "queue", findings, lang="da", shot="flow-da-queue")
        if os.environ.get("XLEDGER_UPDATE_SCREENSHOTS") == "1":
            page.screenshot(path=str(kit.README_IMAGES / "review-queue.png"))

        # An escalation: refused without a reason keeps what was typed, then approved.
        pet = exchange_id(POLICE[0], PET_MESSAGE)
        page.goto(f"{base}/escalations/{pet}")
        kit.check_page(page, "escalation", findings, lang="da", shot="flow-da-escalation")
        approve = page.locator(f"form[action='/escalations/{pet}/approve']").first
        approve.locator("[name=basis]").fill("PET-loven § 4, forebyggelse")
        approve.locator("[name=citation]").fill("PET-loven § 4")
        with page.expect_navigation():
            approve.locator("button[type=submit]").click()
        assert "PET-loven § 4, forebyggelse" in kit.visible_text(page)
        kit.check_page(page, "escalation approved", findings, lang="da", shot="flow-da-escalation-approved")
    finally:
        page.context.close()

    ex = h.ledger.get_exchange(deny)
    assert [(r["action"], r["recipient"], r["reviewer"], r["reason"], r["note"]) for r in ex.reviews] == [
        ("UPHOLD", "kommune:326", "jørgen", "Løsladelsen ligger uden for vinduet", "Notat skrevet før fejlen")]
    assert not findings.items, findings.report()


@pytest.mark.parametrize("lang, says", [("da", "Personen blev slettet"), ("en", "The subject was erased on")])
def test_an_erased_subject_s_page_says_so(world, lang, says):
    h, base = world["history"], world["base"]
    page = kit.new_page(world["browser"], lang)
    try:
        kit.log_in(page, base, "aud", PASSWORD, lang)
        page.goto(f"{base}/subjects/{h.pseudonym(CPR_B)}")
        notice = page.locator("[role=status]").inner_text()
        assert says in notice and "retten til sletning (browsertest)" in notice
        assert page.locator("table tbody tr").count() == 3  # its register remains: two KSP exchanges, one escalation
        page.goto(f"{base}/subjects/{h.pseudonym(CPR_A)}")
        assert page.locator("[role=status]").count() == 0
    finally:
        page.context.close()


@pytest.mark.parametrize("path, rendered", [("/docs", ".swagger-ui .info .title"), ("/redoc", "[role=navigation], .menu-content")])
def test_api_documentation_renders_without_the_internet(world, path, rendered):
    """Swagger UI and ReDoc render from the app's own files: every request to another host is refused,
    as on a government network without CDN access, and the Content-Security-Policy stays in force."""
    base = world["base"]
    page = kit.new_page(world["browser"], "da")
    outside, problems = [], []
    page.context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                       else (outside.append(route.request.url), route.abort()))
    def console(m):
        # The CSP refusing an outside address is the point (ReDoc's logo); any other error is a problem.
        if m.type == "error" and not re.search(r"violates the following Content Security Policy.*|"
                                               r"Refused to load .* 'https://", m.text):
            problems.append(m.text)
        elif m.type == "error":
            refused.append(m.text)

    refused: list[str] = []
    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(base + path)
        page.wait_for_selector(rendered, timeout=20_000)
        assert "exchange-ledger review API" in kit.visible_text(page)
        page.screenshot(path=str(kit.ARTIFACTS / f"api-docs{path.replace('/', '-')}.png"))
    finally:
        page.context.close()
    assert outside == [], f"{path} reaches outside the app: {outside}"
    assert problems == [], f"{path}: {problems}"
    assert all(re.search(r"'https://(?!127\.0\.0\.1)", r) for r in refused), refused  # only outside hosts refused


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_readme_shows_the_suite_s_screenshots():
    """The README's two screenshots are the ones test_review_flow_end_to_end writes (1280 px wide windows)."""
    readme = (kit.ROOT / "README.md").read_text()
    for name in README_SHOTS:
        assert f"](docs/img/{name})" in readme, f"README does not show docs/img/{name}"
        assert _png_size(kit.README_IMAGES / name) == (kit.WIDTH, kit.HEIGHT)
