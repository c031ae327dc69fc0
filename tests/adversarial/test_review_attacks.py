"""Attacks on a real review server (`xledger review serve` in its own process) over real HTTP, on
both ledger databases: a 200 MB body, X-Forwarded-For rotation against the log-in throttle, a
stolen cookie after log-out and after a password change made by another process, huge page
numbers, and an agency user looking for internal review notes. After every attack the server is
still up and answers."""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ledger.domain import exchange_id
from services.review.users import UserStore
from tests.adversarial.processes import service_env
from tests.audit.history import KSP_SENDER, build_history
from tests.harness import handles_sigterm, wait_for

PASSWORD = "correct horse battery"
USERS = {"lo": ["legal_officer"], "ksp": ["agency:" + KSP_SENDER[0]]}


class Server:
    def __init__(self, settings):
        self.out = tempfile.NamedTemporaryFile(prefix="xledger-review-", suffix=".out", delete=False)
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli", "review", "serve", "--port", "0"],
                                        env=service_env(settings, XLEDGER_LOG_LEVEL="WARNING"),
                                        stdout=self.out, stderr=subprocess.STDOUT)
        assert wait_for(lambda: "review app on http://" in self.output() or self.process.poll() is not None, 60), \
            self.output()
        m = re.search(r"review app on http://127\.0\.0\.1:(\d+)/", self.output())
        assert m, self.output()
        self.port = int(m.group(1))

    def output(self) -> str:
        return Path(self.out.name).read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def request(self, method: str, path: str, body=None, headers=None, cookie: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = f"xl_session={cookie}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        cookies = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
        conn.close()
        return r.status, data, cookies

    def login(self, user: str, password: str = PASSWORD, xff: str | None = None):
        status, data, cookies = self.request("POST", "/api/login", {"username": user, "password": password},
                                             headers={"X-Forwarded-For": xff} if xff else None)
        cookie = next((c.split(";")[0].split("=", 1)[1] for c in cookies if c.startswith("xl_session=")), None)
        return status, (json.loads(data) if data.startswith(b"{") else {}), cookie

    def alive_and_answering(self) -> bool:
        return self.process.poll() is None and self.request("GET", "/login")[0] == 200

    def stop(self) -> int:
        if self.process.poll() is None:
            wait_for(lambda: handles_sigterm(self.process.pid), 30)
            self.process.terminate()
        code = self.process.wait(timeout=30)
        Path(self.out.name).unlink(missing_ok=True)
        return code


@pytest.fixture
def server(ledger_url):
    history = build_history(ledger_url)
    store = UserStore(history.ledger.tables)
    for name, roles in USERS.items():
        store.add(name, PASSWORD, roles)
    s = Server(history.settings)
    try:
        yield s, history
    finally:
        assert s.stop() == 0, s.output()[-2000:]
        history.rt.close()


def test_a_200_mb_body_is_refused_without_being_read(server):
    s, _ = server
    before = s.rss_kib()
    # Declared: answered 413 at once, the body never sent.
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    conn.putrequest("POST", "/api/login")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(200 * 1024 * 1024))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and b"too large" in r.read()
    conn.close()
    # Chunked, no length: the server stops reading once it passes the limit, answers 413 and
    # closes. The client sees the answer, or, when the close (with its body still unread on the
    # server's side, so a TCP reset) comes first, a reset: either way long before 200 MB.
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    sock.sendall(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    sent = 0
    answer = b""
    closed = False
    try:
        while sent < 200 * 1024 * 1024:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")  # whole chunks only
            sent += len(chunk)
        answer = sock.recv(4096)
        closed = not answer
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    except socket.timeout:  # the server stopped reading: its answer must be there
        answer = sock.recv(4096)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413") or (closed and not answer), answer[:200]
    assert sent < 50 * 1024 * 1024, sent  # refused long before the end
    assert s.rss_kib() - before < 60 * 1024, (before, s.rss_kib())
    assert s.alive_and_answering()


def test_rotating_x_forwarded_for_does_not_get_round_the_log_in_throttle(server):
    s, _ = server
    # A spray of user names, each from a made-up forwarded address: every try is one address,
    # the connection's, because no proxy is configured.
    for i in range(5):
        status, _, _ = s.login(f"guess{i}", "wrong password", xff=f"203.0.113.{i + 1}")
        assert status == 401
    status, body, _ = s.login("lo", PASSWORD, xff="198.51.100.77")
    assert status == 429 and "too many" in body["detail"]
    assert s.alive_and_answering()


def test_a_stolen_cookie_dies_at_log_out_and_at_a_password_change_made_elsewhere(server):
    s, history = server
    status, body, cookie = s.login("lo")
    assert status == 200 and cookie
    assert s.request("GET", "/api/me", cookie=cookie)[0] == 200
    assert s.request("POST", "/api/logout", headers={"X-CSRF-Token": body["csrf_token"]}, cookie=cookie)[0] == 200
    assert s.request("GET", "/api/me", cookie=cookie)[0] == 401  # replayed after log-out
    status, body, cookie = s.login("lo")
    assert s.request("GET", "/api/me", cookie=cookie)[0] == 200
    # the password changed by another process (as `xledger users passwd` does)
    UserStore(history.ledger.tables).passwd("lo", "a new long password")
    assert s.request("GET", "/api/me", cookie=cookie)[0] == 401
    assert s.alive_and_answering()


def test_huge_numbers_are_422_not_500(server):
    s, _ = server
    _, _, cookie = s.login("lo")
    for path in ("/api/decisions?page=100000000000000000000", "/queue?page=100000000000000000000",
                 "/queue?page=-1", "/api/decisions?page=1e9"):
        status, data, _ = s.request("GET", path, cookie=cookie)
        assert status == 422, (path, status, data[:200])
    status, data, _ = s.request("GET", "/queue?page=100000000000000000000", cookie=cookie)
    assert b'<html lang="da">' in data and "Ugyldigt input".encode() in data
    assert s.alive_and_answering()


def test_an_agency_user_sees_no_internal_review_notes_or_reviewers(server):
    s, history = server
    ex = str(exchange_id(KSP_SENDER[0], history.sent["p5-21"]))
    _, body, lo = s.login("lo")
    status, _, _ = s.request("POST", f"/api/decisions/{ex}/reviews", cookie=lo,
                             body={"action": "FLAG", "note": "hemmeligt internt notat", "reason": "tjek"},
                             headers={"X-CSRF-Token": body["csrf_token"]})
    assert status == 201
    _, _, ksp = s.login("ksp")
    status, data, _ = s.request("GET", f"/api/decisions/{ex}", cookie=ksp)
    assert status == 200
    reviews = json.loads(data)["reviews"]
    assert reviews and all(set(r) == {"action", "recipient", "at"} for r in reviews)
    assert b"hemmeligt internt notat" not in data and b'"lo"' not in data
    status, page, _ = s.request("GET", "/queue", cookie=ksp)
    assert status == 200 and b"hemmeligt" not in page
    assert s.alive_and_answering()
