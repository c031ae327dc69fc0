"""Semantic validation of decoded records: what Avro types cannot say (CPR format, real dates, time zones, ranges).

Each record name maps to a pydantic model mirroring its schema. Errors name the
field path and never echo the offending value, which may be personal data.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.cpr import InvalidCPR, normalise

EARLIEST = date(1900, 1, 1)
LATEST = date(2100, 12, 31)


class RecordInvalid(ValueError):
    def __init__(self, name: str, problems: list[str]):
        self.name = name
        self.problems = problems
        super().__init__(f"{name}: " + "; ".join(problems))


class _Model(BaseModel):
    # Avro already fixed the shape; these models only add meaning, so unknown keys are allowed
    # (a reader schema newer than this model may add optional fields).
    model_config = ConfigDict(extra="allow", frozen=True)


def _date_in_range(value: date | None) -> date | None:
    if value is not None and not (EARLIEST <= value <= LATEST):
        raise ValueError(f"date outside {EARLIEST}..{LATEST}")
    return value


def _rfc3339_with_offset(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError("date-time must carry a UTC offset")
    return value


class Subject(_Model):
    pseudonym: str = Field(pattern=r"^[0-9a-f]{64}$")
    age: int | None = Field(default=None, ge=0, le=130)
    release_date: date | None = None

    _range = field_validator("release_date")(_date_in_range)


class Consent(_Model):
    withdrawn_at: str | None = None

    @field_validator("withdrawn_at")
    @classmethod
    def _withdrawn(cls, value: str | None) -> str | None:
        if value is None or len(value) == 10:  # a bare date means the start of that day
            if value is not None:
                date.fromisoformat(value)
            return value
        return _rfc3339_with_offset(value)


class ExchangeRequest(_Model):
    message_id: str = Field(min_length=8, max_length=128)
    occurred_at: str
    recipients: list[dict[str, Any]] = Field(min_length=1)
    data_categories: list[str] = Field(min_length=1)
    subject: Subject
    consent: Consent | None = None
    payload_type: str = Field(min_length=1)

    _occurred = field_validator("occurred_at")(_rfc3339_with_offset)


class ReleaseNotice(_Model):
    cpr: str
    full_name: str = Field(min_length=1, max_length=200)
    institution: str = Field(min_length=1)
    release_date: date

    _range = field_validator("release_date")(_date_in_range)

    @field_validator("cpr")
    @classmethod
    def _cpr(cls, value: str) -> str:
        try:
            return normalise(value)
        except InvalidCPR as exc:
            raise ValueError(str(exc)) from None


MODELS: dict[str, type[_Model]] = {
    "dk.xledger.ExchangeRequest": ExchangeRequest,
    "dk.xledger.payload.ReleaseNotice": ReleaseNotice,
}

# Payload fields holding the subject's CPR number, by record name; the gate checks the
# envelope's pseudonym against it.
CPR_FIELD: dict[str, str] = {"dk.xledger.payload.ReleaseNotice": "cpr"}


def validate(name: str, record: dict[str, Any]) -> BaseModel:
    model = MODELS.get(name)
    if model is None:
        raise RecordInvalid(name, ["no validation model for this record type"])
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        raise RecordInvalid(name, [_describe(e) for e in exc.errors()]) from None


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"]) or "(record)"
    return f"{path}: {error['msg']}"


Validator = Callable[[str, dict[str, Any]], BaseModel]
