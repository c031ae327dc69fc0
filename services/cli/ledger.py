"""`xledger verify`, `xledger ledger …`, `xledger proof …` and `xledger subject erase`.

Registered by services.cli on the shared groups. Exit codes: 0 ok, 1 the ledger failed a
check (tampered, or nothing to do), 2 bad input (a one-line reason on stderr), and for
`verify` 3: could not check (wrong key or origin, no entries, entries not yet integrated).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Optional

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


def _public_key(value: str | None, settings, option: str = "--public-key") -> tuple[Any, bool]:
    """The auditor's key (--public-key: base64, PEM, or a file), else the operator's own."""
    from ledger.checkpoint import CheckpointError, load_public_key

    if value is None:
        return _signer(settings, "verify").public_key, False
    data: Any = value
    candidate = Path(value)
    if candidate.is_file():
        data = candidate.read_bytes()
    try:
        key = load_public_key(data)
    except CheckpointError as exc:
        fail(f"{option} is not an Ed25519 public key: {exc}")
    if _is_development_checkpoint_key(key, settings):
        fail(f"{option} is the public development checkpoint key; anyone can sign with it, so outside "
             "development it proves nothing")
    return key, True


def _is_development_checkpoint_key(key, settings=None) -> bool:
    """Outside development: is ``key`` the public development checkpoint key (which anyone can sign with)?"""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from services.config import dev_checkpoint_public_key

    if (settings or ledger_settings(None)).is_development:
        return False
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw) == dev_checkpoint_public_key()


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}")


def _key_history(path: Path | None):
    """The retired checkpoint keys (XLEDGER_CHECKPOINT_KEY_HISTORY / --key-history)."""
    if path is None:
        return []
    from ledger.checkpoint import CheckpointError, parse_key_history

    try:
        history = parse_key_history(_read_text(path, "key history"))
    except CheckpointError as exc:
        fail(f"key history {path}: {exc}")
    for retired in history:
        if not _is_development_checkpoint_key(retired.public_key):
            continue
        # A ledger of an earlier release ran on the public key. Checkpoints it signed up to a size are
        # harmless: the current key's later checkpoints commit to those entries too. Without an end,
        # anyone could sign every future checkpoint.
        if retired.last_size is None:
            fail(f"key history {path} holds the public development checkpoint key with no last size; anyone can "
                 "sign with it, so outside development it may only cover sizes that are past")
        typer.echo(f"warning: key history {path}: the checkpoints of {retired.validity()} were signed with the "
                   "public development checkpoint key and prove nothing by themselves; only later checkpoints "
                   "of the deployment's own key vouch for those entries", err=True)
    return history


def _public_until(history) -> int | None:
    """The last size a retired public development checkpoint key signed (outside development), if any."""
    sizes = [k.last_size for k in history if k.last_size is not None and _is_development_checkpoint_key(k.public_key)]
    return max(sizes, default=None)


def _trusted(path: Path):
    from ledger.checkpoint import CheckpointError
    from services.monitor import read_trusted

    try:
        return read_trusted(_read_text(path, "trusted checkpoint"))
    except CheckpointError as exc:
        fail(f"trusted checkpoint {path} is not a checkpoint: {exc}")


def _witness_keys(values: list[str]):
    """Witness cosignature keys: vkeys, or files holding one per line."""
    from ledger.note import COSIGNATURE_V1, NoteError, verifier_from_vkey

    out = []
    for value in values:
        lines = [value]
        if "+" not in value and Path(value).is_file():
            lines = [line.strip() for line in _read_text(Path(value), "witness keys").splitlines()]
        for line in lines:
            if not line or line.startswith("#"):
                continue
            try:
                verifier = verifier_from_vkey(line, COSIGNATURE_V1)
            except NoteError as exc:
                fail(f"--witness: {exc}")
            out.append(verifier)
    if len({(v.name, v.key_id) for v in out}) != len(out):
        fail("--witness lists a key twice")
    return out


def _redacted(url: str) -> str:
    from urllib.parse import urlparse

    password = urlparse(url).password
    return url.replace(password, "***") if password else url


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _file(stem: str, signed) -> str:
    """checkpoint.note for a C2SP note; checkpoint.json for a checkpoint stored in the v1 JSON form."""
    return f"{stem}.json" if signed.is_legacy else f"{stem}.note"


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
            help="The operator's current Ed25519 checkpoint key (base64, PEM, or a file). Default: derived from "
                 "XLEDGER_CHECKPOINT_KEY, i.e. trusting the operator's own configuration."),
        origin: Optional[str] = typer.Option(
            None, "--origin", help="Require every checkpoint to be for this log origin."),
        key_history: Optional[Path] = typer.Option(
            None, "--key-history", envvar="XLEDGER_CHECKPOINT_KEY_HISTORY",
            help="File of retired checkpoint keys, one '<vkey> <first size> <last size>' per line."),
        interval: Optional[int] = typer.Option(
            None, "--checkpoint-interval", min=1,
            help="The signer signs a checkpoint every N entries; a longer stretch without one fails. "
                 "Default: XLEDGER_CHECKPOINT_INTERVAL (1000)."),
        trusted: List[Path] = typer.Option(
            [], "--trusted", help="A saved checkpoint (signed note, v1 JSON) or a monitor's state file; the ledger "
                                  "must hold the tree it committed to. Repeat for several."),
        witness: List[str] = typer.Option(
            [], "--witness", help="A witness's cosignature key (vkey '<name>+<hash>+<key>', or a file of them). "
                                  "Repeat for several."),
        quorum: Optional[int] = typer.Option(
            None, "--quorum", min=1, help="How many of the --witness keys must have cosigned the latest checkpoint "
                                          "(default: all)."),
    ) -> None:
        """Recompute every leaf from the stored events and check the tree and every signed checkpoint.

        Exit 0: verified. Exit 1: tampered (the first bad entry is named). Exit 2: bad input.
        Exit 3: could not check (wrong key or origin, nothing to verify, or entries not yet integrated).
        """
        settings = ledger_settings(ledger_url)
        key, given = _public_key(public_key, settings)
        history = _key_history(key_history or (Path(settings.checkpoint_key_history)
                                               if settings.checkpoint_key_history else None))
        trusted_cps = [_trusted(path) for path in trusted]
        witnesses = _witness_keys(witness)
        if quorum is not None and quorum > len(witnesses):
            fail(f"--quorum {quorum} needs at least that many --witness keys (got {len(witnesses)})")
        ledger = open_ledger(settings)
        if not given:
            typer.echo("note: checking signatures with the key from XLEDGER_CHECKPOINT_KEY; an auditor "
                       "passes --public-key", err=True)
        from ledger.checkpoint import CheckpointError
        from ledger.integrity import TreeCorrupted

        options = dict(history=history, checkpoint_interval=interval or settings.checkpoint_interval,
                       trusted=trusted_cps, witnesses=witnesses, quorum=quorum or len(witnesses))
        try:
            report = _run_verify(ledger, key, origin, options)
        except TreeCorrupted as exc:
            typer.echo(f"TAMPERED: {exc}")
            raise typer.Exit(1)
        except CheckpointError as exc:  # a --trusted checkpoint the keys do not verify
            fail(f"--trusted: {exc}")
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)
        public_until = _public_until(history)
        if public_until is not None and max(ledger.integrity.checkpoint_sizes(), default=0) <= public_until:
            report.unchecked.append(f"no checkpoint beyond size {public_until} is signed with the deployment's own "
                                    "key: only the public development checkpoint key vouches for the tree (sign one "
                                    "with `xledger ledger integrate` once there are new entries)")
        if not report.ok:
            first = report.first
            typer.echo(f"TAMPERED: {first.describe()}")
            if report.findings_total > 1:
                typer.echo(f"({report.findings_total} problems in all; the first {min(5, len(report.findings))}:)")
                for finding in sorted(report.findings, key=lambda f: (f.leaf_index is None, f.leaf_index or 0))[:5]:
                    typer.echo(f"  - [{finding.kind}] {finding.describe()}")
            raise typer.Exit(1)
        if report.unchecked:
            typer.echo(f"NOT VERIFIED: {report.unchecked[0]}")
            for reason in report.unchecked[1:]:
                typer.echo(f"  - {reason}")
            raise typer.Exit(3)
        extra = "".join([f", consistent with {len(trusted_cps)} trusted checkpoint(s)" if trusted_cps else "",
                         f", latest checkpoint cosigned by {report.cosignatures} witness(es)" if witnesses else ""])
        typer.echo(f"OK: {report.tree_size} entries, {report.checkpoints} signed checkpoints verified{extra}; "
                   f"root {_b64(report.root)}")

    # -- xledger ledger … ---------------------------------------------------------------------

    @ledger_app.command("init")
    def init(ledger_url: Optional[str] = ledger_url_opt) -> None:
        """Create an empty ledger at --ledger-url (nothing happens to one that exists).

        Only this, `gate run`, `relay run` and `demo` create a ledger; every other command refuses
        a missing one, so that a mistyped URL never answers from an empty ledger.
        """
        from ledger.presence import NoLedger, require_ledger

        settings = ledger_settings(ledger_url)
        try:
            require_ledger(settings.ledger_url, connect_timeout=settings.connect_timeout)
            existed = True
        except (NoLedger, ConnectionError):
            existed = False  # open_ledger below says what is wrong, if anything
        open_ledger(settings, create=True).close()
        typer.echo(f"{'ledger already there' if existed else 'ledger created'}: {_redacted(settings.ledger_url)}")

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
        ledger = open_ledger(settings)
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
        if settings.witnesses:
            _report_cosigning(_collector(settings, ledger, signer).collect())

    @ledger_app.command("cosign")
    def cosign(ledger_url: Optional[str] = ledger_url_opt) -> None:
        """Ask the witnesses in XLEDGER_WITNESSES to cosign the newest checkpoint now, and store their cosignatures.

        The relay does this by itself; this is for operators. Exit 1 if a witness refused (a fork, a
        rollback, or a configuration error), 3 if one could not be reached.
        """
        settings = ledger_settings(ledger_url)
        if not settings.witnesses:
            fail("no witnesses configured (XLEDGER_WITNESSES='<vkey>@<url> …')")
        signer = _signer(settings)
        ledger = open_ledger(settings)
        outcomes = _collector(settings, ledger, signer).collect()
        if not outcomes:
            fail("the ledger has no signed checkpoint yet (run `xledger ledger integrate`)", 3)
        _report_cosigning(outcomes)
        if any(o.status == "refused" for o in outcomes):
            raise typer.Exit(1)
        if any(o.status == "unreachable" for o in outcomes):
            raise typer.Exit(3)

    @ledger_app.command("serve")
    def serve(
        ledger_url: Optional[str] = ledger_url_opt,
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
        port: int = typer.Option(8090, "--port", min=1, max=65535, help="Port to listen on."),
    ) -> None:
        """Serve the log's public tree data read-only over HTTP, for monitors: no personal data.

        GET /checkpoint (newest, with cosignatures), /checkpoint/SIZE, /proof/consistency?old=M&new=N.
        """
        import uvicorn

        from services.logserver import create_log_app

        settings = ledger_settings(ledger_url)
        ledger = open_ledger(settings)
        key = _signer(settings).public_key if settings.checkpoint_key else None
        typer.echo(f"log endpoint on http://{host}:{port}/ (Ctrl-C stops)", err=True)
        try:
            uvicorn.run(create_log_app(ledger, key), host=host, port=port, log_level="warning")
        finally:
            ledger.close()

    @ledger_app.command("checkpoint-keygen")
    def checkpoint_keygen() -> None:
        """Print a new checkpoint signing key (base64, for XLEDGER_CHECKPOINT_KEY) on stdout; its note key on stderr.

        Rotation: stop the relay, run `xledger ledger retire-checkpoint-key --history FILE` with the old
        key, give every witness the new note key, set XLEDGER_CHECKPOINT_KEY to the new key, start the
        relay, and publish FILE to auditors (XLEDGER_CHECKPOINT_KEY_HISTORY, verify --key-history).
        """
        from ledger.checkpoint import CheckpointError, encode_private_key, generate_keypair, note_verifier_key

        settings = ledger_settings(None)
        private, public = generate_keypair()
        typer.echo(encode_private_key(private))
        try:
            typer.echo(f"note key: {note_verifier_key(settings.ledger_origin, public)}", err=True)
        except CheckpointError as exc:
            fail(f"XLEDGER_LEDGER_ORIGIN cannot name a note key: {exc}")

    @ledger_app.command("retire-checkpoint-key")
    def retire_checkpoint_key(
        history: Path = typer.Option(..., "--history", help="The key history file to append the retired key to."),
        ledger_url: Optional[str] = ledger_url_opt,
    ) -> None:
        """Sign a last checkpoint with the current XLEDGER_CHECKPOINT_KEY and append it to the key history.

        The line says which checkpoint sizes the key signed, so checkpoints signed with it keep
        verifying after the switch, and nothing it signs later does. Stop the relay first.
        """
        from ledger.checkpoint import CheckpointError, LogKey, key_fingerprint, parse_key_history

        settings = ledger_settings(ledger_url)
        signer = _signer(settings)
        previous = parse_key_history(_read_text(history, "key history")) if history.exists() else []
        if any(key_fingerprint(k.public_key) == signer.key_id for k in previous):
            fail(f"the current key {signer.key_id} is already retired in {history}")
        ledger = open_ledger(settings)
        try:
            last = ledger.checkpoint_now(signer, settings.ledger_origin).checkpoint.tree_size
        except CheckpointError as exc:
            fail(f"cannot sign a checkpoint: {exc}")
        first = max((k.last_size + 1 for k in previous if k.last_size is not None), default=0)
        line = LogKey(signer.public_key, settings.ledger_origin, first, last).history_line()
        try:
            with history.open("a") as f:
                if not previous and history.stat().st_size == 0:
                    f.write("# retired checkpoint keys of " + settings.ledger_origin + ": <vkey> <first size> "
                            "<last size>\n")
                f.write(line + "\n")
        except OSError as exc:
            fail(f"cannot write {history}: {exc.strerror or exc}")
        typer.echo(line)
        typer.echo(f"retired key {signer.key_id} after size {last}; now set XLEDGER_CHECKPOINT_KEY to the new key",
                   err=True)

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

        With --out DIR it writes proof.json, checkpoint.note (a C2SP signed note; checkpoint.json for
        a checkpoint signed before v2) and entry.bin (the canonical entry bytes), checked offline by:
        python -m ledger.proofs verify-inclusion DIR/proof.json DIR/checkpoint.note KEY --leaf DIR/entry.bin
        """
        settings = ledger_settings(ledger_url)
        require_trusted(settings, "proof")  # it may sign a checkpoint
        ledger = open_ledger(settings)
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
            "tree_size": signed.checkpoint.tree_size,
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
            _write_files(out, {"proof.json": proof.to_json(), _file("checkpoint", signed): signed.stored(),
                               "entry.bin": item.entry_bytes()})
        typer.echo(json.dumps(bundle, indent=2))

    @proof_app.command("consistency")
    def proof_consistency(
        old: Optional[int] = typer.Argument(None, help="Any older tree size (default: the --trusted checkpoint's)."),
        new: Optional[int] = typer.Argument(None, help="Size of a stored checkpoint, or the current size (default: "
                                                       "the latest checkpoint)."),
        trusted: Optional[Path] = typer.Option(
            None, "--trusted", help="A checkpoint you saved earlier (or a monitor's state): say plainly whether the "
                                    "tree proved from is the one it committed to."),
        out: Optional[Path] = out_opt,
        ledger_url: Optional[str] = ledger_url_opt,
    ) -> None:
        """Print a JSON bundle: the consistency proof from OLD to NEW, the old root and the signed checkpoint(s).

        OLD may be any size: its root is computed from the stored tree. With --out DIR it writes
        proof.json, new.note and (when a checkpoint of size OLD is stored) old.note, checked offline by:
        python -m ledger.proofs verify-consistency DIR/proof.json OLD.note DIR/new.note KEY
        where OLD.note is the checkpoint of size OLD that you trust. Exit 1 when the tree at OLD is not
        the one --trusted (or the stored checkpoint of size OLD) committed to.
        """
        settings = ledger_settings(ledger_url)
        require_trusted(settings, "proof")  # it may sign a checkpoint
        trusted_cp = _trusted(trusted) if trusted is not None else None
        if old is None:
            if trusted_cp is None:
                fail("give OLD, or --trusted with a saved checkpoint")
            old = trusted_cp.checkpoint.tree_size
        if trusted_cp is not None and trusted_cp.checkpoint.tree_size != old:
            fail(f"--trusted commits to size {trusted_cp.checkpoint.tree_size}, not OLD {old}")
        ledger = open_ledger(settings)
        integrity = ledger.integrity
        tree_size = integrity.tree_size()
        if new is None:
            latest = integrity.latest_checkpoint()
            new = latest.checkpoint.tree_size if latest is not None else tree_size
        if old < 0 or new < 0 or old > new:
            fail("OLD and NEW must be tree sizes with 0 <= OLD <= NEW")
        if old > tree_size:
            fail(f"OLD {old} is beyond the tree's size {tree_size}"
                  + (": the log no longer holds the tree you trust (a rollback)" if trusted_cp else ""), 1 if trusted_cp else 2)
        new_cp = _checkpoint_for(ledger, settings, new)
        old_cp = integrity.checkpoint(old)
        old_root = integrity.root(old)
        proof = integrity.consistency_proof(old, new)
        problems = []
        if trusted_cp is not None and trusted_cp.checkpoint.root_hash != old_root:
            problems.append(f"the tree this proof starts from is NOT the tree your trusted checkpoint committed to: at "
                            f"size {old} the ledger's root is {_b64(old_root)}, the trusted checkpoint says "
                            f"{_b64(trusted_cp.checkpoint.root_hash)}. The ledger's history was rewritten.")
        if old_cp is not None and old_cp.checkpoint.root_hash != old_root:
            problems.append(f"the stored checkpoint of size {old} says root {_b64(old_cp.checkpoint.root_hash)}, but the "
                            f"tree has {_b64(old_root)} at that size: the tree was rewritten after it was signed.")
        bundle = {
            "format": "exchange-ledger/consistency-bundle/v2",
            "proof": proof.to_dict(),
            "old_root": _b64(old_root),
            "old_checkpoint": old_cp.to_dict() if old_cp is not None else None,
            "new_checkpoint": new_cp.to_dict(),
        }
        if out is not None:
            files = {"proof.json": proof.to_json(), _file("new", new_cp): new_cp.stored()}
            if old_cp is not None:
                files[_file("old", old_cp)] = old_cp.stored()
            _write_files(out, files)
        typer.echo(json.dumps(bundle, indent=2))
        if problems:
            for problem in problems:
                typer.echo(f"NOT CONSISTENT: {problem}", err=True)
            raise typer.Exit(1)
        if trusted_cp is not None:
            typer.echo(f"the tree at size {old} is the one your trusted checkpoint committed to", err=True)
        elif old_cp is None and old:
            typer.echo(f"note: no checkpoint of size {old} is stored; old_root is computed from the tree as it is "
                       "now. Compare it with a checkpoint of that size you trust (--trusted).", err=True)

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
        ledger = open_ledger(settings)
        try:
            result = ledger.erase_subject(pseudonym, reason)
        except ErasureError as exc:
            fail(str(exc), 1)
        how = "recorded" if result.recorded else "was already recorded; key now destroyed"
        typer.echo(f"erased: key {result.key_id} destroyed, erasure {result.erasure_id} {how}")


def _collector(settings, ledger, signer):
    from services.cosigning import CosignatureCollector, WitnessConfigError, parse_witnesses

    try:
        witnesses = parse_witnesses(settings.witnesses)
    except WitnessConfigError as exc:
        fail(f"XLEDGER_WITNESSES: {exc}")
    return CosignatureCollector(ledger, witnesses, log_public_key=signer.public_key,
                                timeout=settings.witness_timeout_ms / 1000)


def _report_cosigning(outcomes) -> None:
    for o in outcomes:
        detail = f" ({o.http_status}: {o.detail})" if o.status == "refused" else (
            f" ({o.detail})" if o.detail else "")
        typer.echo(f"witness {o.witness}: {o.status} checkpoint {o.tree_size}{detail}",
                   err=o.status in ("refused", "unreachable"))


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


def _run_verify(ledger, key, origin, options):
    from ledger.verify import verify_ledger

    if not sys.stderr.isatty():
        return verify_ledger(ledger, key, origin=origin, **options)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("verify", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return verify_ledger(ledger, key, origin=origin, progress=progress, **options)
