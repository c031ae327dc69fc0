"""What the browser tests share: Debian's Chromium through Playwright, the review app served by uvicorn
on a free port, axe-core from its npm package, and the checks run on every page.

Chromium is Debian's (/usr/bin/chromium, `make browser`), never a browser build Playwright downloads.
axe-core comes from tests/review/js/node_modules (`make browser` runs `npm ci` there; the folder is
not committed). The checks (``check_page``) are what issue #16 asks of every page: no horizontal
overflow at 1280 px, no untranslated code in the visible text, no WCAG 2.1 A/AA violation.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("XLEDGER_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "tests" / "review" / "js" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
README_IMAGES = ROOT / "docs" / "img"
WIDTH, HEIGHT = 1280, 800
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

# Codes a reader should never meet in the visible text of a page: reason codes, enum-style codes
# (PREVENTIVE_COORDINATION, NONE), snake_case identifiers (legal_officer, socially_vulnerable) and
# authority ids (kommune:326, kriminalforsorgen:horserod). Names, labels and short rule ids (P5, C3) pass.
UNTRANSLATED = [
    ("reason code", re.compile(r"\b(?:DENY|ALLOW|ESCALATE|WARN)_[A-Z0-9_]+\b")),
    ("upper-case code", re.compile(r"\b[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+\b")),
    ("raw NONE", re.compile(r"\bNONE\b")),
    ("snake_case identifier", re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")),
    ("authority id", re.compile(r"\b[a-z][a-z_]*:[a-z0-9][a-z0-9_-]*\b")),
]


def require_browser() -> None:
    """Skip (with the reason) when Debian's Chromium or Node is missing; fail when Node is there but
    axe-core was not installed, since then `make browser` was not run and the test would prove nothing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (apt-get install chromium)")
    if not AXE.exists():
        if shutil.which("node") is None or shutil.which("npm") is None:
            pytest.skip("node/npm is missing, so axe-core cannot be installed: `make browser` needs them")
        pytest.fail(f"{AXE.relative_to(ROOT)} is missing: run `make browser` "
                    "(npm ci --prefix tests/review/js) before the browser tests")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling uvicorn's own "started" flag, not a fixed wait
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # A Danish workstation: Chromium's own texts (a date field's dd.mm.åååå) in Danish, from Debian's
        # chromium-l10n (`make browser`); without it they stay English, which no check depends on.
        env = {**os.environ, "LANGUAGE": "da", "LANG": "da_DK.UTF-8"}
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--lang=da"], env=env)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, lang: str = "da"):
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, locale="da-DK" if lang == "da" else "en-GB",
                                  timezone_id="Europe/Copenhagen")
    # axe-core is added to every document before the page's own scripts, through the DevTools protocol:
    # the app's Content-Security-Policy (no inline script) stays in force and is not weakened for the test.
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.set_default_timeout(20_000)
    # Script errors and what the Content-Security-Policy blocks (an inline style or script of a template)
    # are findings of the page they happen on (check_page reports and clears them).
    errors: list[str] = []
    def console(m) -> None:
        # An error page's own status (404, 422) is logged as a failed load of the document: that is the page.
        if m.type == "error" and not (m.text.startswith("Failed to load resource")
                                      and (m.location or {}).get("url") == page.url):
            errors.append(f"console error: {m.text[:300]} ({(m.location or {}).get('url', '?')})")

    page.on("console", console)
    page.on("pageerror", lambda e: errors.append(f"script error: {str(e)[:300]}"))
    PAGE_ERRORS[id(page)] = errors
    return page


PAGE_ERRORS: dict[int, list[str]] = {}


def page_errors(page) -> list[str]:
    """The console and script errors since the last call, for this page."""
    errors = PAGE_ERRORS.get(id(page), [])
    out, errors[:] = list(errors), []
    return out


def log_in(page, base: str, user: str, password: str, lang: str = "da") -> None:
    page.goto(f"{base}/login?lang={lang}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit], main form button[type=submit]")
    assert "/login" not in urlsplit(page.url).path, f"{user} could not log in: {page.url}"


# -- the checks ----------------------------------------------------------------------------------

_OVERFLOW_JS = r"""() => {
  const doc = document.documentElement;
  const out = {page: doc.scrollWidth, viewport: window.innerWidth, boxes: []};
  for (const el of document.querySelectorAll('body *')) {
    const style = getComputedStyle(el);
    if ((style.overflowX === 'auto' || style.overflowX === 'scroll') && el.scrollWidth > el.clientWidth + 1) {
      const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                   (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : '');
      out.boxes.push(`${name} scrolls sideways (${el.scrollWidth} px in ${el.clientWidth} px)`);
    }
  }
  return out;
}"""


def overflow(page) -> list[str]:
    """Horizontal overflow of the page at 1280 px, and boxes that scroll sideways to hide it."""
    r = page.evaluate(_OVERFLOW_JS)
    found = []
    if r["page"] > r["viewport"]:
        found.append(f"page is {r['page']} px wide in a {r['viewport']} px window")
    return found + r["boxes"]


def untranslated(text: str) -> list[str]:
    found, reported = [], set()
    for what, rx in UNTRANSLATED:
        hits = sorted(set(rx.findall(text)) - reported)  # each code once, under the first pattern it meets
        reported |= set(hits)
        if hits:
            found.append(f"{what}: {', '.join(hits[:8])}{' …' if len(hits) > 8 else ''}")
    return found


def axe(page) -> list[str]:
    """WCAG 2.1 A and AA violations axe-core finds in the page as it is rendered."""
    assert page.evaluate("() => typeof window.axe !== 'undefined'"), "axe-core is not in the page"
    result = page.evaluate("""async (tags) => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ')), count: v.nodes.length}));
    }""", AXE_TAGS)
    return [f"axe {v['id']} ({v['impact']}): {v['help']} — {v['count']} element(s), e.g. {'; '.join(v['nodes'])}"
            for v in result]


def visible_text(page) -> str:
    # innerText: what is rendered (titles and hidden ids on hover are not), option texts of selects included
    return page.evaluate("() => document.body ? document.body.innerText : ''")


@dataclass
class Findings:
    items: list[str] = field(default_factory=list)

    def add(self, where: str, problems: list[str]) -> None:
        self.items += [f"{where}: {p}" for p in problems]

    def report(self) -> str:
        return f"{len(self.items)} problem(s):\n  " + "\n  ".join(self.items)


def check_page(page, where: str, findings: Findings, *, lang: str, shot: str | None = None) -> None:
    """Every check on the page as it stands; a screenshot under test-artifacts/browser/ when named."""
    html_lang = page.evaluate("() => document.documentElement.lang")
    if html_lang != lang:
        findings.add(where, [f"<html lang={html_lang!r}>, expected {lang!r}"])
    findings.add(where, overflow(page))
    findings.add(where, untranslated(visible_text(page)))
    findings.add(where, axe(page))
    findings.add(where, page_errors(page))
    if shot:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)


# -- walking every page a role reaches -------------------------------------------------------------

_ID_SEGMENT = re.compile(r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64}|\d+)$")
# Not pages of the HTML app: the JSON API, the API documentation (third-party UIs), static files, logging out.
SKIP_PATHS = re.compile(r"^/(?:api/|docs|redoc|openapi\.json|static/|logout)")


def page_key(url: str) -> tuple[str, tuple[str, ...]]:
    """One visit per kind of page: ids in the path and the values of the query do not matter."""
    parts = urlsplit(url)
    path = "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in parts.path.split("/"))
    return path, tuple(sorted({k for k, _ in parse_qsl(parts.query)} - {"lang"}))


def same_site_links(page, base: str) -> list[str]:
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]'), a => a.href)")
    out = []
    for href in hrefs:
        parts = urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" != base or SKIP_PATHS.match(parts.path):
            continue
        if any(k == "lang" for k, _ in parse_qsl(parts.query)):
            continue  # the language switch: each language is walked on its own
        out.append(href.split("#", 1)[0])
    return out


def walk(page, base: str, seeds: list[str], findings: Findings, *, lang: str, label: str,
         limit: int = 80) -> list[str]:
    """Visit the seeds and every page linked from them (same site, one of each kind), checking each;
    returns the paths visited. A linked page that fails (4xx/5xx) or sends back to the login is a finding."""
    todo = [(base + s, True) for s in seeds]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    visited: list[str] = []
    while todo and len(visited) < limit:
        url, seed = todo.pop(0)
        key = page_key(url)
        if key in seen and not seed:  # every seed is visited; of the pages found by links, one of each kind
            continue
        seen.add(key)
        response = page.goto(url)
        where = f"[{label}] {url[len(base):]}"
        final = urlsplit(page.url).path
        if response is None:
            findings.add(where, ["no response"])
            continue
        ctype = response.headers.get("content-type", "")
        if "text/html" not in ctype:
            findings.add(where, [f"answers {response.status} with {ctype or 'no content type'}, not an HTML page"])
            continue
        if response.status >= 400:
            findings.add(where, [f"a linked page answers {response.status}"])
        if final == "/login" and not url.startswith(base + "/login"):
            findings.add(where, ["sends a logged-in user back to the login page"])
            continue
        visited.append(url[len(base):])
        slug = re.sub(r"[^a-z0-9]+", "-", " ".join([key[0], *key[1]]).lower()).strip("-") or "home"
        shot = f"{label}-{slug}" + (f"-{len(visited)}" if seed else "")
        check_page(page, where, findings, lang=lang, shot=shot)
        todo += [(u, False) for u in same_site_links(page, base) if page_key(u) not in seen]
    if todo and len(visited) >= limit:
        findings.add(f"[{label}]", [f"more than {limit} kinds of page: the walk stopped (raise the limit)"])
    return visited
