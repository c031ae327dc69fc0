"""`xledger escalation ...`: escalations awaiting a legal officer — list, show the chain, approve, refuse.

The officer is a user of the review app with the role legal_officer (`xledger users add`); every
verdict is recorded in the ledger with the officer's name and the time, and the relay then
delivers (approval) and sends the sender a receipt with rule L1. Exit codes: 0 done, 1 the rules
of review refuse the verdict (already closed, the same officer approving twice, a concurrent
verdict), 2 bad input (unknown exchange or officer, missing basis, citation or reason).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from services.cli.common import LEDGER_URL, fail, ledger_settings, open_ledger

app = typer.Typer(
    name="escalation",
    help="Escalations awaiting a legal officer: list them, show an exchange's chain, approve or refuse.",
    no_args_is_help=True,
    add_completion=False,
)

OFFICER = typer.Option(..., "--officer", envvar="XLEDGER_OFFICER",
                       help="Your user name in the review app; the user must have the role legal_officer.")
RECIPIENT = typer.Option(None, "--recipient",
                         help="The escalated recipient (organisation id); needed when several are escalated.")
#: codes the rules of review give (exit 1); every other code is bad input (exit 2)
REFUSED_BY_RULES = {"CLOSED", "SAME_OFFICER", "CONFLICT"}


def _desk(settings, ledger):
    from services.escalations import EscalationDesk

    return EscalationDesk(ledger, max_open=timedelta(hours=settings.escalation_max_open_hours))


def _officer_roles(ledger, officer: str) -> list[str]:
    from services.review.users import UserStore

    user = UserStore(ledger.tables).get(officer.strip().lower())
    if user is None:
        fail(f"no user {officer!r}: add the legal officer with `xledger users add {officer} --role legal_officer`")
    if "legal_officer" not in user.roles:
        fail(f"{officer!r} is not a legal officer (roles: {', '.join(user.roles)})")
    return list(user.roles)


@app.command("list")
def list_cmd(
    ledger_url: Optional[str] = LEDGER_URL,
    all_: bool = typer.Option(False, "--all", help="Closed escalations too, not only open ones."),
    overdue: bool = typer.Option(False, "--overdue", help="Only escalations open longer than "
                                 "XLEDGER_ESCALATION_MAX_OPEN_HOURS."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """The escalation queue, oldest first, with approvals so far and the overdue flag; then the statistics."""
    settings = ledger_settings(ledger_url)
    ledger = open_ledger(settings.ledger_url)
    try:
        desk = _desk(settings, ledger)
        rows = desk.queue(status=None if all_ else "OPEN", overdue_only=overdue)
        stats = desk.statistics()
    finally:
        ledger.close()
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
        typer.echo(json.dumps({"statistics": stats}, ensure_ascii=False))
        return
    out = Console(width=200)
    t = Table(title="escalations" + ("" if all_ else " awaiting a legal officer"))
    for col in ("exchange id", "recipient", "sender", "opened", "hours", "rule", "reason", "approvals", "status"):
        t.add_column(col, overflow="fold")
    for r in rows:
        status = r["status"] + (" [bold red]OVERDUE[/]" if r["overdue"] else "")
        needed = r["approvals_required"] if r["approvals_required"] is not None else "?"
        t.add_row(r["exchange_id"], r["recipient"], r["sender"], r["opened_at"][:16], str(r["open_hours"]), r["rule"],
                  r["reason"], f"{r['approvals']}/{needed}" + (f" ({r['approvers']})" if r["approvers"] else ""),
                  status)
    out.print(t)
    out.print(f"{stats['open']} open ({stats['overdue']} overdue, more than {stats['max_open_hours']:g} h; "
              f"{stats['awaiting_second_approval']} awaiting a second approval), {stats['approved']} approved, "
              f"{stats['refused']} refused")


@app.command("show")
def show_cmd(
    exchange_id: str = typer.Argument(..., help="The exchange id (from `xledger escalation list`)."),
    ledger_url: Optional[str] = LEDGER_URL,
    as_json: bool = typer.Option(False, "--json", help="Print the chain as JSON."),
) -> None:
    """An exchange's whole chain for an auditor: the request, the escalation, every verdict, the deliveries."""
    from services.escalations import EscalationError

    settings = ledger_settings(ledger_url)
    ledger = open_ledger(settings.ledger_url)
    try:
        chain = _desk(settings, ledger).chain(exchange_id)
    except EscalationError as exc:
        fail(exc.message)
    finally:
        ledger.close()
    if as_json:
        typer.echo(json.dumps(chain, ensure_ascii=False, indent=2))
        return
    s = chain["summary"]
    typer.echo(f"exchange {chain['exchange_id']} — message {chain['message_id']} from {chain['sender']}")
    typer.echo(f"  request: {s.get('occurred_at')} {s.get('context')} {s.get('purpose')}, "
               f"categories {', '.join(s.get('present_categories') or s.get('declared_categories') or [])}")
    typer.echo(f"  decided under {chain['bundle']} ({chain['policy_version']}) at {chain['recorded_at']}")
    for e in chain["escalations"]:
        d = e["decision"]
        typer.echo(f"  → {e['recipient']}: ESCALATE {d['rule']} {d['reason']} ({d['citation']}); "
                   f"{e['status']}, {len([v for v in e['verdicts'] if v['verdict'] == 'APPROVE'])}"
                   f"/{e['approvals_required']} approvals" + (" — OVERDUE" if e["overdue"] else ""))
        for v in e["verdicts"]:
            said = f"{v['basis']} ({v['citation']})" if v["verdict"] == "APPROVE" else v["reason"]
            typer.echo(f"     {v['at']} {v['officer']} {v['verdict']} via {v['via']}: {said} → {v['status']}")
        for dl in e["deliveries"]:
            typer.echo(f"     {dl['at']} relay {dl['kind']} → {dl['topic'] or '—'} {dl['outcome']}")


@app.command("approve")
def approve_cmd(
    exchange_id: str = typer.Argument(..., help="The exchange id (from `xledger escalation list`)."),
    officer: str = OFFICER,
    basis: str = typer.Option(..., "--basis", help="The legal basis in words."),
    citation: str = typer.Option(..., "--citation", help="The citation, e.g. 'PET-loven § 4, stk. 1'; the receipt "
                                                         "and the delivery carry it."),
    recipient: Optional[str] = RECIPIENT,
    ledger_url: Optional[str] = LEDGER_URL,
) -> None:
    """Approve an escalation, with the basis in words and a citation (recorded with your name and the time).

    Once the approvals the bundle requires are in (two different officers for some data categories), the relay
    delivers the payload and sends the sender an ALLOW receipt with rule L1.
    """
    _verdict(ledger_url, exchange_id, officer, recipient, "approve", basis=basis, citation=citation)


@app.command("refuse")
def refuse_cmd(
    exchange_id: str = typer.Argument(..., help="The exchange id (from `xledger escalation list`)."),
    officer: str = OFFICER,
    reason: str = typer.Option(..., "--reason", help="Why the disclosure is refused. The sender's receipt carries "
                                                     "it: write no personal data."),
    recipient: Optional[str] = RECIPIENT,
    ledger_url: Optional[str] = LEDGER_URL,
) -> None:
    """Refuse an escalation, with a reason (recorded with your name and the time).

    The sender gets a DENY receipt with rule L1 and DENY_REFUSED_ON_REVIEW. One refusal closes the escalation.
    """
    _verdict(ledger_url, exchange_id, officer, recipient, "refuse", reason=reason)


def _verdict(ledger_url, exchange_id: str, officer: str, recipient, action: str, **texts) -> None:
    from services.escalations import EscalationError

    settings = ledger_settings(ledger_url)
    ledger = open_ledger(settings.ledger_url)
    try:
        roles = _officer_roles(ledger, officer)
        desk = _desk(settings, ledger)
        record = desk.approve if action == "approve" else desk.refuse
        v = record(exchange_id, officer=officer.strip().lower(), roles=roles, recipient=recipient, via="cli", **texts)
    except EscalationError as exc:
        fail(exc.message, 1 if exc.code in REFUSED_BY_RULES else 2)
    finally:
        ledger.close()
    if v["status"] == "OPEN":
        typer.echo(f"approved by {v['officer']} ({v['approvals']} of {v['approvals_required']} approvals): the "
                   f"escalation of {v['recipient']} waits for another legal officer's approval")
    else:
        r = v["result"]
        typer.echo(f"{v['status'].lower()}: {v['recipient']} gets {r['outcome']} {r['rule']}"
                   + (f" {r['reason']}" if r["reason"] else "") + f" — {r['citation']}; the relay "
                   + ("delivers the payload and " if r["outcome"] == "ALLOW" else "") + "sends the receipt")
