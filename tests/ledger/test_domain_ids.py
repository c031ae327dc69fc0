"""The ledger's derived ids are uuid.uuid5 under the ledger's namespace (ledger.domain computes them itself)."""

from __future__ import annotations

import uuid

import pytest

from ledger import domain

NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://exchange-ledger.dk/ledger")


@pytest.mark.parametrize("name", ["", "exchange|dk-ksp-1|e2e-0000001", "æøå|\u2028|\x00", "x" * 10_000])
def test_derived_ids_are_uuid5(name):
    ours, reference = domain._uuid5(name), uuid.uuid5(NS, name)
    assert ours == reference
    assert (ours.version, ours.variant, ours.is_safe, str(ours)) == \
        (reference.version, reference.variant, reference.is_safe, str(reference))


def test_each_id_names_its_kind():
    ex = domain.exchange_id("dk-ksp-1", "m-1")
    assert ex == uuid.uuid5(NS, "exchange|dk-ksp-1|m-1")
    assert domain.rejection_id("t", 1, 2) == uuid.uuid5(NS, "rejected|t|1|2")
    assert domain.delivery_id(ex, "dk-r", "inbox") == uuid.uuid5(NS, f"delivery|{ex}|dk-r|inbox")
    assert domain.delivery_page_id(500) == uuid.uuid5(NS, "delivery-page|500")
    assert domain.directory_snapshot_id("sha256:ab") == uuid.uuid5(NS, "directory|sha256:ab")
    assert domain.quarantine_id(ex) == uuid.uuid5(NS, f"quarantine|{ex}")
    assert domain.erasure_id("s", "k") == uuid.uuid5(NS, "erasure|s|k")


@pytest.mark.parametrize("spelling", [str, str.upper, lambda s: "{" + s + "}", lambda s: "urn:uuid:" + s,
                                      lambda s: s.replace("-", "")])
def test_delivery_id_text_is_the_delivery_ids_text(spelling):
    # The relay's text form: str(delivery_id(UUID(exchange), ...)) for every spelling UUID accepts.
    ex = domain.exchange_id("dk-ksp-1", "m-1")
    assert domain.delivery_id_text(spelling(str(ex)), "dk-r", "inbox") == str(domain.delivery_id(ex, "dk-r", "inbox"))


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "0" * 31])
def test_delivery_id_text_refuses_what_uuid_refuses(bad):
    with pytest.raises(ValueError):
        domain.delivery_id_text(bad, "dk-r", "inbox")


@pytest.mark.parametrize("recipient", ["", "dk-r", "æøå|\u2028", "x" * 5_000])
@pytest.mark.parametrize("kind", ["inbox", "receipt", "review-receipt"])
def test_delivery_id_text_is_uuid5s_text_for_many_exchanges(recipient, kind):
    # The text is written from the hash without a UUID object: the same as str(uuid.uuid5(...)).
    for i in range(200):
        ex = str(domain.exchange_id("dk-ksp-1", f"m-{i}"))
        assert domain.delivery_id_text(ex, recipient, kind) == str(uuid.uuid5(NS, f"delivery|{ex}|{recipient}|{kind}"))
