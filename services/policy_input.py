"""The Avro exchange request as the policy engine's input: same vocabulary, so this is renaming, not logic."""

from __future__ import annotations

from typing import Any


def to_policy_request(envelope: dict[str, Any]) -> dict[str, Any]:
    # The gate builds this once per exchange and hands it straight to ExchangeRequest's validator,
    # which copies into new models and never keeps or changes its input: the envelope's own
    # dicts and lists are passed as they are, not copied. release_date stays the date Avro decoded
    # (pydantic takes a date as it is; an ISO string would be parsed back into the same date).
    subject = dict(envelope["subject"])
    subject.pop("pseudonym", None)
    request: dict[str, Any] = {
        "id": envelope["message_id"],
        "occurred_at": envelope["occurred_at"],
        # Directory parties: validity and memberships come from the shipped directory.
        "sender": envelope["sender"],
        "recipients": envelope["recipients"],
        "context": envelope["context"],
        "underlying_basis": envelope["underlying_basis"],
        "cooperation_id": envelope["cooperation_id"],
        "purpose": envelope["purpose"],
        "subject": subject,
        "data_categories": envelope["data_categories"],
        "necessity": envelope["necessity"],
        "third_party_justification": envelope["third_party_justification"],
        "mandatory": envelope["mandatory"],
    }
    if envelope["provenance"] is not None:
        request["provenance"] = envelope["provenance"]
    if envelope["consent"] is not None:
        request["consent"] = envelope["consent"]
    return request
