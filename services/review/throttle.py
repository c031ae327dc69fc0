"""Log-in throttling: repeated failures for one user name, or from one client address, lock it out.

After ``allowed`` failures within ``window`` seconds a key is locked for ``base_lock`` seconds,
doubling with every further failure up to ``max_lock``; a successful log-in clears the user
name's record. Kept in the review server's memory: one server process, as `xledger review
serve` runs it. Holds no passwords; keys are user names and client addresses.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    locks: int = 0


class LoginThrottle:
    def __init__(self, *, allowed: int = 5, window: float = 900.0, base_lock: float = 30.0,
                 max_lock: float = 900.0, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.allowed, self.window, self.base_lock, self.max_lock = allowed, window, base_lock, max_lock
        self.clock, self.max_keys = clock, max_keys
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float:
        """Seconds until any of these keys may try again (0: go ahead)."""
        now = self.clock()
        with self._lock:
            return max([0.0] + [r.locked_until - now for k in keys if (r := self._records.get(k))])

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._records) >= self.max_keys:
                self._forget_quiet(now)
            for key in keys:
                r = self._records.setdefault(key, _Record())
                r.failures = [t for t in r.failures if now - t < self.window] + [now]
                if len(r.failures) >= self.allowed:
                    r.locked_until = now + min(self.base_lock * 2 ** r.locks, self.max_lock)
                    r.locks += 1

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def _forget_quiet(self, now: float) -> None:
        # Bounded memory under a spray of made-up names: drop keys with nothing recent.
        for key in [k for k, r in self._records.items()
                    if r.locked_until <= now and all(now - t >= self.window for t in r.failures)]:
            del self._records[key]
