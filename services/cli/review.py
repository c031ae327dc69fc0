"""`xledger review serve` (the legal officer's web app) and `xledger users add|list|remove|passwd`."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from services.cli.audit import _ledger
from services.cli.common import LEDGER_URL, fail, ledger_settings, require_trusted


PASSWORD_STDIN = typer.Option(False, "--password-stdin",
                              help="Read the password from the first line of standard input (for scripts; no terminal needed).")
PASSWORD = typer.Option(None, "--password", help="The password (visible to other local users in the process list; "
                        "prefer --password-stdin). Prompted on a terminal when omitted, or XLEDGER_USER_PASSWORD.")


def _password(value: Optional[str], from_stdin: bool, confirm: bool = True) -> str:
    """The password from exactly one source: --password, --password-stdin, XLEDGER_USER_PASSWORD or a prompt."""
    if from_stdin:
        if value is not None:
            fail("give the password either with --password or with --password-stdin, not both")
        line = sys.stdin.readline()
        if not line:
            fail("--password-stdin: standard input is empty (pipe the password in, e.g. `... --password-stdin < file`)")
        # Only the line end is the pipe's; spaces belong to the password (a pass phrase may end in one).
        value = line.rstrip("\r\n")
        if not value:
            fail("--password-stdin: the first line of standard input is empty")
        return value
    if value is None:
        value = os.environ.get("XLEDGER_USER_PASSWORD")
    if value is None:
        if not sys.stdin.isatty():
            fail("no password given and no terminal to ask for one: use --password-stdin (or XLEDGER_USER_PASSWORD)")
        value = typer.prompt("password", hide_input=True, confirmation_prompt=confirm)
    return value


def _checkpoint_public_key(settings):
    # The operator's own checkpoint key (as `xledger verify` without --public-key does).
    try:
        from ledger.checkpoint import load_private_key

        return load_private_key(settings.checkpoint_key).public_key()
    except Exception:
        return None


def register(app: typer.Typer, subject_app: typer.Typer, policy_app: typer.Typer) -> None:
    review_app = typer.Typer(help="The legal officer's review web app.", no_args_is_help=True)
    users_app = typer.Typer(help="Users and roles of the review app (legal_officer, auditor, admin, agency:<id>).",
                            no_args_is_help=True)
    app.add_typer(review_app, name="review")
    app.add_typer(users_app, name="users")

    @review_app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", envvar="XLEDGER_REVIEW_HOST", help="Address to listen on."),
        port: int = typer.Option(8080, "--port", envvar="XLEDGER_REVIEW_PORT", min=0, max=65535,
                                 help="Port to listen on (0: any free port; the URL printed names it)."),
        trusted_proxy: List[str] = typer.Option(
            [], "--trusted-proxy", envvar="XLEDGER_REVIEW_TRUSTED_PROXIES",
            help="Address or network of a reverse proxy whose X-Forwarded-For is believed (repeat; default none: "
                 "the peer address is the client)."),
        max_body: int = typer.Option(256 * 1024, "--max-body-bytes", envvar="XLEDGER_REVIEW_MAX_BODY_BYTES",
                                     min=1024, max=64 * 1024 * 1024,
                                     help="Larger request bodies are refused with 413 before they are read."),
        ledger_url: Optional[str] = LEDGER_URL,
    ) -> None:
        """Serve the review app (pages in Danish, ?lang=en for English) and its JSON API under /api/."""
        import socket

        import uvicorn

        from services.review.app import create_app
        from services.config import DEV_SESSION_SECRET

        settings = ledger_settings(ledger_url)
        require_trusted(settings, "review serve")
        if host not in ("127.0.0.1", "localhost", "::1") and settings.session_secret == DEV_SESSION_SECRET:
            fail("XLEDGER_SESSION_SECRET must be set when serving on a non-loopback address")
        proxies = [p.strip() for item in trusted_proxy for p in item.split(",") if p.strip()]
        # The port is taken before the URL is announced: a busy port is one clear line, not a URL
        # followed by a traceback. uvicorn then serves on this very socket.
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        ledger = _ledger(settings)
        try:
            web = create_app(ledger, pseudonym_secret=settings.pseudonym_secret.encode(),
                             session_secret_value=settings.session_secret,
                             checkpoint_public_key=_checkpoint_public_key(settings), trusted_proxies=proxies,
                             max_body_bytes=max_body)
        except ValueError as exc:  # a malformed --trusted-proxy
            sock.close()
            ledger.close()
            fail(f"--trusted-proxy: {exc}")
        bound = sock.getsockname()[1]  # the port itself when --port 0 asked for any free one
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"review app on http://{shown}:{bound}/ (API docs at /docs)")
        # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from loopback; the
        # app itself decides whom to believe (--trusted-proxy).
        config = uvicorn.Config(web, log_level="warning", proxy_headers=False, server_header=False)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            sock.close()
            ledger.close()

    def _store(ledger_url: Optional[str]):
        from services.review.users import UserStore

        ledger = _ledger(ledger_settings(ledger_url))
        return ledger, UserStore(ledger.tables)

    @users_app.command("add")
    def users_add(
        username: str = typer.Argument(..., help="User name: 2-64 lower-case letters (a-z, æ, ø, å, é, ä, ö, ü), "
                                                   "digits, '.', '_' or '-'."),
        role: List[str] = typer.Option(..., "--role", help="legal_officer, auditor, admin or agency:<authority-id> (repeatable)."),
        password: Optional[str] = PASSWORD,
        password_stdin: bool = PASSWORD_STDIN,
        ledger_url: Optional[str] = LEDGER_URL,
    ) -> None:
        """Add a user with one or more roles."""
        from policies.directory import Directory
        from services.review.users import UserError, check_username, validate_roles

        orgs = Directory.load().orgs
        try:  # bad input is refused before a password is asked for or the ledger opened
            username = check_username(username)
            validate_roles(role, known_orgs=orgs)
        except UserError as exc:
            fail(str(exc))
        secret = _password(password, password_stdin)
        ledger, store = _store(ledger_url)
        try:
            user = store.add(username, secret, role, known_orgs=orgs)
        except UserError as exc:
            fail(str(exc))
        finally:
            ledger.close()
        typer.echo(f"added {user.username} ({', '.join(user.roles)})")

    @users_app.command("list")
    def users_list(ledger_url: Optional[str] = LEDGER_URL) -> None:
        """List users and their roles (never their password hashes)."""
        ledger, store = _store(ledger_url)
        try:
            for u in store.list():
                typer.echo(f"{u.username}\t{','.join(u.roles)}\t{u.created_at}")
        finally:
            ledger.close()

    @users_app.command("remove")
    def users_remove(username: str = typer.Argument(...), ledger_url: Optional[str] = LEDGER_URL) -> None:
        """Remove a user; their sessions stop working at once."""
        ledger, store = _store(ledger_url)
        try:
            removed = store.remove(username)
        finally:
            ledger.close()
        if not removed:
            fail(f"no user {username!r}")
        typer.echo(f"removed {username}")

    @users_app.command("passwd")
    def users_passwd(
        username: str = typer.Argument(...),
        password: Optional[str] = PASSWORD,
        password_stdin: bool = PASSWORD_STDIN,
        ledger_url: Optional[str] = LEDGER_URL,
    ) -> None:
        """Set a new password; sessions signed with the old one stop working."""
        from services.review.users import UserError

        secret = _password(password, password_stdin)
        ledger, store = _store(ledger_url)
        try:
            store.passwd(username, secret)
        except UserError as exc:
            fail(str(exc))
        finally:
            ledger.close()
        typer.echo(f"password changed for {username}")
