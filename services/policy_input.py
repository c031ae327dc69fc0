"""The Avro exchange request as the policy engine's input: same vocabulary, so this is renaming, not logic."""

from __future__ import annotations

from datetime import date
from typing import Any


def to_policy_request(envelope: dict[str, Any]) -> dict[str, Any]:
    subject = {k: v for k, v in envelope["subject"].items() if k != "pseudonym"}
    if isinstance(subject.get("release_date"), date):
        subject["release_date"] = subject["release_date"].isoformat()
    request: dict[str, Any] = {
        "id": envelope["message_id"],
        "occurred_at": envelope["occurred_at"],
        # Directory parties: validity and memberships come from the shipped directory.
        "sender": dict(envelope["sender"]),
        "recipients": [dict(r) for r in envelope["recipients"]],
        "context": envelope["context"],
        "underlying_basis": envelope["underlying_basis"],
        "cooperation_id": envelope["cooperation_id"],
        "purpose": envelope["purpose"],
        "subject": subject,
        "data_categories": list(envelope["data_categories"]),
        "necessity": envelope["necessity"],
        "third_party_justification": envelope["third_party_justification"],
        "mandatory": envelope["mandatory"],
    }
    if envelope["provenance"] is not None:
        request["provenance"] = dict(envelope["provenance"])
    if envelope["consent"] is not None:
        request["consent"] = dict(envelope["consent"])
    return request
