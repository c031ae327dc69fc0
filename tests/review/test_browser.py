"""End to end in headless Debian chromium (Playwright): log in, filter the queue, record a review, find it in the ledger."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from ledger.domain import exchange_id
from tests.audit.history import KSP_SENDER
from tests.review.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(web):
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_legal_officer_filters_the_queue_and_records_a_review(history, server):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 800})
            page.goto(server + "/queue")
            assert "/login" in page.url  # not logged in yet
            page.fill("input[name=username]", "lo")
            page.fill("input[name=password]", PASSWORD)
            page.screenshot(path=str(ARTIFACTS / "review-1-login.png"))
            page.click("button[type=submit]")
            page.wait_for_url("**/queue")
            assert page.locator("#queue tbody tr").count() == 5

            page.select_option("select[name=outcome]", "DENY")
            page.click("#filters button[type=submit]")
            page.wait_for_url("**outcome=DENY**")
            rows = page.locator("#queue tbody tr")
            denied = str(exchange_id(KSP_SENDER[0], history.sent["deny-4y"]))
            assert rows.count() == 1 and denied[:8] in rows.first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "review-2-queue-filtered.png"), full_page=True)

            page.click(f"a[href='/decisions/{denied}']")
            page.wait_for_url("**/decisions/**")
            assert "Personen er ikke omfattet" in page.content()
            page.select_option("#review-form select[name=action]", "UPHOLD")
            page.fill("#review-form input[name=reason]", "Løsladelsen ligger uden for vinduet")
            page.fill("#review-form textarea[name=note]", "Kontrolleret i browsertest")
            page.click("#review-form button[type=submit]")
            page.wait_for_selector("#reviews tbody tr")
            assert "Løsladelsen ligger uden for vinduet" in page.locator("#reviews").inner_text()
            page.screenshot(path=str(ARTIFACTS / "review-3-decision-reviewed.png"), full_page=True)

            page.goto(server + "/queue?status=UPHELD&lang=en")
            assert page.locator("#queue tbody tr").count() == 1
            page.screenshot(path=str(ARTIFACTS / "review-4-queue-upheld-en.png"), full_page=True)
        finally:
            browser.close()

    ex = history.ledger.get_exchange(exchange_id(KSP_SENDER[0], history.sent["deny-4y"]))
    assert [(r["action"], r["reviewer"], r["reason"]) for r in ex.reviews] == [
        ("UPHOLD", "lo", "Løsladelsen ligger uden for vinduet")]
    reviewed = [n for n in history.ledger.notifications(1, 10_000) if n.topic.endswith("Exchange.Reviewed")]
    assert len(reviewed) == 1 and reviewed[0].originator_id == ex.id
