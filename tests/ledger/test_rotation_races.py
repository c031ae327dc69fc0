"""Master-key rotation under races (both back-ends): two rotations at once, and erasures in the middle."""

from __future__ import annotations

import threading

from ledger.privacy import LedgerSealer
from ledger.rotation import RotationError, census, rotate_master_key, status
from ledger.subject_crypto import MasterKeyRing, master_key_id
from tests.ledger.test_master_rotation import M0, M1, SUBJECTS, opens, seal_all


def test_two_rotations_to_one_key_at_once_and_erasures_in_between_leave_every_key_rewrapped(ledger):
    sealed = seal_all(ledger, LedgerSealer.for_ledger(ledger, MasterKeyRing([M0])), SUBJECTS)
    ring, target = MasterKeyRing([M0, M1]), master_key_id(M1)
    erased = set(SUBJECTS[::5])
    errors: list[BaseException] = []

    def erase_while_rotating(done: int) -> None:
        # Called by one rotation between its batches: erase a subject not yet erased.
        pending = sorted(erased - set(gone))
        if pending:
            gone.append(pending[0])
            ledger.erase_subject(pending[0], "erased during the rotation")

    gone: list[str] = []

    def rotate(progress=None):
        try:
            rotate_master_key(ledger.tables, ring, target, batch_size=2, progress=progress)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rotate, args=(erase_while_rotating,)), threading.Thread(target=rotate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for subject in erased - set(gone):
        ledger.erase_subject(subject, "erased after the rotation")
    assert census(ledger.tables) == {target: len(SUBJECTS) - len(erased)}
    assert status(ledger.tables).completed_at
    expected = {s: ("erased" if s in erased else plain) for s, (_, plain) in sealed.items()}
    assert opens(LedgerSealer.for_ledger(ledger, MasterKeyRing([M1])), sealed) == expected


def test_a_second_rotation_to_another_key_stops_the_first(ledger):
    import hashlib

    m2 = hashlib.sha256(b"tests/ledger rotation master 2").digest()
    seal_all(ledger, LedgerSealer.for_ledger(ledger, MasterKeyRing([M0])), SUBJECTS)
    ring = MasterKeyRing([M0, M1, m2])

    def meanwhile(done: int) -> None:
        if done == 2:
            rotate_master_key(ledger.tables, ring, master_key_id(m2), batch_size=50)

    try:
        rotate_master_key(ledger.tables, ring, master_key_id(M1), batch_size=2, progress=meanwhile)
    except RotationError as exc:
        assert master_key_id(m2) in str(exc)
    else:
        raise AssertionError("the first rotation finished although another took over")
    assert status(ledger.tables).target == master_key_id(m2)
    rotate_master_key(ledger.tables, ring, master_key_id(m2))
    assert set(census(ledger.tables)) == {master_key_id(m2)}
