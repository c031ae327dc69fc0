"""`xledger users add|list|remove|passwd` and the password store."""

from __future__ import annotations

import unicodedata

import pytest
from typer.testing import CliRunner

from ledger.application import Ledger
from services.review.users import UserError, UserStore, check_username, hash_password, verify_password

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


def test_password_from_stdin_without_a_terminal(ledger_url):
    from services.cli import app

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), env={"XLEDGER_LEDGER_URL": ledger_url, "XLEDGER_USER_PASSWORD": None},
                             input=input)

    assert run("ledger", "init").exit_code == 0
    ok = run("users", "add", "jørgen", "--role", "auditor", "--password-stdin", input="a pass phrase \n")
    assert ok.exit_code == 0, ok.output
    assert "added jørgen (auditor)" in ok.output and "pass phrase" not in ok.output
    # No terminal and no password: a clear line, not click's bare "Aborted."
    silent = run("users", "add", "ib", "--role", "auditor", input="")
    assert silent.exit_code == 2 and "no terminal" in silent.output and "--password-stdin" in silent.output
    empty = run("users", "add", "ib", "--role", "auditor", "--password-stdin", input="")
    assert empty.exit_code == 2 and "standard input is empty" in empty.output
    blank = run("users", "add", "ib", "--role", "auditor", "--password-stdin", input="\nsecond line\n")
    assert blank.exit_code == 2 and "first line of standard input is empty" in blank.output
    both = run("users", "add", "ib", "--role", "auditor", "--password", "a long password", "--password-stdin",
               input="a long password\n")
    assert both.exit_code == 2 and "not both" in both.output
    short = run("users", "add", "ib", "--role", "auditor", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    # Bad user names and roles are refused before any password is read.
    bad = run("users", "add", "Bad Name", "--role", "auditor", "--password-stdin", input="a long password\n")
    assert bad.exit_code == 2 and "not allowed: ' '" not in bad.output and "U+0020" in bad.output
    assert run("users", "passwd", "jørgen", "--password-stdin", input="another pass phrase\r\n").exit_code == 0
    assert run("users", "passwd", "jørgen", input="").exit_code == 2
    # "andré" typed with a combining accent (e + U+0301, as some keyboards and forms send it) is stored in NFC.
    assert run("users", "add", "andre\u0301", "--role", "auditor", "--password", "a long password").exit_code == 0

    ledger = Ledger(ledger_url)
    try:
        store = UserStore(ledger.tables)
        assert store.authenticate("jørgen", "another pass phrase") is not None  # \r\n is the line end, not the password
        assert store.authenticate("andré", "a long password") is not None
        assert store.authenticate("andre\u0301", "a long password") is not None
        assert [u.username for u in store.list()] == ["andré", "jørgen"]
    finally:
        ledger.close()
    # one user, whichever form the name is typed in
    assert run("users", "add", "andré", "--role", "auditor", "--password", "a long password").exit_code == 2
    assert run("users", "remove", "andre\u0301").exit_code == 0


@pytest.mark.parametrize("name", ["jørgen", "søren.aagaard", "åse-marie", "æble_1", "andré", "müller", "ib"])
def test_danish_user_names_are_accepted(name):
    assert check_username(name) == name
    assert check_username(unicodedata.normalize("NFD", name)) == name  # stored NFC


@pytest.mark.parametrize("name, why", [
    ("Jørgen", "did you mean 'jørgen'"),
    ("j", "2-64 characters"),
    ("-jørgen", "starting with a letter or digit"),
    ("jörgen\u200b", "U+200B"),                 # an invisible zero-width space
    ("jоrgen", "'о'"),                          # Cyrillic о: a look-alike, not a Danish letter
    ("jørgen@kommune", "'@'"),
    ("x" * 65, "2-64 characters"),
])
def test_user_names_outside_the_allowed_set_are_refused_with_the_reason(name, why):
    with pytest.raises(UserError) as exc:
        check_username(name)
    assert why in str(exc.value)
