"""`xledger agency …`: publish as an authority, read its inbox and receipts."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

console = Console()


def _load_request(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise typer.BadParameter(f"{path} must hold one request object")
    doc = dict(doc)
    if "payload_type" in doc and "." not in str(doc["payload_type"]):
        doc["payload_type"] = f"dk.xledger.payload.{doc['payload_type']}"
    doc["recipients"] = [(r["org"], r["role"]) if isinstance(r, dict) else tuple(r) for r in doc.get("recipients", [])]
    if isinstance(doc.get("occurred_at"), str):
        doc["occurred_at"] = datetime.fromisoformat(doc["occurred_at"])
    return doc


def _json_default(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError(type(value).__name__)


def register(app: typer.Typer, **_: Any) -> None:
    from services.cli.common import BOOTSTRAP, fail, require_development, settings_from

    agency_app = typer.Typer(help="Act as an authority: publish requests, read the inbox and receipts.",
                             no_args_is_help=True)
    app.add_typer(agency_app, name="agency")

    @agency_app.command("kinds")
    def kinds() -> None:
        """List the kinds of authority, their roles and the event types each may send."""
        from services.agencies import KINDS

        table = Table("kind", "roles", "sends")
        for k in KINDS.values():
            table.add_row(k.name, ", ".join(k.roles), ", ".join(t.rsplit(".", 1)[1] for t in k.sends))
        console.print(table)

    @agency_app.command("publish")
    def publish(
        request_file: Path = typer.Argument(..., help="YAML or JSON request: payload_type, payload, recipients, "
                                                      "context, purpose, data_categories, subject, necessity, …"),
        org: str = typer.Option(..., "--org", help="Authority id of the sender, e.g. kommune:326."),
        role: str = typer.Option(..., "--role", help="The role the sender acts in, e.g. MUNI_SOCIAL_ADULT."),
        key_file: Optional[Path] = typer.Option(None, "--key-file", help="Ed25519 private key (PEM or base64 raw)."),
        key_id: Optional[str] = typer.Option(None, "--key-id", help="The id of that key in the deployment's key set "
                                                                     "(required with --key-file)."),
        dev_key: bool = typer.Option(False, "--dev-key", help="Sign with the public development key (development "
                                                              "only: XLEDGER_ENV=development)."),
        bootstrap_servers: Optional[str] = BOOTSTRAP,
    ) -> None:
        """Sign and publish one exchange request to exchange.requests."""
        from ledger.checkpoint import load_private_key
        from services.agencies import AgencyError, AgencyService
        from services.agency import Publisher
        from services.kafka import make_producer
        from services.keyring import DEV_KEY_ID, dev_private_key, dev_public_key
        from services.runtime import Runtime
        from services.signing import public_bytes

        if not (key_file or dev_key) or (key_file and dev_key):
            fail("give either --key-file PATH (the authority's private key) with --key-id, or --dev-key")
        settings = settings_from(bootstrap_servers, None)
        if dev_key:
            require_development(settings, "--dev-key")
        request = _load_request(request_file)
        if key_file:
            if not key_id:
                fail("--key-id is required with --key-file: the id of that key in the deployment's key set")
            try:
                key = load_private_key(key_file.read_bytes().strip())
            except (OSError, ValueError) as exc:
                fail(f"cannot load key {key_file}: {exc}")
            if public_bytes(key) == dev_public_key(org):
                require_development(settings, f"signing with {org}'s public development key")
        else:
            key, key_id = dev_private_key(org), DEV_KEY_ID
        rt = Runtime(settings)
        producer = make_producer(settings, client_id=f"agency-{org}")
        try:
            publisher = Publisher(org, role, producer=producer, key=key, key_id=key_id, codec=rt.codec)
            service = AgencyService.create(rt.engine.directory, publisher)
            sent = service.publish(**request)
        except (AgencyError, ValueError, TypeError, KeyError) as exc:
            fail(f"{request_file}: {exc}")
        finally:
            producer.close()
        typer.echo(json.dumps({"message_id": sent.message_id, "partition": sent.partition, "offset": sent.offset}))

    @agency_app.command("inbox")
    def inbox(
        org: str = typer.Option(..., "--org", help="Whose inbox to read."),
        show_payload: bool = typer.Option(False, "--show-payload", help="Print the payload fields (personal data)."),
        wait: float = typer.Option(3.0, help="Seconds to wait for more deliveries."),
        bootstrap_servers: Optional[str] = BOOTSTRAP,
    ) -> None:
        """Print every delivery in an authority's inbox, one JSON object per line, re-sends ignored."""
        import time

        from services.agencies import open_inbox
        from services.kafka import make_consumer

        settings = settings_from(bootstrap_servers, None)
        box = open_inbox(org, make_consumer(settings, None, client_id=f"inbox-{org}"))
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                for item in box.poll(timeout_ms=200):
                    deadline = time.monotonic() + wait
                    out = {k: v for k, v in item.record.items() if k != "payload"}
                    if show_payload:
                        out["payload"] = item.payload
                    typer.echo(json.dumps(out, default=_json_default, ensure_ascii=False))
        finally:
            box.consumer.close()

    @agency_app.command("receipts")
    def receipts(
        org: str = typer.Option(..., "--org", help="Whose receipts to read (the sender)."),
        wait: float = typer.Option(3.0, help="Seconds to wait for more receipts."),
        bootstrap_servers: Optional[str] = BOOTSTRAP,
    ) -> None:
        """Print the gate's decision receipts for an authority's requests, one JSON object per line."""
        import time

        from services.agency import read_receipts
        from services.agencies import open_receipts
        from services.kafka import make_consumer

        settings = settings_from(bootstrap_servers, None)
        consumer = open_receipts(org, make_consumer(settings, None, client_id=f"receipts-{org}"))
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                for record in read_receipts(consumer, org, timeout_ms=200):
                    deadline = time.monotonic() + wait
                    typer.echo(json.dumps(record, ensure_ascii=False))
        finally:
            consumer.close()
