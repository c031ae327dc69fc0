"""Auditor commands: `xledger replay`, `xledger audit reevaluate`, `xledger policy impact`, `xledger subject report`
and `xledger subject find`.

All read-only over the ledger (the live read models aside), except that a subject report or lookup records
who made it in the ledger's access log, as the review app does for every view of a subject. Exit codes: 0 all
well, 1 the audit found something (differences, divergent decisions), 2 bad input.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.cli.common import LEDGER_URL, fail, ledger_settings, open_ledger, require_trusted
from services.config import Settings



def _ledger(settings: Settings):
    return open_ledger(settings)


LANGS = ("da", "en")


def _check_lang(lang: str) -> str:
    if lang not in LANGS:
        fail(f"--lang must be one of {', '.join(LANGS)} (got {lang!r})")
    return lang


def _labels(lang: str):
    """The review app's labels (services/review/labels.yaml): one vocabulary for the app and the CLI."""
    from services.review.labels import Labels

    return Labels().for_lang(lang)


def cli_user() -> str:
    """Who runs a command, for the access log: the operating system's login name (a terminal has
    no review-app login; the operator's account is what an access review can trace)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container without a passwd entry)
        return f"uid:{os.getuid()}"


def _log_subject_access(ledger, action: str, pseudonym: str):
    """A subject access from the command line, in the same access log as the review app's (via "cli")."""
    from ledger.access import log_access

    return log_access(ledger, who=cli_user(), roles=["cli"], action=action, target_kind="subject",
                      target=pseudonym, via="cli")


# The subject report's columns: (key, Danish header, English header).
REPORT_COLUMNS = (
    ("occurred_at", "Tidspunkt", "Time"),
    ("sender", "Afsender", "Sender"),
    ("recipient", "Modtager", "Recipient"),
    ("outcome", "Udfald", "Outcome"),
    ("rule", "Regel", "Rule"),
    ("reason", "Begrundelse", "Reason"),
    ("citation", "Hjemmel", "Legal basis"),
    ("context", "Samarbejde", "Cooperation"),
    ("purpose", "Formål", "Purpose"),
    ("categories", "Datakategorier", "Data categories"),
    ("message_id", "Besked-id", "Message id"),
)

REPORT_TEXT = {
    "title": ("Registerindsigt (databeskyttelsesforordningen art. 15), pseudonym {p}",
              "Subject access report (GDPR art. 15), pseudonym {p}"),
    "summary": ("{d} videregivet, {n} afvist, {e} til juridisk vurdering; modtagere: {r}",
                "{d} disclosed, {n} denied, {e} escalated; recipients: {r}"),
    "erased": ("Personen blev slettet {t} (begrundelse: {why}): de videregivne oplysninger kan ikke længere "
               "læses, men registeret over videregivelserne består.",
               "The subject was erased on {t} (reason: {why}): the disclosed data can no longer be read, "
               "but the register of disclosures remains."),
    "empty": ("Ingen videregivelser eller afvisninger er registreret for dette pseudonym.",
              "No disclosures or refusals are recorded for this pseudonym."),
    "via": ("via", "via"),
}


def _t(key: str, lang: str, **kw) -> str:
    return REPORT_TEXT[key][0 if lang == "da" else 1].format(**kw)


def labelled_entry(e: dict, lang: str, lab=None) -> dict:
    """One register entry as a person reads it: names for authorities, labels for codes."""
    lab = lab or _labels(lang)
    rule = f"{e['rule']}: {lab.rule(e['rule'])}" if e["rule"] else ""
    if e.get("via"):
        rule += f" ({_t('via', lang)} {e['via']}: {lab.rule(e['via'])})"
    return {
        "occurred_at": (e["occurred_at"] or "").replace("T", " "), "sender": lab.authority(e["sender"]),
        "recipient": lab.authority(e["recipient"]), "outcome": lab.outcome(e["outcome"]), "rule": rule,
        "reason": lab.reason(e["reason"]) if e["reason"] else "", "citation": lab.citation(e["citation"]),
        "context": lab.context(e["context"]), "purpose": lab.purpose(e["purpose"]),
        "categories": lab.categories(e["categories"]), "message_id": e["message_id"],
    }


def _print_subject_report(report: dict, fmt: str, lang: str) -> None:
    lab = _labels(lang)
    i = 1 if lang == "da" else 2
    rows = [labelled_entry(e, lang, lab) for e in report["entries"]]
    erased = [_t("erased", lang, t=x["erased_at"][:19].replace("T", " ") + " UTC", why=x["reason"])
              for x in report["erasures"]]
    if fmt == "json":
        # Codes for machines, labels for people: each entry keeps its codes and adds "labels".
        out = {**report, "lang": lang,
               "entries": [{**e, "labels": row} for e, row in zip(report["entries"], rows)]}
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["pseudonym" if lang == "en" else "Pseudonym", *(c[i] for c in REPORT_COLUMNS)])
        for row in rows:
            w.writerow([report["subject"], *(row[c[0]] for c in REPORT_COLUMNS)])
        typer.echo(buf.getvalue(), nl=False)
        for line in erased:  # stdout stays plain CSV
            typer.echo(line, err=True)
        return
    out = Console(width=220)
    t = Table(title=_t("title", lang, p=report["subject"]))
    for c in REPORT_COLUMNS:
        t.add_column(c[i], overflow="fold")
    for e, row in zip(report["entries"], rows):
        style = {"ALLOW": "green", "DENY": "red", "ESCALATE": "yellow"}.get(e["outcome"], "")
        cells = [escape(row[c[0]]) for c in REPORT_COLUMNS]
        cells[3] = f"[{style}]{cells[3]}[/]" if style else cells[3]
        t.add_row(*cells)
    for line in erased:
        out.print(f"[bold]{escape(line)}[/]")
    if rows:
        out.print(t)
    else:
        out.print(_t("empty", lang))
    out.print(_t("summary", lang, d=report["disclosed"], n=report["denied"], e=report["escalated"],
                 r=", ".join(lab.authority(r) for r in report["recipients"]) or "—"))


def _parse_time(value: str, what: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{what} must be an ISO date or time, e.g. 2026-03-01 or 2026-03-01T12:00:00+00:00 (got {value!r})")
        raise
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t


def _progress(console: Console, total: int, label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


# Without a terminal (a job, a pipe) progress is a structlog line this often, so that a long run
# over a million entries shows it is alive; runs shorter than this print none.
PROGRESS_LOG_EVERY_S = 10.0


@contextmanager
def _reporting(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress callback taking ledger entries covered so far: a rich bar on stderr when it is
    a terminal, else a structlog ``audit.progress`` line every PROGRESS_LOG_EVERY_S seconds."""
    console = Console(stderr=True)
    if console.is_terminal:
        with _progress(console, total, label) as bar:
            task = bar.add_task(label, total=total or 1)
            yield lambda covered: bar.update(task, completed=covered)
            bar.update(task, completed=total or 1)
        return
    from services.logging import configure, get_logger

    configure()
    log = get_logger("xledger.audit")
    t0 = time.monotonic()
    last = [t0]

    def report(covered: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_LOG_EVERY_S:
            last[0] = now
            log.info("audit.progress", tool=label, covered=covered, entries=total,
                     percent=round(100 * covered / (total or 1), 1), elapsed_s=round(now - t0, 1))

    yield report
    if last[0] > t0:
        log.info("audit.progress", tool=label, covered=total, entries=total, percent=100.0,
                 elapsed_s=round(time.monotonic() - t0, 1))


WORKERS = typer.Option(None, "--workers", min=1, help="Processes to split the log across (default: 2 on a machine "
                                                      "with 2 or more cores and a log of 50,000 entries or more, else 1).")
CHECK_SIGNATURES = typer.Option(
    False, "--check-signatures",
    help="Verify each sender's Ed25519 signature again. By default the stored bytes are trusted: the gate verified "
         "them before recording, and `xledger verify` proves every stored event unchanged.")


def _audit_keys(settings: Settings):
    """Re-deciding as the gate did needs the master key, the pseudonym secret and the key set (checked first)."""
    from services.keyset import KeySet, keyset_path

    require_trusted(settings, "audit")
    return KeySet.load(keyset_path(settings))


DIRECTORY_OPTION = typer.Option(
    None, "--directory",
    help="Which organisation directory to decide with: by default each decision's recorded one (decisions "
         "recorded before directory versions: the legacy directory); 'current' = the shipped directory for all, "
         "'legacy' = the one shipped before decisions recorded theirs, or a folder with organisations.yaml and "
         "cooperations.yaml (a what-if).")


def _redecider(settings: Settings, ledger, keys, directory: str | None = None, check_signatures: bool = False):
    from policies.directory import DirectoryError
    from services.audit import Redecider
    from services.directories import DirectoryResolver

    try:
        resolver = DirectoryResolver.for_option(ledger, directory)
    except DirectoryError as exc:
        ledger.close()
        fail(f"--directory: {exc}")
    return Redecider(ledger, settings.master_key, settings.pseudonym_secret.encode(), keys, directories=resolver,
                     check_signatures=check_signatures)


def _recorded_bundles(bundle: Optional[List[Path]]):
    """The shipped bundles plus any archived ones given with --bundle; exit 2 on an invalid one."""
    from policies.bundle import BundleError
    from services.audit import load_bundles

    try:
        return load_bundles(bundle)
    except BundleError as exc:
        fail(f"invalid policy: {exc}")


def _directories_line(counts: dict[str, int]) -> str:
    words = {"recorded": "the directory each decision recorded",
             "legacy": "the legacy directory (recorded before decisions named theirs)",
             "what-if": "the directory given with --directory"}
    return ", ".join(f"{n} under {words.get(k, k)}" for k, n in sorted(counts.items())) or "no decisions"


def register(app: typer.Typer, subject_app: typer.Typer, policy_app: typer.Typer) -> None:
    audit_app = typer.Typer(help="Auditor tools: re-evaluate recorded decisions.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @app.command("replay")
    def replay_cmd(
        ledger_url: Optional[str] = LEDGER_URL,
        until: Optional[str] = typer.Option(None, "--until", help="Replay only entries recorded at or before TIME."),
        keep: bool = typer.Option(False, "--keep", help="Keep the rebuilt tables (xl_rp_<tag>_*) instead of dropping them."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Rebuild every read model from the ledger alone into fresh tables and compare with the live ones."""
        from services.audit import replay

        until_t = _parse_time(until, "--until") if until else None
        settings = ledger_settings(ledger_url)
        ledger = _ledger(settings)
        try:
            total = ledger.max_notification_id()
            with _reporting("replaying", total) as progress:
                report = replay(ledger, until=until_t, keep=keep, progress=lambda last, n: progress(last))
        finally:
            ledger.close()
        if as_json:
            typer.echo(json.dumps({
                "equal": report.equal if report.compared else None, "compared": report.compared,
                "entries": report.consumed, "until": until_t.isoformat() if until_t else None,
                "kept_prefix": report.prefix if keep else None,
                "tables": [{"table": d.table, "live": d.live, "replayed": d.replayed,
                            "only_live": d.only_live_count, "only_replayed": d.only_replayed_count} for d in report.diffs],
            }))
        else:
            out = Console()
            t = Table(title="replay: read models rebuilt from the ledger")
            for col in ("table", "live", "replayed", "only live", "only replayed", "status"):
                t.add_column(col, justify="right" if col not in ("table", "status") else "left")
            for d in report.diffs:
                status = ("[green]equal[/]" if d.equal else "[red]DIFFERENT[/]") if report.compared else "–"
                t.add_row(d.table, str(d.live) if report.compared else "–", str(d.replayed),
                          str(d.only_live_count), str(d.only_replayed_count), status)
            out.print(t)
            out.print(f"{report.consumed} ledger entries replayed" + (f" up to {until_t.isoformat()}" if until_t else ""))
            if keep:
                out.print(f"rebuilt tables kept with prefix {report.prefix}")
            if not report.compared:
                out.print("not compared: --until gives a past state, the live read models show the present")
            elif report.equal:
                out.print("[green]replay equals the live read models[/]")
            else:
                for d in report.diffs:
                    for row in d.only_live[:5]:
                        out.print(f"  {d.table}: only live: {row[:4]}")
                    for row in d.only_replayed[:5]:
                        out.print(f"  {d.table}: only replayed: {row[:4]}")
        if report.compared and not report.equal:
            if not as_json:
                typer.echo("read models differ from the replay", err=True)
            raise typer.Exit(1)

    @audit_app.command("reevaluate")
    def reevaluate_cmd(
        ledger_url: Optional[str] = LEDGER_URL,
        bundle: Optional[List[Path]] = typer.Option(
            None, "--bundle", help="Archived policy bundle(s) for versions no longer shipped (repeatable)."),
        directory: Optional[str] = DIRECTORY_OPTION,
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        workers: Optional[int] = WORKERS,
        check_signatures: bool = CHECK_SIGNATURES,
    ) -> None:
        """Re-run every recorded decision under its recorded policy version and recorded directory, and report
        any that differ."""
        from services.audit import reevaluate

        settings = ledger_settings(ledger_url)
        keys = _audit_keys(settings)
        bundles = _recorded_bundles(bundle)
        ledger = _ledger(settings)
        redecider = _redecider(settings, ledger, keys, directory, check_signatures)
        try:
            total = ledger.max_notification_id()
            with _reporting("re-evaluating", total) as progress:
                report = reevaluate(ledger, redecider, bundles, progress=progress, workers=workers)
        finally:
            ledger.close()
        if as_json:
            typer.echo(json.dumps(report.to_dict(), default=str))
        else:
            out = Console()
            out.print(f"{report.checked} recorded decisions re-evaluated under their recorded policy version: "
                      f"{report.agreeing} agree, {len({d.exchange_id for d in report.divergent})} differ, "
                      f"{len(report.not_reevaluable)} not re-evaluable (erased subjects), {len(report.errors)} errors")
            out.print("directory: " + _directories_line(report.directories))
            if report.divergent:
                t = Table(title="divergent decisions")
                for col in ("message id", "sender", "recipient", "field", "recorded", "re-evaluated"):
                    t.add_column(col, overflow="fold")
                for d in report.divergent:
                    rec = d.recorded if not isinstance(d.recorded, list) else f"{len(d.recorded)} steps"
                    new = d.recomputed if not isinstance(d.recomputed, list) else f"{len(d.recomputed)} steps"
                    t.add_row(d.message_id, d.sender, d.recipient, d.field, str(rec), str(new))
                out.print(t)
            for e in report.errors:
                out.print(f"[red]error[/] {e['message_id']} ({e['sender']}): {e['error']} {e.get('detail', '')}")
            for e in report.not_reevaluable:
                out.print(f"not re-evaluable: {e['message_id']} ({e['sender']}): {e['reason']}")
        if not report.ok:
            raise typer.Exit(1)

    @policy_app.command("impact")
    def impact_cmd(
        bundle: str = typer.Option(..., "--bundle", help="The proposed policy bundle: a YAML file, or the name of a "
                                                         "shipped bundle (e.g. dk-115-2026-12-15)."),
        since: Optional[str] = typer.Option(None, "--since", help="Only requests that occurred on or after DATE."),
        ledger_url: Optional[str] = LEDGER_URL,
        directory: Optional[str] = DIRECTORY_OPTION,
        examples: int = typer.Option(5, "--examples", min=0, help="Example decisions per group."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        workers: Optional[int] = WORKERS,
        check_signatures: bool = CHECK_SIGNATURES,
    ) -> None:
        """Run a proposed bundle over all recorded requests, whatever their dates; report which decisions would
        change, grouped by recorded and proposed rule and reason, with counts and example decisions."""
        from policies.bundle import BundleError, load_bundle
        from services.audit import impact, load_bundles

        since_d: date | None = None
        if since:
            try:
                since_d = date.fromisoformat(since)
            except ValueError:
                fail(f"--since must be a date YYYY-MM-DD (got {since!r})")
        try:
            shipped = load_bundles()
            by_name = {b.name: b for b in shipped.bundles}
            proposed = by_name[bundle] if bundle in by_name and not Path(bundle).exists() else load_bundle(Path(bundle))
        except BundleError as exc:
            fail(f"invalid policy: {exc}" + ("" if Path(bundle).suffix else
                                             f" (shipped bundles: {', '.join(sorted(by_name))})"))
        settings = ledger_settings(ledger_url)
        keys = _audit_keys(settings)
        ledger = _ledger(settings)
        redecider = _redecider(settings, ledger, keys, directory, check_signatures)
        try:
            with _reporting("impact", ledger.max_notification_id()) as progress:
                report = impact(ledger, redecider, proposed, since=since_d, known=shipped, progress=progress,
                                workers=workers)
        finally:
            ledger.close()
        if as_json:
            typer.echo(json.dumps(report.to_dict(examples), ensure_ascii=False))
            return
        from services.audit import impact_summary

        out = Console(width=200)
        head = impact_summary(report, examples)
        out.print(head[0] + (f" since {since_d}" if since_d else ""))
        out.print(head[1])
        out.print("directory: " + _directories_line(report.directories))
        for which, title in (("flips", "decisions that would flip outcome"),
                             ("changes", "decisions that would change rule or reason only")):
            groups = report.groups(which, examples)
            if not groups:
                continue
            t = Table(title=title + ", by rule and reason")
            for col in ("recorded", "rule", "reason", "→ proposed", "rule ", "reason ", "count",
                        "examples (message id → recipient, date)"):
                t.add_column(col, overflow="fold")
            for g in groups:
                t.add_row(g["from"]["outcome"], g["from"]["rule"], g["from"]["reason"], g["to"]["outcome"],
                          g["to"]["rule"], g["to"]["reason"], str(g["count"]),
                          "; ".join(f"{d['message_id']} → {d['recipient']} ({d['occurred_on']})"
                                    for d in g["example_decisions"]))
            out.print(t)

    @subject_app.command("report")
    def subject_report_cmd(
        subject: str = typer.Argument(..., help="The subject's CPR number (validated, never printed) or pseudonym."),
        fmt: str = typer.Option("table", "--format", help="table, csv or json."),
        lang: str = typer.Option("da", "--lang", help="da (Danish, the default) or en: headers, labels and notices."),
        ledger_url: Optional[str] = LEDGER_URL,
    ) -> None:
        """Everything disclosed about one citizen: to whom, when, under which rule and citation, and what was denied.

        Authorities by name, codes as Danish (or English) labels; says when the subject was erased.

        The report is itself recorded in the ledger's access log (the login name).
        """
        from schemas.cpr import InvalidCPR
        from services.audit import resolve_subject, subject_report

        if fmt not in ("table", "csv", "json"):
            fail(f"--format must be table, csv or json (got {fmt!r})")
        lang = _check_lang(lang)
        settings = ledger_settings(ledger_url)
        require_trusted(settings, "subject report")
        try:
            pseudonym = resolve_subject(subject, settings.pseudonym_secret.encode())
        except InvalidCPR as exc:
            fail(f"not a pseudonym or a valid CPR number: {exc}")
        ledger = _ledger(settings)
        try:
            report = subject_report(ledger, pseudonym)
            _log_subject_access(ledger, "subject_report", pseudonym)
        finally:
            ledger.close()
        _print_subject_report(report, fmt, lang)

    @subject_app.command("find")
    def subject_find_cmd(
        cpr: str = typer.Argument(..., help="The CPR number (DDMMYY-SSSS or 10 digits; validated, never printed), "
                                            "or - to read it from standard input (kept out of the process list)."),
        ledger_url: Optional[str] = LEDGER_URL,
    ) -> None:
        """Print the pseudonym the gate gives this CPR number (HMAC-SHA256 under XLEDGER_PSEUDONYM_SECRET).

        The pseudonym is what `subject report`, `subject erase` and the review app take.

        The lookup is recorded in the ledger's access log (the login name), as every subject access is.
        """
        from schemas.cpr import InvalidCPR, pseudonym as derive

        if cpr == "-":
            cpr = sys.stdin.readline().strip()
            if not cpr:
                fail("no CPR number on standard input")
        settings = ledger_settings(ledger_url)
        require_trusted(settings, "subject find")
        value = cpr.strip()
        if len(value) == 64 and all(ch in "0123456789abcdef" for ch in value.lower()):
            fail("that is already a pseudonym; `subject find` takes a CPR number")
        try:
            found = derive(value, settings.pseudonym_secret.encode())
        except InvalidCPR as exc:
            fail(f"not a valid CPR number: {exc}")
        ledger = _ledger(settings)  # before printing: no lookup without its access record
        try:
            record = _log_subject_access(ledger, "subject_find", found)
        finally:
            ledger.close()
        typer.echo(found)
        typer.echo(f"lookup recorded in the ledger's access log as {record.who} ({record.id})", err=True)
