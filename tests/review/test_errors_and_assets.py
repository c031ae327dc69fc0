"""Swagger UI and ReDoc from the app's own files, charts a reader can tell apart, every route off
the event loop, and `review serve` on a busy port."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys

from fastapi.routing import APIRoute

from services.review.charts import PALETTE, Series, chart_table, stacked_bars, style_of
from tests.adversarial.processes import service_env
from tests.review.conftest import web_login


def test_docs_and_redoc_load_only_local_assets(client):
    for path, assets in (("/docs", ["/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                    "/static/vendor/swagger-ui/swagger-ui.css"]),
                         ("/redoc", ["/static/vendor/redoc/redoc.standalone.js"])):
        page = client.get(path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)=["\\\']([^"\\\']+)', page.text) + re.findall(r"url: *'([^']+)'", page.text)
        assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        for asset in assets:
            assert asset in page.text
            got = client.get(asset)
            assert got.status_code == 200 and len(got.content) > 50_000, asset
    assert client.get("/openapi.json").json()["paths"]


def test_every_route_runs_in_the_thread_pool(web):
    # A plain function is run by FastAPI in its thread pool: database work and scrypt never block
    # the event loop that serves every other request.
    coroutines = [r.path for r in web.routes if isinstance(r, APIRoute) and asyncio.iscoroutinefunction(r.endpoint)]
    assert coroutines == []


def test_charts_name_every_series_in_distinct_styles():
    series = [Series(f"R{i}", f"Begrundelse nummer {i}", {"2026-03-0%d" % (1 + i % 9): i + 1}) for i in range(20)]
    svg = stacked_bars(series, title="Afgørelser", chart_id="c")
    for s in series:
        assert f"{s.label} ({s.total})" in svg  # every series is in the legend, with its total
    styles = [style_of(i) for i in range(20)]
    assert len(set(styles)) == 20  # colour and pattern together tell all 20 apart
    assert {c for c, _ in styles} <= set(PALETTE) and svg.count("<pattern") == 20 - len(PALETTE)
    table = chart_table(series)
    assert [r["label"] for r in table["rows"]] == [s.label for s in series]
    assert sum(r["total"] for r in table["rows"]) == sum(s.total for s in series)
    assert 'role="img"' in svg and "<title" in svg


def test_stats_page_has_a_table_for_each_chart(history, client):
    web_login(client, "aud")
    page = client.get("/stats")
    assert page.text.count('class="chart"') == 2 and page.text.count('class="chart-table"') == 2
    assert "Personen er ikke omfattet (1)" in page.text  # the DENY reason, in the legend with its count
    assert ' style="' not in page.text  # the CSP (default-src 'self') would drop inline styles


def test_an_unexpected_error_is_a_page_in_danish_and_json_under_api(history, web, monkeypatch):
    from fastapi.testclient import TestClient

    from services.review.routes import stats

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(stats, "stats_data", broken)
    with TestClient(web, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        web_login(c, "adm")
        r = c.get("/stats")
        assert r.status_code == 500 and 'lang="da"' in r.text and "Der opstod en fejl" in r.text
        assert "database went away" not in r.text
        r = c.get("/api/stats")
        assert r.status_code == 500 and r.json() == {"detail": "internal error"}


def test_review_serve_on_a_busy_port_says_so_before_announcing_anything(history):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "services.cli", "review", "serve", "--port", str(port)],
                                env=service_env(history.settings), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "review app on" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}")
