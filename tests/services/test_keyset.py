"""The authority key set: the documented format, statuses, editing, live reload, development keys."""

from __future__ import annotations

import base64
import os
from datetime import date, datetime, timedelta, timezone

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.config import Settings
from services.keyring import dev_private_key
from services.keyset import (
    DEV_KEYSET,
    KeySet,
    KeySetError,
    KeySetFile,
    LiveKeySet,
    Status,
    keyset_problems,
)
from services.signing import public_bytes

ORG = "kommune:326"
AT = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)


def raw_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(public_bytes(key)).decode()


def pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def write(path, doc) -> str:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


def test_the_documented_format_with_pem_and_base64_keys_and_every_status(tmp_path):
    a, b, c, d = (Ed25519PrivateKey.generate() for _ in range(4))
    path = write(tmp_path / "keys.yaml", {"format": "xledger-keyset/v1", "keys": {ORG: [
        {"key_id": "k-old", "public_key": raw_b64(a), "valid_from": "2025-01-01", "valid_to": "2026-05-31"},
        {"key_id": "k-now", "public_key": pem(b), "valid_from": "2026-06-01"},
        {"key_id": "k-next", "public_key": raw_b64(c), "valid_from": "2026-07-01"},
        {"key_id": "k-stolen", "public_key": raw_b64(d), "revoked_at": "2026-06-10T08:00:00+00:00"},
    ]}})
    ks = KeySet.load(path)
    states = {s.key.key_id: s for s in ks.keys_for(ORG, AT)}
    assert {k: s.status for k, s in states.items()} == {
        "k-old": Status.EXPIRED, "k-now": Status.VALID, "k-next": Status.NOT_YET_VALID, "k-stolen": Status.REVOKED}
    assert states["k-now"].key.public_key == public_bytes(b)  # PEM read into the raw key
    assert [s.usable for s in ks.keys_for(ORG, AT)] == [False, True, False, False]
    # Revocation counts from its instant; validity dates are inclusive.
    assert states["k-stolen"].key.status(datetime(2026, 6, 10, 7, 59, tzinfo=timezone.utc)) is Status.VALID
    assert states["k-old"].key.status(datetime(2026, 5, 31, 23, 59, tzinfo=timezone.utc)) is Status.VALID
    assert ks.keys_for("kommune:101", AT) == []


def test_a_directory_of_files_is_one_key_set_and_an_authority_lives_in_one_file(tmp_path):
    write(tmp_path / "kommune.326.yaml", {"keys": {ORG: [{"key_id": "k1", "public_key": raw_b64(Ed25519PrivateKey.generate())}]}})
    write(tmp_path / "police.yml", {"politikreds:midtvest": [{"key_id": "p1", "public_key": raw_b64(Ed25519PrivateKey.generate())}]})
    (tmp_path / "README.txt").write_text("not a key file")
    assert KeySet.load(tmp_path).orgs == ["kommune:326", "politikreds:midtvest"]
    write(tmp_path / "dup.yaml", {ORG: [{"key_id": "k2", "public_key": raw_b64(Ed25519PrivateKey.generate())}]})
    with pytest.raises(KeySetError, match="kommune:326: already listed in"):
        KeySet.load(tmp_path)


@pytest.mark.parametrize("entry, problem", [
    ({"public_key": "x"}, "key_id is missing"),
    ({"key_id": "k"}, "public_key is missing"),
    ({"key_id": "k", "public_key": "AAAA"}, "base64 of 32 bytes"),
    ({"key_id": "k", "public_key": "not base64!"}, "neither PEM nor base64"),
    ({"key_id": "k", "public_key": "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"}, "readable PEM"),
    ({"key_id": "k", "public_key": "KEY", "valid_from": "2026-13-01"}, "valid_from must be a date"),
    ({"key_id": "k", "public_key": "KEY", "valid_from": "2026-06-01", "valid_to": "2026-05-01"}, "before valid_from"),
    ({"key_id": "k", "public_key": "KEY", "revoked_at": "2026-06-01T10:00:00"}, "must carry a UTC offset"),
    ({"key_id": "k", "public_key": "KEY", "valid_until": "2026-06-01"}, "unknown fields"),
], ids=["no-id", "no-key", "short-key", "not-base64", "bad-pem", "bad-date", "inverted", "naive-revocation", "typo"])
def test_a_bad_entry_is_refused_naming_the_file_the_authority_and_the_problem(tmp_path, entry, problem):
    if entry.get("public_key") == "KEY":
        entry = {**entry, "public_key": raw_b64(Ed25519PrivateKey.generate())}
    path = write(tmp_path / "keys.yaml", {ORG: [entry]})
    with pytest.raises(KeySetError) as info:
        KeySet.load(path)
    assert str(tmp_path / "keys.yaml") in str(info.value) and ORG in str(info.value) and problem in str(info.value)


def test_an_rsa_pem_key_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(KeySetError, match="not an Ed25519 key"):
        KeySet.load(write(tmp_path / "k.yaml", {ORG: [{"key_id": "r", "public_key": rsa_pem}]}))


def test_missing_file_and_duplicate_key_ids_are_named(tmp_path):
    with pytest.raises(KeySetError, match="no such key-set file"):
        KeySet.load(tmp_path / "absent.yaml")
    key = raw_b64(Ed25519PrivateKey.generate())
    with pytest.raises(KeySetError, match="key_id 'k' appears twice"):
        KeySet.load(write(tmp_path / "k.yaml", {ORG: [{"key_id": "k", "public_key": key}] * 2}))


def test_development_keys_are_recognised_by_id_and_by_their_public_value(tmp_path):
    dev_under_another_id = {"key_id": "kalundborg-2026", "public_key": raw_b64(dev_private_key(ORG))}
    real = {"key_id": "real-1", "public_key": raw_b64(Ed25519PrivateKey.generate())}
    ks = KeySet.load(write(tmp_path / "k.yaml", {ORG: [dev_under_another_id, real]}))
    assert [k.key_id for k in ks.development_keys()] == ["kalundborg-2026"]
    # Another authority's development key is public too.
    other = {"key_id": "x", "public_key": raw_b64(dev_private_key("politikreds:bornholm"))}
    ks = KeySet.load(write(tmp_path / "k2.yaml", {ORG: [other]}))
    assert [k.key_id for k in ks.development_keys(["politikreds:bornholm"])] == ["x"]
    assert len(KeySet.load(DEV_KEYSET).development_keys()) == len(KeySet.load(DEV_KEYSET))


def test_production_has_no_default_key_set_and_refuses_the_development_one(tmp_path):
    prod = Settings.from_env(env={})
    assert keyset_problems(prod)[1] == [
        "XLEDGER_KEYSET is not set; production has no default key set (docs/keyset.md)"]
    lines = keyset_problems(Settings.from_env(env={"XLEDGER_KEYSET": str(DEV_KEYSET)}))[1]
    assert len(lines) == 1 and "public development key" in lines[0]
    dev = Settings.from_env(env={"XLEDGER_ENV": "development"})
    keyset, lines = keyset_problems(dev)
    assert lines == [] and keyset is not None and keyset.source == str(DEV_KEYSET)


def test_keys_are_added_rotated_and_revoked_in_the_file(tmp_path):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    f = KeySetFile(tmp_path / "keys.yaml")
    f.add(ORG, "k1", pem(old), valid_from=date(2026, 1, 1))
    with pytest.raises(KeySetError, match="already has a key 'k1'"):
        f.add(ORG, "k1", raw_b64(new))
    key, ended = f.rotate(ORG, "k2", raw_b64(new), valid_from=date(2026, 6, 1), overlap_days=7)
    assert (key.key_id, key.valid_from, ended) == ("k2", date(2026, 6, 1), ["k1"])
    ks = f.keyset()
    states = {s.key.key_id: s.status for s in ks.keys_for(ORG, datetime(2026, 6, 5, tzinfo=timezone.utc))}
    assert states == {"k1": Status.VALID, "k2": Status.VALID}  # the overlap
    states = {s.key.key_id: s.status for s in ks.keys_for(ORG, datetime(2026, 6, 9, tzinfo=timezone.utc))}
    assert states == {"k1": Status.EXPIRED, "k2": Status.VALID}
    f.revoke(ORG, "k2", AT)
    with pytest.raises(KeySetError, match="already revoked"):
        f.revoke(ORG, "k2", AT)
    with pytest.raises(KeySetError, match="has no key 'k9'"):
        f.revoke(ORG, "k9", AT)
    assert [s.status for s in f.keyset().keys_for(ORG, AT)] == [Status.EXPIRED, Status.REVOKED]
    # What it wrote is the documented format, and nothing but it.
    doc = yaml.safe_load((tmp_path / "keys.yaml").read_text())
    assert doc["format"] == "xledger-keyset/v1" and [e["key_id"] for e in doc["keys"][ORG]] == ["k1", "k2"]


def test_a_directory_key_set_gets_a_file_per_new_authority(tmp_path):
    f = KeySetFile(tmp_path)
    f.add(ORG, "k1", raw_b64(Ed25519PrivateKey.generate()))
    f.add("politikreds:midtvest", "p1", raw_b64(Ed25519PrivateKey.generate()))
    f.add(ORG, "k2", raw_b64(Ed25519PrivateKey.generate()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kommune.326.yaml", "politikreds.midtvest.yaml"]
    assert [s.key.key_id for s in KeySet.load(tmp_path).keys_for(ORG)] == ["k1", "k2"]


def test_the_live_key_set_sees_a_revocation_and_keeps_the_last_good_one_over_a_broken_file(tmp_path):
    path = tmp_path / "keys.yaml"
    f = KeySetFile(path)
    f.add(ORG, "k1", raw_b64(Ed25519PrivateKey.generate()))
    live = LiveKeySet(path, every=0)
    assert [s.status for s in live.keys_for(ORG, AT)] == [Status.VALID]
    f.revoke(ORG, "k1", AT - timedelta(hours=1))
    os.utime(path, ns=(1, 1))  # a fresh stamp even on a coarse file-system clock
    assert [s.status for s in live.keys_for(ORG, AT)] == [Status.REVOKED]
    path.write_text("{ not yaml")
    os.utime(path, ns=(2, 2))
    assert [s.status for s in live.keys_for(ORG, AT)] == [Status.REVOKED]  # kept, and the error logged


def test_the_live_key_set_refuses_a_reload_that_vetting_rejects(tmp_path):
    path = tmp_path / "keys.yaml"
    KeySetFile(path).add(ORG, "k1", raw_b64(Ed25519PrivateKey.generate()))
    live = LiveKeySet(path, vet=lambda ks: [f"{len(ks.development_keys())} dev"] if ks.development_keys() else [],
                      every=0)
    KeySetFile(path).add(ORG, "dev-2026", raw_b64(dev_private_key(ORG)))
    os.utime(path, ns=(3, 3))
    assert [s.key.key_id for s in live.keys_for(ORG, AT)] == ["k1"]
