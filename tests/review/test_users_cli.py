"""`xledger users add|list|remove|passwd` and the password store."""

from __future__ import annotations

from typer.testing import CliRunner

from ledger.application import Ledger
from services.review.users import UserStore, hash_password, verify_password

runner = CliRunner()


def xl(url: str, *args: str):
    from services.cli import app

    return runner.invoke(app, list(args), env={"XLEDGER_LEDGER_URL": url})


def test_users_commands(ledger_url):
    refused = xl(ledger_url, "users", "add", "lo1", "--role", "legal_officer", "--password", "a long password")
    assert refused.exit_code == 2 and "no ledger" in refused.output  # users live in a ledger; none is made here
    assert xl(ledger_url, "ledger", "init").exit_code == 0
    ok = xl(ledger_url, "users", "add", "lo1", "--role", "legal_officer", "--password", "a long password")
    assert ok.exit_code == 0, ok.output
    assert xl(ledger_url, "users", "add", "k1", "--role", "agency:kommune:326", "--role", "auditor",
              "--password", "a long password").exit_code == 0
    listed = xl(ledger_url, "users", "list")
    assert "lo1\tlegal_officer" in listed.stdout and "k1\tagency:kommune:326,auditor" in listed.stdout
    assert "scrypt" not in listed.stdout
    assert xl(ledger_url, "users", "add", "lo1", "--role", "auditor", "--password", "a long password").exit_code == 2
    assert xl(ledger_url, "users", "add", "x1", "--role", "superuser", "--password", "a long password").exit_code == 2
    assert xl(ledger_url, "users", "add", "x2", "--role", "agency:kommune:999", "--password", "a long password").exit_code == 2
    assert xl(ledger_url, "users", "add", "x3", "--role", "auditor", "--password", "short").exit_code == 2
    assert xl(ledger_url, "users", "add", "Bad Name", "--role", "auditor", "--password", "a long password").exit_code == 2
    assert xl(ledger_url, "users", "passwd", "lo1", "--password", "another long one").exit_code == 0
    assert xl(ledger_url, "users", "passwd", "ghost", "--password", "another long one").exit_code == 2
    ledger = Ledger(ledger_url)
    try:
        store = UserStore(ledger.tables)
        assert store.authenticate("lo1", "another long one") is not None
        assert store.authenticate("lo1", "a long password") is None
    finally:
        ledger.close()
    assert xl(ledger_url, "users", "remove", "lo1").exit_code == 0
    assert xl(ledger_url, "users", "remove", "lo1").exit_code == 2
    assert "lo1" not in xl(ledger_url, "users", "list").stdout


def test_password_hashes_are_salted_scrypt():
    a, b = hash_password("same password"), hash_password("same password")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("same password", a) and not verify_password("other", a)
    assert not verify_password("x", "garbage")


def test_review_serve_refuses_a_public_address_with_the_dev_secret(tmp_path):
    r = xl(f"sqlite:///{tmp_path}/l.sqlite", "review", "serve", "--host", "0.0.0.0")
    assert r.exit_code == 2 and "XLEDGER_SESSION_SECRET" in r.output
