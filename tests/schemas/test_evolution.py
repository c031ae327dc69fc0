"""ReleaseNotice v1 -> v2 resolution, the compatibility check, and the `schemas` CLI."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fastavro import schemaless_reader
from typer.testing import CliRunner

from schemas.codec import AvroCodec, CodecError
from schemas.compat import Problem, avro_incompatibilities, check_all, roundtrip_failures
from schemas.registry import SCHEMA_ROOT, SchemaRegistry, default_registry
from schemas.validation import validate
from services.cli.schemas import app
from tests.schemas.examples import PAYLOADS

NAME = "dk.xledger.payload.ReleaseNotice"
V2_RECORD = PAYLOADS[NAME]
V1_RECORD = {k: v for k, v in V2_RECORD.items() if k != "municipality_contact"}
codec = AvroCodec()
runner = CliRunner()


def test_release_notice_has_two_versions():
    versions = default_registry().versions(NAME)
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].fingerprint != versions[1].fingerprint


def test_old_writer_new_reader():
    data = codec.encode(NAME, V1_RECORD, version=1)
    assert data[2:10] == default_registry().versions(NAME)[0].fingerprint
    decoded = codec.decode(data, expect=NAME)
    assert decoded.writer_version == 1
    assert decoded.record == {**V1_RECORD, "municipality_contact": None}
    validate(NAME, decoded.record)


def test_v1_writer_refuses_fields_it_does_not_know():
    # fastavro alone would drop keys the writer schema lacks; the codec names them instead.
    from schemas.codec import CodecError

    with pytest.raises(CodecError) as info:
        codec.encode(NAME, V2_RECORD, version=1)
    assert "municipality_contact" in info.value.message
    v1_only = {k: v for k, v in V2_RECORD.items() if k != "municipality_contact"}
    assert codec.decode(codec.encode(NAME, v1_only, version=1)).record["municipality_contact"] is None


def test_new_writer_old_reader():
    v1, v2 = default_registry().versions(NAME)
    data = codec.encode(NAME, V2_RECORD)
    assert data[2:10] == v2.fingerprint
    record = schemaless_reader(io.BytesIO(data[10:]), v2.parsed, v1.parsed)
    assert record == V1_RECORD
    validate(NAME, record)


def test_old_deployment_without_v2_refuses_v2_bytes_by_fingerprint():
    """A reader must know the writer schema: roll a new version out to readers before writers."""
    v1_only = SchemaRegistry([v for v in default_registry().all_versions() if not (v.name == NAME and v.version == 2)])
    with pytest.raises(CodecError) as info:
        AvroCodec(v1_only).decode(codec.encode(NAME, V2_RECORD))
    assert info.value.reason == "UNKNOWN_FINGERPRINT"
    assert AvroCodec(v1_only).decode(codec.encode(NAME, V1_RECORD, version=1)).record == V1_RECORD


def test_shipped_schemas_pass_the_check():
    assert check_all(default_registry()) == []


def test_avro_checker_both_directions_on_shipped_pair():
    v1, v2 = default_registry().versions(NAME)
    assert avro_incompatibilities(reader=v2.raw, writer=v1.raw) == []
    assert avro_incompatibilities(reader=v1.raw, writer=v2.raw) == []
    assert roundtrip_failures(writer=v1, reader=v2, samples=50) == []
    assert roundtrip_failures(writer=v2, reader=v1, samples=50) == []


# -- deliberately broken schema sets --------------------------------------------------------


def _tree(tmp_path: Path, *folders: str) -> Path:
    for folder in folders:
        shutil.copytree(SCHEMA_ROOT / folder, tmp_path / folder)
    return tmp_path


def _add_version(root: Path, folder: str, mutate) -> None:
    versions = sorted(int(p.stem[1:]) for p in (root / folder).glob("v*.avsc"))
    raw = json.loads((root / folder / f"v{versions[-1]}.avsc").read_text())
    mutate(raw)
    (root / folder / f"v{versions[-1] + 1}.avsc").write_text(json.dumps(raw))


def _checks(problems: list[Problem]) -> set[str]:
    return {p.check for p in problems}


def test_new_required_field_breaks_backward(tmp_path):
    root = _tree(tmp_path, "release_notice")
    _add_version(root, "release_notice", lambda raw: raw["fields"].append(
        {"name": "risk_level", "type": "string", "x-category": "CRIMINAL", "doc": "Required, no default: breaks."}))
    problems = check_all(SchemaRegistry.load(root), samples=20)
    assert _checks(problems) == {"BACKWARD", "ROUNDTRIP_OLD_TO_NEW"}
    assert all(p.schema == NAME and p.version == 3 for p in problems)
    assert any("risk_level" in p.detail for p in problems)


def test_removing_a_required_field_breaks_forward(tmp_path):
    root = _tree(tmp_path, "release_notice")
    _add_version(root, "release_notice", lambda raw: raw.update(
        fields=[f for f in raw["fields"] if f["name"] != "institution"]))
    problems = check_all(SchemaRegistry.load(root), samples=20)
    assert _checks(problems) == {"FORWARD", "ROUNDTRIP_NEW_TO_OLD"}


def test_added_enum_symbol_without_default_breaks_forward(tmp_path):
    root = _tree(tmp_path, "release_notice")

    def add_symbol(raw):
        release_type = next(f for f in raw["fields"] if f["name"] == "release_type")
        release_type["type"]["symbols"].append("PARDON")

    _add_version(root, "release_notice", add_symbol)
    problems = check_all(SchemaRegistry.load(root), samples=200)
    assert "FORWARD" in _checks(problems)
    assert any("missing_enum_symbols" in p.detail for p in problems)


def test_added_enum_symbol_with_default_is_compatible(tmp_path):
    root = _tree(tmp_path, "concern_report")

    def add_symbol(raw):
        source = next(f for f in raw["fields"] if f["name"] == "source")
        source["type"]["symbols"].insert(-1, "HEALTH_VISITOR")

    _add_version(root, "concern_report", add_symbol)
    problems = [p for p in check_all(SchemaRegistry.load(root), samples=200) if p.check != "MODEL"]
    assert problems == []


def test_changed_type_breaks_both(tmp_path):
    root = _tree(tmp_path, "release_notice")

    def retype(raw):
        next(f for f in raw["fields"] if f["name"] == "full_name")["type"] = "int"

    _add_version(root, "release_notice", retype)
    assert {"BACKWARD", "FORWARD", "ROUNDTRIP_OLD_TO_NEW", "ROUNDTRIP_NEW_TO_OLD"} <= _checks(
        check_all(SchemaRegistry.load(root), samples=20))


def test_annotation_rules(tmp_path):
    root = _tree(tmp_path, "release_notice", "aggregate_statistics")

    def spoil(raw):
        fields = raw["fields"]
        del fields[1]["x-category"]  # full_name
        fields[2]["x-category"] = "SECRET"  # institution
        fields[8]["x-category"] = "IDENTITY"  # contact_officer: was ORDINARY
        fields.append({"name": "extra", "type": ["null", "string"], "default": None, "x-category": "ORDINARY"})
        fields.append({"name": "tags", "type": {"type": "map", "values": "string"}, "default": {},
                       "x-category": "ORDINARY", "doc": "maps are not walked"})

    _add_version(root, "release_notice", spoil)
    _add_version(root, "aggregate_statistics", lambda raw: raw["fields"].append(
        {"name": "cpr", "type": "string", "x-category": "IDENTITY", "default": "", "doc": "no!"}))
    problems = check_all(SchemaRegistry.load(root), samples=20)
    text = "\n".join(map(str, problems))
    assert "full_name: no x-category annotation" in text
    assert "institution: x-category 'SECRET' is not one of" in text
    assert "contact_officer: x-category changed from ORDINARY in v2 to IDENTITY" in text
    assert "extra: no doc" in text
    assert "tags: map types are not supported" in text
    assert "mixes AGGREGATE_NON_PERSONAL with personal-data categories" in text
    assert "an aggregate payload must not have a cpr field" in text


def test_payload_without_cpr_or_model(tmp_path):
    folder = tmp_path / "pet_note"
    folder.mkdir()
    (folder / "v1.avsc").write_text(json.dumps({
        "type": "record", "name": "PetNote", "namespace": "dk.xledger.payload", "doc": "d",
        "fields": [{"name": "text", "type": "string", "x-category": "RENT_PRIVATE", "doc": "d"}]}))
    text = "\n".join(map(str, check_all(SchemaRegistry.load(tmp_path), samples=5)))
    assert "needs a top-level cpr field" in text
    assert "no pydantic model" in text
    assert "CPR_FIELD" in text


def test_conflicting_named_types(tmp_path):
    root = _tree(tmp_path, "concern_report", "infohus_referral")
    raw = json.loads((root / "infohus_referral" / "v1.avsc").read_text())
    raw["fields"][-1]["type"]["items"]["name"] = "InvolvedPerson"  # same name as ConcernReport's, other fields
    raw["fields"][-1]["type"]["items"]["fields"].pop()
    (root / "infohus_referral" / "v1.avsc").write_text(json.dumps(raw))
    problems = [p for p in check_all(SchemaRegistry.load(root), samples=5) if p.check == "NAMING"]
    assert len(problems) == 1 and "dk.xledger.payload.InvolvedPerson" in problems[0].detail


# -- the CLI --------------------------------------------------------------------------------


def test_cli_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "check" in result.output and "asyncapi" in result.output
    result = runner.invoke(app, ["check", "--help"])
    assert result.exit_code == 0 and "FULL" in result.output


def test_cli_check_passes_on_shipped_schemas():
    result = runner.invoke(app, ["check", "--samples", "20"])
    assert result.exit_code == 0, result.output
    assert "ReleaseNotice" in result.output and "OK" in result.output


def test_cli_check_fails_on_incompatible_pair(tmp_path):
    root = _tree(tmp_path, "release_notice")
    _add_version(root, "release_notice", lambda raw: raw["fields"].append(
        {"name": "risk_level", "type": "string", "x-category": "CRIMINAL", "doc": "breaks"}))
    result = runner.invoke(app, ["check", "--schemas-dir", str(root), "--samples", "5"])
    assert result.exit_code == 1
    assert "BACKWARD" in result.output and "risk_level" in result.output


def test_cli_check_bad_dir(tmp_path):
    result = runner.invoke(app, ["check", "--schemas-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no schemas found" in result.output
