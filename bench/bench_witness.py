"""Witness: the cost of cosigning one checkpoint (``ledger.witness.Witness.add_checkpoint``: parse the
request, check the log's note signature, verify the consistency proof, compare-and-swap the state
in SQLite with fsync, sign a cosignature/v1) against a bare RFC 9162 consistency-proof
verification of the same proof (``ledger.merkle.verify_consistency``), and the same cosigning with
the state in memory, which shows what the durable state costs.  Costs, so ratio = baseline/value.
Run: ``python -m bench.bench_witness``."""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import row
from ledger.checkpoint import Checkpoint, CheckpointSigner, generate_keypair, note_verifier_key
from ledger.merkle import InMemoryNodeStore, MerkleLog, leaf_hash, verify_consistency
from ledger.note import Cosigner, verifier_from_vkey
from ledger.witness import SqliteWitnessStore, Witness, WitnessState, format_add_checkpoint

ORIGIN = "bench.example/log"


class _MemoryStore:
    def __init__(self) -> None:
        self.state: dict[str, WitnessState] = {}

    def latest(self, origin):
        return self.state.get(origin)

    def swap(self, origin, expected, new, note):
        if self.state.get(origin) != expected:
            return self.state.get(origin)
        self.state[origin] = new
        return None

    def record_refusal(self, *args) -> None:
        pass


def run(checkpoints: int = 300, tree_size: int = 100_000, step: int = 100) -> list[dict]:
    private, public = generate_keypair()
    signer = CheckpointSigner(private)
    log = MerkleLog(InMemoryNodeStore())
    log.append_many(leaf_hash(b"%d" % i) for i in range(tree_size))
    start = tree_size - checkpoints * step
    sizes = [start + i * step for i in range(checkpoints + 1)]
    notes = {s: signer.sign(Checkpoint(ORIGIN, s, log.root(s))).to_note() for s in sizes}
    proofs = {s: log.consistency_proof(p, s) for p, s in zip(sizes, sizes[1:])}
    roots = {s: log.root(s) for s in sizes}
    bodies = [format_add_checkpoint(p, proofs[s], notes[s]) for p, s in zip(sizes, sizes[1:])]
    keys = {ORIGIN: [verifier_from_vkey(note_verifier_key(ORIGIN, public))]}
    cosigner = Cosigner("bench.example/witness", generate_keypair()[0])

    def cosign(store) -> float:
        witness = Witness(cosigner, keys, store)
        store.swap(ORIGIN, None, WitnessState(sizes[0], roots[sizes[0]]), notes[sizes[0]])
        t0 = time.perf_counter()
        for body in bodies:
            witness.add_checkpoint(body)
        return (time.perf_counter() - t0) / len(bodies) * 1e6

    def bare() -> float:
        t0 = time.perf_counter()
        for p, s in zip(sizes, sizes[1:]):
            assert verify_consistency(p, s, roots[p], roots[s], proofs[s])
        return (time.perf_counter() - t0) / len(bodies) * 1e6

    durable, memory, baseline = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):  # interleaved rounds: noise on this shared machine hits all three alike
            baseline.append(bare())
            memory.append(cosign(_MemoryStore()))
            durable.append(cosign(SqliteWitnessStore(Path(tmp) / f"w{i}.sqlite")))
    base = statistics.median(baseline)
    return [
        row("witness.cosign.sqlite", statistics.median(durable), "µs/checkpoint", "verify_consistency", base,
            higher_better=False),
        row("witness.cosign.memory_state", statistics.median(memory), "µs/checkpoint", "verify_consistency", base,
            higher_better=False),
    ]


if __name__ == "__main__":
    for r in run():
        print(json.dumps(r, ensure_ascii=False))
