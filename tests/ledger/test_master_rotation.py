"""Master-key rotation in the ledger (both back-ends): every subject key re-wrapped, nothing sealed changes,
the old key can go, erasure keeps working, and new keys follow the rotation's target."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from ledger.domain import sealed_message_aad
from ledger.privacy import DecryptionError, LedgerSealer, MasterKeyUnavailable, SqlKeyStore, SubjectErased
from ledger.rotation import census, rotate_master_key, status
from ledger.subject_crypto import MasterKeyRing, master_key_id, wrapped_master_id
from tests.ledger.conftest import make_exchange

M0 = hashlib.sha256(b"tests/ledger rotation master 0").digest()
M1 = hashlib.sha256(b"tests/ledger rotation master 1").digest()
SUBJECTS = [hashlib.sha256(f"rotation subject {i}".encode()).hexdigest() for i in range(23)]


def seal_all(ledger, sealer, subjects, tag: str = "before"):
    """One recorded exchange per subject, its payload sealed; returns (exchange, plaintext) per subject."""
    out = {}
    exchanges = []
    with sealer.batch(subjects) as batch:
        for i, subject in enumerate(subjects):
            plain = f"{tag} payload of {i}".encode()
            e = make_exchange(hash((tag, i)) % 10**9, subject=subject)
            ex = make_exchange(hash((tag, i)) % 10**9, subject=subject,
                               sealed=batch.seal(subject, plain, sealed_message_aad(e.id)))
            exchanges.append(ex)
            out[subject] = (ex, plain)
    ledger.record(exchanges)
    return out


def opens(sealer, sealed) -> dict[str, bytes | str]:
    got = {}
    for subject, (ex, _) in sealed.items():
        try:
            got[subject] = sealer.open(subject, ex.sealed_message, sealed_message_aad(ex.id))
        except SubjectErased:
            got[subject] = "erased"
    return got


def test_rotation_rewraps_every_key_and_the_old_master_key_can_go(ledger):
    old = LedgerSealer.for_ledger(ledger, MasterKeyRing([M0]))
    sealed = seal_all(ledger, old, SUBJECTS)
    erased_before = SUBJECTS[0]
    ledger.erase_subject(erased_before, "erased before the rotation")
    assert census(ledger.tables) == {master_key_id(M0): len(SUBJECTS) - 1}

    result = rotate_master_key(ledger.tables, MasterKeyRing([M0, M1]), master_key_id(M1), batch_size=5)
    assert result.rewrapped == len(SUBJECTS) - 1 and result.census == {master_key_id(M1): len(SUBJECTS) - 1}
    assert status(ledger.tables).completed_at == result.completed_at
    # Run again: nothing to do, still complete.
    assert rotate_master_key(ledger.tables, MasterKeyRing([M0, M1]), master_key_id(M1)).rewrapped == 0

    new = LedgerSealer.for_ledger(ledger, MasterKeyRing([M1]))  # the old master key dropped
    expected = {s: plain for s, (_, plain) in sealed.items()}
    expected[erased_before] = "erased"
    assert opens(new, sealed) == expected

    # Erasure after the rotation: the key goes, its data is reported erased, the rest stays.
    erased_after = SUBJECTS[1]
    ledger.erase_subject(erased_after, "erased after the rotation")
    expected[erased_after] = "erased"
    assert opens(new, sealed) == expected
    # A blob moved onto another subject is still tampering, not erasure.
    ex, _ = sealed[SUBJECTS[2]]
    with pytest.raises(DecryptionError):
        new.open(SUBJECTS[3], ex.sealed_message, sealed_message_aad(ex.id))
    # And without the ledger's erasure records, an old generation cannot be told from a foreign blob.
    ex, _ = sealed[erased_after]
    with pytest.raises(DecryptionError):
        LedgerSealer(ledger.tables, MasterKeyRing([M1])).open(erased_after, ex.sealed_message, sealed_message_aad(ex.id))
    # The old master key alone opens nothing any more.
    with pytest.raises(MasterKeyUnavailable, match=master_key_id(M1)):
        opens(LedgerSealer.for_ledger(ledger, MasterKeyRing([M0])), {SUBJECTS[4]: sealed[SUBJECTS[4]]})


def test_new_keys_follow_the_target_the_rotation_records(ledger):
    ring = MasterKeyRing([M0, M1])
    sealer = LedgerSealer.for_ledger(ledger, ring)
    store = SqlKeyStore(ledger.tables)
    seal_all(ledger, sealer, SUBJECTS[:3], "first")
    # Before any rotation: the first key configured.
    assert {wrapped_master_id(store.get(s)) for s in SUBJECTS[:3]} == {master_key_id(M0)}
    rotate_master_key(ledger.tables, ring, master_key_id(M1))
    # The same sealer (a running gate) wraps its next new subjects under the target.
    seal_all(ledger, sealer, SUBJECTS[3:6], "second")
    assert {wrapped_master_id(store.get(s)) for s in SUBJECTS[:6]} == {master_key_id(M1)}
    # A process that lacks the target key makes no key at all, and says which it lacks.
    lagging = LedgerSealer.for_ledger(ledger, MasterKeyRing([M0]))
    with pytest.raises(MasterKeyUnavailable, match=master_key_id(M1)):
        seal_all(ledger, lagging, SUBJECTS[6:7], "third")
    assert store.get(SUBJECTS[6]) is None
    # A store insert under another key than the target is refused in its transaction.
    from ledger.privacy import TargetChanged
    from ledger.subject_crypto import new_wrapped_key

    with pytest.raises(TargetChanged):
        store.create_many({SUBJECTS[7]: new_wrapped_key(M0, SUBJECTS[7])})
    assert store.get(SUBJECTS[7]) is None


def test_a_rotation_needs_the_target_and_every_key_in_use(ledger):
    seal_all(ledger, LedgerSealer.for_ledger(ledger, MasterKeyRing([M0])), SUBJECTS[:2])
    with pytest.raises(MasterKeyUnavailable, match=master_key_id(M1)):
        rotate_master_key(ledger.tables, MasterKeyRing([M0]), master_key_id(M1))
    with pytest.raises(MasterKeyUnavailable, match=master_key_id(M0)):
        rotate_master_key(ledger.tables, MasterKeyRing([M1]), master_key_id(M1))
    assert census(ledger.tables) == {master_key_id(M0): 2}  # nothing half-done: the rows are as they were


def test_a_ledger_of_the_previous_release_rotates_away_from_the_public_development_key(ledger_url, tmp_path):
    """The 2026-11-26 fixture: keys wrapped in the format without master key ids, under the public
    development master key. After rotating to a new key and dropping the old one, it verifies,
    every sealed message opens, and every recorded decision re-evaluates the same."""
    import base64
    import os

    from services.audit import Redecider, load_bundles, reevaluate
    from services.config import DEV_MASTER_KEY, Settings
    from services.keyset import DEV_KEYSET, KeySet
    from services.runtime import Runtime
    from tests.ledger.test_legacy_ledger import FIXTURE, _transplant

    source = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, source)
    _transplant(f"sqlite:///{source}", ledger_url)
    new_key = base64.b64encode(os.urandom(32)).decode()

    during = Runtime(Settings.development(ledger_url=ledger_url, master_key=f"{DEV_MASTER_KEY},{new_key}"))
    try:
        assert census(during.ledger.tables).keys() == {None}  # the old format
        from ledger.subject_crypto import load_master_keys

        result = rotate_master_key(during.ledger.tables, load_master_keys(during.settings.master_key),
                                   load_master_keys(new_key).ids[0], batch_size=7)
        assert set(result.census) == {load_master_keys(new_key).ids[0]}
    finally:
        during.close()

    after = Runtime(Settings.development(ledger_url=ledger_url, master_key=new_key))
    try:
        assert after.maintain() is True
        assert after.verify().ok
        opened = 0
        for n in after.ledger.all_notifications():
            if n.topic.endswith("Exchange.Requested"):
                event = after.ledger.mapper.to_domain_event(n)
                assert after.sealer.open(event.subject, event.sealed_message, sealed_message_aad(event.originator_id))
                opened += 1
        assert opened > 50
        report = reevaluate(after.ledger, Redecider(after.ledger, new_key, after.pseudonym_secret,
                                                    KeySet.load(DEV_KEYSET)), load_bundles())
        assert report.ok and report.agreeing == report.checked > 50, report.to_dict()
        # An erasure after the rotation: recorded, and the subject's data then reads as erased.
        event = next(after.ledger.mapper.to_domain_event(n) for n in after.ledger.all_notifications()
                     if n.topic.endswith("Exchange.Requested"))
        after.ledger.erase_subject(event.subject, "erased after rotation")
        with pytest.raises(SubjectErased):
            after.sealer.open(event.subject, event.sealed_message, sealed_message_aad(event.originator_id))
        assert any(n.topic.endswith("SubjectErasure.Erased") for n in after.ledger.all_notifications())
    finally:
        after.close()
