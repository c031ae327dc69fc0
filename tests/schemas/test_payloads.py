"""Payload schemas: round trips, semantic validation, categories present, models in step with schemas."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from schemas.categories import annotated_fields, present_categories
from schemas.codec import AvroCodec
from schemas.registry import default_registry
from schemas.validation import CPR_FIELD, MODELS, RecordInvalid, is_payload, validate
from tests.schemas.examples import CPR_ADULT, PAYLOADS, payload

PAYLOAD_NAMES = sorted(PAYLOADS)
codec = AvroCodec()


def test_every_payload_schema_has_an_example_and_a_model():
    shipped = {n for n in default_registry().names() if n.startswith("dk.xledger.payload.")}
    assert shipped == set(PAYLOADS)
    assert shipped <= set(MODELS)
    assert set(MODELS) <= set(default_registry().names())
    assert all(is_payload(n) for n in shipped)
    assert not is_payload("dk.xledger.ExchangeRequest") and not is_payload("dk.xledger.SignedMessage")


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_round_trip(name):
    rec = PAYLOADS[name]
    data = codec.encode(name, rec)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == default_registry().latest(name).fingerprint
    decoded = codec.decode(data, expect=name)
    assert decoded.name == name
    assert decoded.writer_version == default_registry().latest(name).version
    assert decoded.record == rec
    validate(name, decoded.record)


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_round_trip_with_only_required_fields(name):
    schema = default_registry().latest(name).raw
    rec = {k: v for k, v in PAYLOADS[name].items()
           if not any(f["name"] == k and "default" in f for f in schema["fields"])}
    decoded = codec.decode(codec.encode(name, rec)).record
    for f in schema["fields"]:
        if "default" in f:
            assert decoded[f["name"]] == f["default"], f["name"]
    validate(name, decoded)


def test_cpr_field_for_every_personal_payload():
    for name, rec in PAYLOADS.items():
        if name.endswith("AggregateStatistics"):
            assert name not in CPR_FIELD
        else:
            assert CPR_FIELD[name] == "cpr"
            assert annotated_fields(default_registry().latest(name).raw)["cpr"] == "IDENTITY"


# -- validation -----------------------------------------------------------------------------


def _problems(name: str, rec: dict[str, Any]) -> list[str]:
    with pytest.raises(RecordInvalid) as info:
        validate(name, rec)
    assert info.value.name == name
    return info.value.problems


@pytest.mark.parametrize("name", [n for n in PAYLOAD_NAMES if n in CPR_FIELD])
@pytest.mark.parametrize("bad", ["3102901234", "12345", "01019O1234", "0113901234", ""])
def test_bad_cpr_names_the_field_and_never_echoes_it(name, bad):
    problems = _problems(name, payload(name, cpr=bad))
    assert len(problems) == 1 and problems[0].startswith("cpr: ")
    if bad:
        assert bad not in "; ".join(problems)


@pytest.mark.parametrize("bad", ["01\u00b21901234", "\u0660\u0661\u0660\u0661\u0669\u0660\u0661\u0662\u0663\u0664",
                                 "\uff10\uff11\uff10\uff11\uff19\uff10\uff11\uff12\uff13\uff14"])
def test_a_cpr_of_digits_other_than_ascii_is_refused_as_not_10_digits_without_a_fragment_of_it(bad):
    # str.isdigit() takes these; int() then quoted a piece of the number ('²1'), or the pseudonym's
    # ASCII encoding failed inside the gate.
    problems = _problems("dk.xledger.payload.IntakeNotice", payload("dk.xledger.payload.IntakeNotice", cpr=bad))
    assert len(problems) == 1 and problems[0].startswith("cpr: ") and problems[0].endswith("CPR number must be 10 digits (DDMMYY-SSSS)")


def test_cpr_with_hyphen_is_accepted():
    validate("dk.xledger.payload.IntakeNotice", payload("dk.xledger.payload.IntakeNotice", cpr="010190-1234"))


@pytest.mark.parametrize("name,field", [
    ("dk.xledger.payload.IntakeNotice", "intake_date"),
    ("dk.xledger.payload.CaseNote", "meeting_date"),
    ("dk.xledger.payload.InfohusAssessment", "assessment_date"),
    ("dk.xledger.payload.MeasureInitiated", "decided_on"),
    ("dk.xledger.payload.AggregateStatistics", "period_start"),
    ("dk.xledger.payload.ReleaseNotice", "release_date"),
])
@pytest.mark.parametrize("day", [date(1850, 1, 1), date(2101, 1, 1), date(9999, 12, 31)])
def test_date_out_of_range(name, field, day):
    problems = _problems(name, payload(name, **{field: day}))
    assert any(p.startswith(f"{field}: ") and "outside" in p for p in problems)
    assert all(str(day) not in p for p in problems)


@pytest.mark.parametrize("name,field", [
    ("dk.xledger.payload.ConcernReport", "reported_at"),
    ("dk.xledger.payload.InfohusReferral", "referred_at"),
])
@pytest.mark.parametrize("value,message", [
    ("2026-03-02T09:15:00", "UTC offset"),
    ("2026-03-02", "UTC offset"),
    ("yesterday-ish", "RFC 3339"),
    ("1850-03-02T09:15:00+01:00", "outside"),
])
def test_bad_timestamp(name, field, value, message):
    problems = _problems(name, payload(name, **{field: value}))
    assert len(problems) == 1 and problems[0].startswith(f"{field}: ") and message in problems[0]
    assert value not in problems[0]


def test_nested_errors_name_the_path():
    name = "dk.xledger.payload.InfohusAssessment"
    rec = payload(name)
    rec["step2_analysis"] = dict(rec["step2_analysis"], protective_factors=["ok", "   "])
    rec["step3_overall"] = dict(rec["step3_overall"], suggested_followers=["Kalundborg Kommune"])
    problems = _problems(name, rec)
    assert any(p.startswith("step2_analysis.protective_factors.1: ") for p in problems)
    assert any(p.startswith("step3_overall.suggested_followers.0: ") for p in problems)
    assert not any("Kalundborg Kommune" in p for p in problems)


@pytest.mark.parametrize("name,field", [
    ("dk.xledger.payload.ConcernReport", "description"),
    ("dk.xledger.payload.CaseNote", "summary"),
    ("dk.xledger.payload.CaseNote", "author"),
    ("dk.xledger.payload.MeasureInitiated", "description"),
    ("dk.xledger.payload.InfohusReferral", "question_to_infohus"),
    ("dk.xledger.payload.IntakeNotice", "full_name"),
])
def test_blank_text_where_it_matters(name, field):
    problems = _problems(name, payload(name, **{field: " \n\t "}))
    assert problems == [f"{field}: Value error, must not be empty or blank"]


@pytest.mark.parametrize("name,later,earlier,day", [
    ("dk.xledger.payload.IntakeNotice", "expected_release_date", "intake_date", date(2026, 1, 1)),
    ("dk.xledger.payload.CaseNote", "next_meeting", "meeting_date", date(2026, 1, 1)),
    ("dk.xledger.payload.InfohusAssessment", "next_review", "assessment_date", date(2026, 1, 1)),
    ("dk.xledger.payload.MeasureInitiated", "end_date", "start_date", date(2026, 1, 1)),
    ("dk.xledger.payload.AggregateStatistics", "period_end", "period_start", date(2025, 12, 31)),
])
def test_dates_in_order(name, later, earlier, day):
    assert _problems(name, payload(name, **{later: day})) == [f"{later}: Value error, must not be before {earlier}"]


def test_intake_remand_has_no_sentence():
    name = "dk.xledger.payload.IntakeNotice"
    problems = _problems(name, payload(name, custody_basis="REMAND_CH70", sentence_days=30))
    assert problems == ["sentence_days: Value error, must be empty for remand custody (no sentence yet)"]
    validate(name, payload(name, custody_basis="REMAND_CH70", sentence_days=None, expected_release_date=None))


def test_enum_outside_vocabulary_is_named():
    problems = _problems("dk.xledger.payload.ConcernReport",
                         payload("dk.xledger.payload.ConcernReport", source="NEIGHBOUR"))
    assert len(problems) == 1 and problems[0].startswith("source: ") and "NEIGHBOUR" not in problems[0]


def test_aggregate_small_counts_must_be_suppressed():
    name = "dk.xledger.payload.AggregateStatistics"
    rec = payload(name)
    rec["counts"] = rec["counts"] + [{"topic": "OTHER", "breakdown": None, "count": 2}]
    assert _problems(name, rec) == ["counts: Value error, entries [3] must be suppressed (null): below suppression_threshold"]
    rec["suppression_threshold"] = 2
    assert any(p.startswith("suppression_threshold: ") for p in _problems(name, rec))


@pytest.mark.parametrize("text", ["Borger 010190-1234 har henvendt sig", "se 0101901234"])
def test_aggregate_text_must_not_hold_a_cpr_number(text):
    name = "dk.xledger.payload.AggregateStatistics"
    problems = _problems(name, payload(name, trends=text))
    assert len(problems) == 1 and problems[0].startswith("trends: ") and "0101901234" not in problems[0]
    assert "1234" not in problems[0]


def test_aggregate_district_must_be_a_police_district():
    name = "dk.xledger.payload.AggregateStatistics"
    assert _problems(name, payload(name, police_district="kommune:326"))[0].startswith("police_district: ")


def test_unknown_record_type():
    assert _problems("dk.xledger.payload.Nope", {}) == ["no validation model for this record type"]


def test_consent_withdrawn_at_error_does_not_echo_the_value():
    # Bug fix: date.fromisoformat's message quoted the input.
    from tests.schemas.examples import envelope
    env = envelope("dk.xledger.payload.CaseNote", codec)
    env["consent"] = {"explicit": True, "given_by": "SUBJECT", "recipients": [], "purposes": [], "categories": [],
                      "withdrawn_at": "SECRET9999"}
    problems = _problems("dk.xledger.ExchangeRequest", env)
    assert problems == ["consent.withdrawn_at: Value error, not an ISO date (YYYY-MM-DD)"]


def _enum_paths(schema: dict[str, Any], prefix: tuple = ()) -> list[tuple[tuple, list[str]]]:
    """(path, symbols) of each enum: path items are field names, with '[]' for 'inside an array'."""
    out = []
    for f in schema["fields"]:
        t = f["type"]
        branches = t if isinstance(t, list) else [t]
        for b in branches:
            path = prefix + (f["name"],)
            if isinstance(b, dict) and b.get("type") == "array":
                b, path = b["items"], path + ("[]",)
            if isinstance(b, dict) and b.get("type") == "enum":
                out.append((path, b["symbols"]))
            elif isinstance(b, dict) and b.get("type") == "record":
                out += _enum_paths(b, path)
    return out


def _set(rec: Any, path: tuple, value: Any) -> None:
    head, rest = path[0], path[1:]
    if rest == ("[]",):
        rec[head] = [value]
    elif not rest:
        rec[head] = value
    elif rest[0] == "[]":
        _set(rec[head][0], rest[1:], value)
    else:
        _set(rec[head], rest, value)


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_models_accept_every_enum_symbol_of_the_schema(name):
    """The pydantic Literals repeat the Avro enums; this keeps them in step."""
    schema = default_registry().latest(name).raw
    for path, symbols in _enum_paths(schema):
        for symbol in symbols:
            rec = payload(name)
            if name.endswith("IntakeNotice"):
                rec["sentence_days"] = None  # a remand intake has no sentence
            try:
                _set(rec, path, symbol)
            except (IndexError, TypeError, KeyError):
                pytest.fail(f"example for {name} has no element at {path}")
            validate(name, rec)
        rec = payload(name)
        _set(rec, path, "NOT_A_SYMBOL")
        with pytest.raises(RecordInvalid):
            validate(name, rec)


# -- categories present ---------------------------------------------------------------------


def cats(name: str, rec: dict[str, Any]) -> set[str]:
    return set(present_categories(default_registry().latest(name).raw, rec))


def test_categories_of_full_examples():
    assert cats("dk.xledger.payload.IntakeNotice", PAYLOADS["dk.xledger.payload.IntakeNotice"]) == {
        "IDENTITY", "CRIMINAL", "RENT_PRIVATE", "ORDINARY", "HEALTH", "THIRD_PARTY"}
    assert cats("dk.xledger.payload.ConcernReport", PAYLOADS["dk.xledger.payload.ConcernReport"]) == {
        "IDENTITY", "ORDINARY", "RENT_PRIVATE", "BELIEFS_POLITICAL_RELIGIOUS"}
    assert cats("dk.xledger.payload.AggregateStatistics", PAYLOADS["dk.xledger.payload.AggregateStatistics"]) == {
        "AGGREGATE_NON_PERSONAL"}


def test_nulls_and_empty_arrays_are_not_present():
    name = "dk.xledger.payload.IntakeNotice"
    rec = payload(name, housing_situation=None, employment_or_education="", treatment_need=None,
                  dependent_children=[], contact_officer=None)
    assert cats(name, rec) == {"IDENTITY", "CRIMINAL"}


def test_array_of_nested_records():
    name = "dk.xledger.payload.CaseNote"
    base = payload(name, criminal_information=None, agreed_actions=[], participants=[], case_reference=None)
    assert cats(name, base) == {"IDENTITY", "ORDINARY", "RENT_PRIVATE"}
    with_tp = dict(base, third_party_information="Storebror er dømt for vold.")
    assert cats(name, with_tp) == {"IDENTITY", "ORDINARY", "RENT_PRIVATE", "THIRD_PARTY"}


def test_union_with_nested_record():
    name = "dk.xledger.payload.ConcernReport"
    anonymous = payload(name, reporting_professional=None, reporting_citizen=None, extremism_indicators=[],
                        extremism_details=None)
    assert cats(name, anonymous) == {"IDENTITY", "ORDINARY", "RENT_PRIVATE"}
    citizen = dict(anonymous, reporting_citizen={"name": "Mor", "relation": "mor", "phone": None})
    assert "THIRD_PARTY" in cats(name, citizen)
    health = dict(anonymous, health_indicators=["SUBSTANCE_ABUSE"])
    assert "HEALTH" in cats(name, health)


def test_nested_record_fields_deep():
    name = "dk.xledger.payload.InfohusAssessment"
    rec = payload(name)
    assert "HEALTH" not in cats(name, rec)
    rec["step2_analysis"] = dict(rec["step2_analysis"], health_risk_factors=["Misbrug: dagligt hashforbrug"])
    assert "HEALTH" in cats(name, rec)
    rec["step1_concern"] = dict(rec["step1_concern"], extremism_indicators=[])
    rec["step2_analysis"] = dict(rec["step2_analysis"], ideological_risk_factors=[])
    assert "BELIEFS_POLITICAL_RELIGIOUS" not in cats(name, rec)


def test_nested_type_referenced_by_full_name():
    # Bug fix in categories._named_types: a reference by full name used to miss the nested annotations.
    schema = {
        "type": "record", "name": "Outer", "namespace": "dk.test", "fields": [
            {"name": "a", "type": {"type": "record", "name": "Inner", "fields": [
                {"name": "x", "type": ["null", "string"], "default": None, "x-category": "HEALTH"}]},
             "x-category": "ORDINARY"},
            {"name": "b", "type": ["null", "dk.test.Inner"], "default": None, "x-category": "ORDINARY"},
            {"name": "c", "type": {"type": "array", "items": "Inner"}, "default": [], "x-category": "ORDINARY"},
        ]}
    assert present_categories(schema, {"a": {"x": None}, "b": {"x": "y"}, "c": []}) == {"ORDINARY", "HEALTH"}
    assert present_categories(schema, {"a": {"x": None}, "b": None, "c": [{"x": "y"}]}) == {"ORDINARY", "HEALTH"}
    assert present_categories(schema, {"a": {"x": None}, "b": None, "c": []}) == {"ORDINARY"}


def test_models_are_frozen_and_allow_newer_optional_fields():
    model = validate("dk.xledger.payload.CaseNote", dict(PAYLOADS["dk.xledger.payload.CaseNote"], added_in_v2="x"))
    with pytest.raises(Exception):
        model.summary = "changed"  # type: ignore[misc]
    assert validate("dk.xledger.payload.ReleaseNotice", PAYLOADS["dk.xledger.payload.ReleaseNotice"]).cpr == CPR_ADULT
