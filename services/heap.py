"""The garbage collector's settings for a long-running service, once it has started."""

from __future__ import annotations

import gc


def settle_heap(young_generation: int = 10_000) -> None:
    """For a service process (``gate run``, ``relay run``) once its workers are built: what start-up
    loaded (schemas, policy tables, the directory, the libraries) is moved out of the garbage
    collector's sight, and the youngest generation is collected every ``young_generation``
    allocations (10,000; the gate passes its own) instead of every 700. The collector had walked that heap again and again: ~10 % of the gate's CPU, and
    10–15 % of the relay's (bench/README.md)."""
    gc.freeze()
    gc.set_threshold(young_generation, *gc.get_threshold()[1:])
