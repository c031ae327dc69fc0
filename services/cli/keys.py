"""`xledger keys …`: the authority key set (list, add, rotate, revoke) and the ledger's master key (rotate-master).

Exit codes: 0 done, 1 the operation could not be completed (e.g. a rotation was taken over),
2 bad input or a refused setting (one line per problem on stderr).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import typer

from services.cli.common import LEDGER_URL, fail, ledger_settings, open_ledger, require_development, require_trusted

keys_app = typer.Typer(help="Authority signing keys (the key set, docs/keyset.md) and the ledger's master key.",
                       no_args_is_help=True)

KEYSET = typer.Option(None, "--keyset", envvar="XLEDGER_KEYSET",
                      help="The key set: a YAML file or a directory of them (docs/keyset.md).")


def register(app: typer.Typer, **_: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def _settings():
    return ledger_settings(None)


def _edited(keyset: Optional[str]):
    from services.keyset import KeySetFile

    if not keyset:
        fail("--keyset PATH (or XLEDGER_KEYSET) is required to edit a key set")
    path = Path(keyset)
    if not path.parent.is_dir():
        fail(f"no directory {path.parent} for the key set {path}")
    return KeySetFile(path)


def _day(value: Optional[str], what: str) -> Optional[date]:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{what} must be a date YYYY-MM-DD (got {value!r})")


def _instant(value: Optional[str], what: str) -> datetime:
    """A date-time with its UTC offset, or a date (its start, UTC), as in the key-set file."""
    if value is None:
        return datetime.now(timezone.utc)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{what} must be an ISO date-time, e.g. 2026-05-01T12:00:00+00:00 (got {value!r})")
    if len(value.strip()) == 10:
        return at.replace(tzinfo=timezone.utc)
    if at.tzinfo is None:
        # A local time read as UTC would revoke a key an hour or two late in Denmark.
        fail(f"{what} must carry a UTC offset, e.g. 2026-11-30T10:00:00+01:00 or 2026-11-30T09:00:00Z "
             f"(got {value!r})")
    return at


def _public_key_text(value: str) -> str:
    candidate = Path(value)
    if len(value) < 4096 and "\n" not in value and candidate.is_file():
        try:
            return candidate.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the public key file {candidate}: {exc}")
    return value


def _check_new_key(org: str, key_id: str, public_key: str) -> None:
    """The authority must exist; outside development a public development key is refused."""
    from policies.directory import Directory
    from services.keyring import dev_public_key
    from services.keyset import DEV_KEY_PREFIX, public_key_bytes

    if org not in Directory.load().orgs:
        fail(f"{org!r} is not an authority of the directory (policies/directory/organisations.yaml)")
    try:
        raw = public_key_bytes(public_key)
    except ValueError as exc:
        if "\n" not in public_key and not public_key.lstrip().startswith("-----"):
            # Most often a file name with a typo: say that, not only that it is no key.
            fail(f"--public-key {public_key!r} is neither a readable file nor a key (PEM or base64)")
        fail(f"--public-key {exc}")
    settings = _settings()
    # Any authority's development key is public, whoever it is listed for (the documented example's is one).
    public = {dev_public_key(o) for o in Directory.load().orgs}
    if not settings.is_development and (key_id.startswith(DEV_KEY_PREFIX) or raw in public):
        fail(f"{org} {key_id}: a public development key (or a dev- key id) is refused outside development")


def _check_gate_accepts(path: Path) -> None:
    """After an edit: would a gate take this key set? A refused one leaves the gate on its last good key set,
    so a revocation just written would not take effect; say so (exit 1) instead of reporting success."""
    from dataclasses import replace

    from policies.directory import Directory
    from services.keyset import keyset_problems

    _, problems = keyset_problems(replace(_settings(), keyset=str(path)), Directory.load().orgs)
    if problems:
        fail(f"{path} is written, but a gate refuses it and keeps its last good key set (this change does not "
             f"take effect): {'; '.join(problems)}", 1)


@keys_app.command("list")
def keys_list(
    org: Optional[str] = typer.Argument(None, help="Only this authority, e.g. kommune:326."),
    at: Optional[str] = typer.Option(None, "--at", help="Show each key's status at this time (with its UTC "
                                                        "offset, or a date; default now)."),
    keyset: Optional[str] = KEYSET,
) -> None:
    """List the key set: authority, key id, validity, revocation and status (one tab-separated line per key)."""
    from dataclasses import replace

    from services.keyset import KeySet, KeySetError, keyset_path

    settings = _settings()
    path = keyset_path(replace(settings, keyset=keyset or settings.keyset))
    if path is None:
        fail("XLEDGER_KEYSET is not set; production has no default key set (docs/keyset.md)")
    try:
        ks = KeySet.load(path)
    except KeySetError as exc:
        fail(str(exc))
    when = _instant(at, "--at")
    typer.echo(f"# key set {path}; status at {when.isoformat(timespec='seconds')}", err=True)
    for name in [org] if org else ks.orgs:
        for state in ks.keys_for(name, when):
            k = state.key
            typer.echo("\t".join([k.org, k.key_id, str(k.valid_from or "-"), str(k.valid_to or "-"),
                                  k.revoked_at.isoformat() if k.revoked_at else "-", state.status.value]))


@keys_app.command("add")
def keys_add(
    org: str = typer.Argument(..., help="The authority, e.g. kommune:326."),
    key_id: str = typer.Argument(..., help="A new key id for this authority, e.g. kommune-326-2026-1."),
    public_key: str = typer.Option(..., "--public-key", help="The Ed25519 public key: SPKI PEM or base64 of the "
                                                             "raw 32 bytes, or a file holding either."),
    valid_from: Optional[str] = typer.Option(None, "--valid-from", help="First day it may sign (YYYY-MM-DD, UTC)."),
    valid_to: Optional[str] = typer.Option(None, "--valid-to", help="Last day it may sign (YYYY-MM-DD, UTC)."),
    keyset: Optional[str] = KEYSET,
) -> None:
    """Add a public key to an authority in the key set (the file is created if missing)."""
    from services.keyset import KeySetError

    text = _public_key_text(public_key)
    _check_new_key(org, key_id, text)
    edited = _edited(keyset)
    try:
        key = edited.add(org, key_id, text, valid_from=_day(valid_from, "--valid-from"),
                         valid_to=_day(valid_to, "--valid-to"))
    except KeySetError as exc:
        fail(str(exc))
    typer.echo(f"added {key.org} {key.key_id} (valid {key.valid_from or 'from always'} to {key.valid_to or 'open'})")
    _check_gate_accepts(edited.path)


@keys_app.command("rotate")
def keys_rotate(
    org: str = typer.Argument(..., help="The authority, e.g. kommune:326."),
    key_id: str = typer.Argument(..., help="The new key's id."),
    public_key: str = typer.Option(..., "--public-key", help="The new Ed25519 public key (PEM, base64, or a file)."),
    valid_from: Optional[str] = typer.Option(None, "--valid-from", help="First day the new key signs (default today)."),
    overlap_days: int = typer.Option(7, "--overlap-days", min=0,
                                     help="Days the old keys stay valid after that, for messages in flight."),
    keyset: Optional[str] = KEYSET,
) -> None:
    """Add a new key and end the authority's other keys OVERLAP days after it starts."""
    from services.keyset import KeySetError

    text = _public_key_text(public_key)
    _check_new_key(org, key_id, text)
    start = _day(valid_from, "--valid-from") or datetime.now(timezone.utc).date()
    edited = _edited(keyset)
    try:
        key, ended = edited.rotate(org, key_id, text, valid_from=start, overlap_days=overlap_days)
    except KeySetError as exc:
        fail(str(exc))
    until = start + timedelta(days=overlap_days)
    typer.echo(f"added {key.org} {key.key_id} from {start}; "
               + (f"{', '.join(ended)} valid until {until}" if ended else "no other key to end"))
    _check_gate_accepts(edited.path)


@keys_app.command("revoke")
def keys_revoke(
    org: str = typer.Argument(..., help="The authority."),
    key_id: str = typer.Argument(..., help="The key to revoke."),
    at: Optional[str] = typer.Option(None, "--at", help="From when: a date-time with its UTC offset, or a date (its "
                                                        "start, UTC); default now. Messages the gate "
                                                        "checks from then on are rejected with KEY_REVOKED."),
    keyset: Optional[str] = KEYSET,
) -> None:
    """Revoke a key. It stays in the key set, so decisions it verified before stay re-checkable."""
    from services.keyset import KeySetError

    edited = _edited(keyset)
    try:
        key = edited.revoke(org, key_id, _instant(at, "--at"))
    except KeySetError as exc:
        fail(str(exc))
    typer.echo(f"revoked {key.org} {key.key_id} at {key.revoked_at.isoformat()}")
    _check_gate_accepts(edited.path)


@keys_app.command("rotate-master")
def keys_rotate_master(
    to: Optional[str] = typer.Option(None, "--to", help="Id of the master key to rotate to (default: the last key "
                                                        "of XLEDGER_MASTER_KEY). `xledger keys master-status` lists ids."),
    batch: int = typer.Option(500, "--batch", min=1, max=10000, help="Keys re-wrapped per transaction."),
    pause: float = typer.Option(0.0, "--pause", min=0.0, help="Seconds to rest between batches (spares a busy database)."),
    ledger_url: Optional[str] = LEDGER_URL,
) -> None:
    """Re-wrap every subject data key under a new master key, while the gate and relay run.

    First put the new key after the old one in XLEDGER_MASTER_KEY of every process. From the start of this
    command, new data keys are wrapped under the new key. Interrupted (even by kill -9), it is finished by
    running it again. When it reports 0 keys left under other master keys, remove the old key everywhere.
    """
    from ledger.rotation import RotationError, census, rotate_master_key
    from ledger.subject_crypto import MasterKeyUnavailable, load_master_keys

    settings = ledger_settings(ledger_url)
    require_trusted(settings, "keys rotate-master")
    ring = load_master_keys(settings.master_key)
    target = to or ring.ids[-1]
    if target not in ring:
        fail(f"--to {target}: XLEDGER_MASTER_KEY holds no such master key (it holds {', '.join(ring.ids)})")
    ledger = open_ledger(settings.ledger_url)
    try:
        before = census(ledger.tables)
        typer.echo(f"rotating {sum(before.values())} subject keys to master key {target}", err=True)
        result = rotate_master_key(ledger.tables, ring, target, batch_size=batch, pause=pause)
    except MasterKeyUnavailable as exc:
        fail(f"{exc}; add it to XLEDGER_MASTER_KEY for the rotation, then run again")
    except RotationError as exc:
        fail(str(exc), 1)
    finally:
        ledger.close()
    others = {k: v for k, v in result.census.items() if k != target}
    typer.echo(f"re-wrapped {result.rewrapped} keys in {result.passes} pass(es); "
               f"{sum(result.census.values())} subject keys under master key {target}, "
               f"{sum(others.values())} under other master keys; completed {result.completed_at}")
    retired = [i for i in ring.ids if i != target]
    if retired and not others:
        typer.echo(f"master key(s) {', '.join(retired)} wrap nothing now: remove them from XLEDGER_MASTER_KEY "
                   "of every process")


@keys_app.command("master-status")
def keys_master_status(ledger_url: Optional[str] = LEDGER_URL) -> None:
    """Show the configured master key ids, the ledger's rotation target, and how many keys each master key wraps."""
    from ledger.rotation import census, status
    from ledger.subject_crypto import load_master_keys

    settings = ledger_settings(ledger_url)
    try:
        ring = load_master_keys(settings.master_key)
    except ValueError as exc:
        fail(f"XLEDGER_MASTER_KEY: {exc}")
    ledger = open_ledger(settings.ledger_url)
    try:
        counts, target = census(ledger.tables), status(ledger.tables)
    finally:
        ledger.close()
    typer.echo(f"configured: {', '.join(ring.ids)}")
    if target is None:
        typer.echo(f"target: none recorded (new keys are wrapped under the first configured key, {ring.ids[0]})")
    else:
        done = f"completed {target.completed_at}" if target.completed_at else "not completed"
        typer.echo(f"target: {target.target} since {target.since}, {done}")
    for master_id, n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        name = master_id or "(written before master key ids)"
        typer.echo(f"{name}\t{n}\t{'configured' if master_id in ring or master_id is None else 'NOT CONFIGURED'}")


@keys_app.command("dev-generate")
def keys_dev_generate(
    output: Path = typer.Option(Path("policies/directory/keys.yaml"), help="Where to write the public keys."),
) -> None:
    """Write the development public keys of every directory authority (development only: demo and tests)."""
    from policies.directory import Directory
    from services.keyring import write_dev_keys

    require_development(_settings(), "keys dev-generate")
    typer.echo(f"{write_dev_keys(Directory.load().orgs, output)} authorities written to {output}")
