"""Erasure destroys the subject's key; the ledger, its checkpoints and proofs still verify."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from ledger.domain import SubjectErasure, erasure_id, sealed_message_aad
from ledger.erasure import ErasureError
from ledger.privacy import LedgerSealer, SqlKeyStore, SubjectErased
from ledger.proofs import verify_consistency_bundle, verify_inclusion_bundle
from ledger.subject_crypto import wrapped_key_id
from services.cli import app
from tests.ledger.conftest import ORIGIN, fill, make_exchange

MASTER = hashlib.sha256(b"tests/ledger master key").digest()
ERASED = hashlib.sha256(b"to be erased").hexdigest()
KEPT = hashlib.sha256(b"to be kept").hexdigest()


def _sealed_exchanges(ledger, sealer):
    out = []
    for i, subject in enumerate([ERASED, KEPT, ERASED]):
        e = make_exchange(500 + i, subject=subject)
        ex = make_exchange(500 + i, subject=subject, sealed=sealer.seal(subject, f"payload {i}".encode(),
                                                                       sealed_message_aad(e.id)))
        out.append(ex)
    ledger.record(out)
    return out


def test_erase_keeps_every_hash_and_makes_the_payload_unreadable(ledger_url, ledger, signer, public_key):
    sealer = LedgerSealer(ledger.tables, MASTER)
    fill(ledger, 0, 4)
    exchanges = _sealed_exchanges(ledger, sealer)
    before = ledger.integrate(signer=signer, origin=ORIGIN, checkpoint=True)
    before_cp = ledger.integrity.checkpoint(before.tree_size)
    inclusion = ledger.integrity.inclusion_proof(before.tree_size - 1, before.tree_size)
    assert sealer.open(ERASED, exchanges[0].sealed_message, sealed_message_aad(exchanges[0].id)) == b"payload 0"

    r = CliRunner().invoke(app, ["subject", "erase", ERASED, "--reason", "GDPR art. 17, case J.nr. 2025-17"],
                           env={"XLEDGER_LEDGER_URL": ledger_url})
    assert r.exit_code == 0, r.output
    assert "destroyed" in r.stdout

    with pytest.raises(SubjectErased):
        sealer.open(ERASED, exchanges[0].sealed_message, sealed_message_aad(exchanges[0].id))
    with pytest.raises(SubjectErased):
        sealer.open(ERASED, exchanges[2].sealed_message, sealed_message_aad(exchanges[2].id))
    assert sealer.open(KEPT, exchanges[1].sealed_message, sealed_message_aad(exchanges[1].id)) == b"payload 1"

    last = ledger.notifications(1, 10_000)[-1]
    assert last.topic.endswith("SubjectErasure.Erased")
    erasure = ledger.repository.get(last.originator_id)
    assert isinstance(erasure, SubjectErasure) and erasure.subject == ERASED
    assert b"payload" not in last.state  # nothing but pseudonym, key id and reason

    after = ledger.integrate(signer=signer, origin=ORIGIN, checkpoint=True)
    assert after.tree_size == before.tree_size + 1
    report = ledger.verify(public_key, origin=ORIGIN)
    assert report.ok, report.findings
    # Proofs made before the erasure still hold, and the new tree extends the old one.
    verify_inclusion_bundle(inclusion.to_dict(), before_cp.to_dict(), public_key)
    consistency = ledger.integrity.consistency_proof(before.tree_size, after.tree_size)
    verify_consistency_bundle(consistency.to_dict(), before_cp.to_dict(),
                              ledger.integrity.checkpoint(after.tree_size).to_dict(), public_key)


def test_erasing_twice_or_an_unknown_subject_is_refused(ledger_url, ledger):
    sealer = LedgerSealer(ledger.tables, MASTER)
    _sealed_exchanges(ledger, sealer)
    ledger.erase_subject(ERASED, "court order")
    with pytest.raises(ErasureError):
        ledger.erase_subject(ERASED, "again")
    r = CliRunner().invoke(app, ["subject", "erase", hashlib.sha256(b"nobody").hexdigest(), "--reason", "x"],
                           env={"XLEDGER_LEDGER_URL": ledger_url})
    assert r.exit_code == 1 and r.stderr.startswith("error: the subject has no data key")


def test_interrupted_erasure_converges(ledger):
    """Recorded but the key not yet destroyed (a crash in between): running it again finishes."""
    sealer = LedgerSealer(ledger.tables, MASTER)
    _sealed_exchanges(ledger, sealer)
    wrapped = SqlKeyStore(ledger.tables).get(ERASED)
    key_id = wrapped_key_id(wrapped).hex()
    ledger.record([SubjectErasure(subject=ERASED, key_id=key_id, reason="court order")])
    result = ledger.erase_subject(ERASED, "court order")
    assert not result.recorded and result.erasure_id == erasure_id(ERASED, key_id)
    assert SqlKeyStore(ledger.tables).get(ERASED) is None


def test_reason_must_not_carry_a_cpr_number(ledger):
    sealer = LedgerSealer(ledger.tables, MASTER)
    _sealed_exchanges(ledger, sealer)
    with pytest.raises(ErasureError):
        ledger.erase_subject(ERASED, "request from 010190-1234")
    assert SqlKeyStore(ledger.tables).get(ERASED) is not None
