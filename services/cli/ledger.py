"""`xledger verify`, `xledger ledger …`, `xledger proof …` and `xledger subject erase`.

Registered by services.cli on the shared groups. Exit codes: 0 ok, 1 the ledger failed a
check (tampered, or nothing to do), 2 bad input (a one-line reason on stderr).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from services.cli.common import fail, ledger_settings, open_ledger, require_trusted

LEDGER_URL_HELP = "sqlite:///PATH or postgresql://USER@HOST:PORT/DB[?schema=S] (env XLEDGER_LEDGER_URL)."


def _signer(settings, command: str = "ledger integrate"):
    """The checkpoint signer; outside development never the public development key (exit 2)."""
    from ledger.checkpoint import CheckpointError
    from ledger.integrity import signer_from_key

    require_trusted(settings, command)
    try:
        return signer_from_key(settings.checkpoint_key)
    except CheckpointError as exc:
        fail(f"XLEDGER_CHECKPOINT_KEY is not a usable Ed25519 private key: {exc}")


def _public_key(value: str | None, settings) -> tuple[Any, bool]:
    """The auditor's key (--public-key: base64, PEM, or a file), else the operator's own."""
    from ledger.checkpoint import CheckpointError, load_public_key

    if value is None:
        return _signer(settings, "verify").public_key, False
    data: Any = value
    candidate = Path(value)
    if candidate.is_file():
        data = candidate.read_bytes()
    try:
        return load_public_key(data), True
    except CheckpointError as exc:
        fail(f"--public-key is not an Ed25519 public key: {exc}")


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _write_files(out: Path, files: dict[str, bytes | str]) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            target = out / name
            if isinstance(content, str):
                target.write_text(content)
            else:
                target.write_bytes(content)
    except OSError as exc:
        fail(f"cannot write to {out}: {exc.strerror or exc}")


def register(app: typer.Typer, subject_app: typer.Typer, policy_app: typer.Typer) -> None:  # noqa: C901
    ledger_app = typer.Typer(help="The ledger's Merkle tree and signed checkpoints.", no_args_is_help=True)
    proof_app = typer.Typer(help="Inclusion and consistency proofs an auditor checks offline "
                                 "(`python -m ledger.proofs`).", no_args_is_help=True)
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(proof_app, name="proof")

    ledger_url_opt = typer.Option(None, "--ledger-url", envvar="XLEDGER_LEDGER_URL", help=LEDGER_URL_HELP)

    # -- xledger verify ---------------------------------------------------------------------

    @app.command("verify")
    def verify(
        ledger_url: Optional[str] = ledger_url_opt,
        public_key: Optional[str] = typer.Option(
            None, "--public-key",
            help="The operator's Ed25519 checkpoint key (base64, PEM, or a file). Default: derived from "
                 "XLEDGER_CHECKPOINT_KEY, i.e. trusting the operator's own configuration."),
        origin: Optional[str] = typer.Option(
            None, "--origin", help="Require every checkpoint to be for this log origin."),
    ) -> None:
        """Recompute every leaf from the stored events and check the tree and every signed checkpoint.

        Exit 0: everything verifies. Exit 1: tampering found (the first bad entry is named).
        Exit 2: bad input.
        """
        settings = ledger_settings(ledger_url)
        key, given = _public_key(public_key, settings)
        ledger = open_ledger(settings.ledger_url)
        if not given:
            typer.echo("note: checking signatures with the key from XLEDGER_CHECKPOINT_KEY; an auditor "
                       "passes --public-key", err=True)
        from ledger.integrity import TreeCorrupted

        try:
            report = _run_verify(ledger, key, origin)
        except TreeCorrupted as exc:
            typer.echo(f"TAMPERED: {exc}")
            raise typer.Exit(1)
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if report.ok:
            typer.echo(f"OK: {report.tree_size} entries, {report.checkpoints} signed checkpoints verified; "
                       f"root {_b64(report.root)}")
            return
        first = report.first
        typer.echo(f"TAMPERED: {first.describe()}")
        if report.findings_total > 1:
            typer.echo(f"({report.findings_total} problems in all; the first {min(5, len(report.findings))}:)")
            for finding in sorted(report.findings, key=lambda f: (f.leaf_index is None, f.leaf_index or 0))[:5]:
                typer.echo(f"  - [{finding.kind}] {finding.describe()}")
        raise typer.Exit(1)

    # -- xledger ledger … ---------------------------------------------------------------------

    @ledger_app.command("integrate")
    def integrate(
        ledger_url: Optional[str] = ledger_url_opt,
        no_checkpoint: bool = typer.Option(False, "--no-checkpoint",
                                           help="Only catch up; sign just the periodic checkpoints."),
    ) -> None:
        """Fold new ledger entries into the Merkle tree and sign a checkpoint now; print tree size and root.

        Periodic checkpoints are signed every XLEDGER_CHECKPOINT_INTERVAL entries.
        """
        settings = ledger_settings(ledger_url)
        if settings.checkpoint_interval < 1:
            fail("XLEDGER_CHECKPOINT_INTERVAL must be a positive number of entries")
        signer = _signer(settings)
        ledger = open_ledger(settings.ledger_url)
        from ledger.checkpoint import CheckpointError
        from ledger.integrity import TreeCorrupted

        try:
            result = ledger.integrate(signer=signer, origin=settings.ledger_origin,
                                      sign_every=settings.checkpoint_interval, checkpoint=not no_checkpoint)
        except CheckpointError as exc:
            fail(f"cannot sign a checkpoint: {exc}")
        except TreeCorrupted as exc:
            fail(f"the stored tree is damaged, run `xledger verify`: {exc}", 1)
        typer.echo(f"tree size {result.tree_size}")
        typer.echo(f"root {_b64(result.root)}")
        typer.echo(f"appended {result.appended}, signed {len(result.checkpoints)} checkpoint(s)")

    @ledger_app.command("checkpoint-key")
    def checkpoint_key(
        note: bool = typer.Option(False, "--note", help="Print the C2SP signed-note verifier key instead."),
    ) -> None:
        """Print the public key auditors need to check checkpoints and proofs (base64 raw Ed25519)."""
        from ledger.checkpoint import CheckpointError, encode_public_key, note_verifier_key

        settings = ledger_settings(None)
        signer = _signer(settings, "ledger checkpoint-key")
        if note:
            try:
                typer.echo(note_verifier_key(settings.ledger_origin, signer.public_key))
            except CheckpointError as exc:
                fail(f"XLEDGER_LEDGER_ORIGIN cannot name a note key: {exc}")
        else:
            typer.echo(encode_public_key(signer.public_key))
        typer.echo(f"key id {signer.key_id}, origin {settings.ledger_origin}", err=True)

    # -- xledger proof … ----------------------------------------------------------------------

    out_opt = typer.Option(None, "--out", help="Also write the files `python -m ledger.proofs` reads into "
                                               "this directory.")

    @proof_app.command("inclusion")
    def proof_inclusion(
        entry: int = typer.Argument(..., help="Leaf index of the entry (0 = first entry in the tree)."),
        size: Optional[int] = typer.Option(None, "--size", help="Tree size of a stored checkpoint to prove "
                                           "against. Default: the latest checkpoint (signed now if none "
                                           "covers the entry)."),
        out: Optional[Path] = out_opt,
        ledger_url: Optional[str] = ledger_url_opt,
    ) -> None:
        """Print a JSON bundle: the inclusion proof of ENTRY, its signed checkpoint, and the entry.

        With --out DIR it writes proof.json, checkpoint.json and entry.bin (the canonical entry
        bytes), checked offline by:
        python -m ledger.proofs verify-inclusion DIR/proof.json DIR/checkpoint.json KEY --leaf DIR/entry.bin
        """
        settings = ledger_settings(ledger_url)
        require_trusted(settings, "proof")  # it may sign a checkpoint
        ledger = open_ledger(settings.ledger_url)
        integrity = ledger.integrity
        tree_size = integrity.tree_size()
        if entry < 0 or entry >= tree_size:
            fail(f"ENTRY must be a leaf index below the tree size {tree_size}")
        signed = _checkpoint_for(ledger, settings, size, covering=entry + 1)
        if signed.checkpoint.tree_size <= entry:
            fail(f"checkpoint of size {signed.checkpoint.tree_size} does not contain leaf {entry}")
        proof = integrity.inclusion_proof(entry, signed.checkpoint.tree_size)
        item = integrity.entry(entry)
        bundle = {
            "format": "exchange-ledger/inclusion-bundle/v1",
            "proof": proof.to_dict(),
            "checkpoint": signed.to_dict(),
            "entry": {
                "leaf_index": item.leaf_index,
                "notification_id": item.notification_id,
                "originator_id": str(item.originator_id),
                "originator_version": item.originator_version,
                "topic": item.topic,
                "entry_b64": _b64(item.entry_bytes()),
            },
        }
        if out is not None:
            _write_files(out, {"proof.json": proof.to_json(), "checkpoint.json": signed.to_json(),
                               "entry.bin": item.entry_bytes()})
        typer.echo(json.dumps(bundle, indent=2))

    @proof_app.command("consistency")
    def proof_consistency(
        old: int = typer.Argument(..., help="Tree size of the older stored checkpoint."),
        new: int = typer.Argument(..., help="Tree size of the newer stored checkpoint (or the current size)."),
        out: Optional[Path] = out_opt,
        ledger_url: Optional[str] = ledger_url_opt,
    ) -> None:
        """Print a JSON bundle: the consistency proof from OLD to NEW and both signed checkpoints.

        With --out DIR it writes proof.json, old.json and new.json, checked offline by:
        python -m ledger.proofs verify-consistency DIR/proof.json DIR/old.json DIR/new.json KEY
        """
        settings = ledger_settings(ledger_url)
        require_trusted(settings, "proof")  # it may sign a checkpoint
        if old < 0 or new < 0 or old > new:
            fail("OLD and NEW must be tree sizes with 0 <= OLD <= NEW")
        ledger = open_ledger(settings.ledger_url)
        old_cp = _checkpoint_for(ledger, settings, old)
        new_cp = _checkpoint_for(ledger, settings, new)
        proof = ledger.integrity.consistency_proof(old, new)
        bundle = {
            "format": "exchange-ledger/consistency-bundle/v1",
            "proof": proof.to_dict(),
            "old_checkpoint": old_cp.to_dict(),
            "new_checkpoint": new_cp.to_dict(),
        }
        if out is not None:
            _write_files(out, {"proof.json": proof.to_json(), "old.json": old_cp.to_json(),
                               "new.json": new_cp.to_json()})
        typer.echo(json.dumps(bundle, indent=2))

    # -- xledger subject erase ----------------------------------------------------------------

    @subject_app.command("erase")
    def subject_erase(
        pseudonym: str = typer.Argument(..., help="The subject's pseudonym (64 hex characters), never a CPR number."),
        reason: str = typer.Option(..., "--reason", help="Why (legal basis, case number). Recorded in the "
                                   "ledger forever: no personal data."),
        ledger_url: Optional[str] = ledger_url_opt,
    ) -> None:
        """Destroy the subject's data key (crypto-shredding) and record the erasure in the ledger.

        Every hash, checkpoint and proof stays valid; the subject's sealed payloads become unreadable.
        """
        from ledger.erasure import ErasureError, check_pseudonym, check_reason

        try:
            check_pseudonym(pseudonym)
            check_reason(reason)
        except ErasureError as exc:
            fail(str(exc))
        settings = ledger_settings(ledger_url)
        require_trusted(settings, "subject erase")
        ledger = open_ledger(settings.ledger_url)
        try:
            result = ledger.erase_subject(pseudonym, reason)
        except ErasureError as exc:
            fail(str(exc), 1)
        how = "recorded" if result.recorded else "was already recorded; key now destroyed"
        typer.echo(f"erased: key {result.key_id} destroyed, erasure {result.erasure_id} {how}")


def _checkpoint_for(ledger, settings, size: int | None, covering: int = 0):
    """The signed checkpoint to prove against.

    A stored checkpoint of exactly ``size`` if there is one. Without --size: the latest
    stored checkpoint, if it covers the entry. Otherwise we sign one now, but only for the
    *current* tree size (via checkpoint_now): a checkpoint is the operator's statement about
    the tree at the time it signs, so we never back-date one for a past size; asking for a
    past size that was never signed is an error that lists the sizes that were.
    """
    integrity = ledger.integrity
    if size is not None:
        signed = integrity.checkpoint(size)
        if signed is not None:
            return signed
        current = integrity.tree_size()
        if size != current:
            sizes = integrity.checkpoint_sizes()
            shown = ", ".join(map(str, sizes[-10:])) or "none"
            fail(f"no signed checkpoint of size {size} (current tree size {current}; signed sizes: {shown})")
    else:
        signed = integrity.latest_checkpoint(covering=covering)
        if signed is not None:
            return signed
    signer = _signer(settings, "proof")
    from ledger.checkpoint import CheckpointError

    try:
        # Sign the tree as it is now; do not integrate first, so the size stays the one asked for.
        result = integrity.integrate(signer=signer, origin=settings.ledger_origin, checkpoint=True, max_entries=0)
    except CheckpointError as exc:
        fail(f"cannot sign a checkpoint: {exc}")
    signed = integrity.checkpoint(result.tree_size)
    if signed is None:
        fail("could not sign a checkpoint")
    return signed


def _run_verify(ledger, key, origin):
    from ledger.verify import verify_ledger

    if not sys.stderr.isatty():
        return verify_ledger(ledger, key, origin=origin)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("verify", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return verify_ledger(ledger, key, origin=origin, progress=progress)
