"""Capped exponential backoff with jitter: one implementation for every retry loop (the SDK's
exporter reconnecting to the broker, the consumers retrying a failing store)."""

from __future__ import annotations

import os
import random
import time

# The jitter has its own generator: drawing from the module's shared one would move an
# application's seeded sequence (and a test's generated data) from a background thread.
_jitter = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _jitter.seed(os.urandom(16)))


class Backoff:
    """Tracks when the next retry is due. Does not sleep: the caller keeps polling Kafka.

    Args:
        initial_s: wait after the first failure.
        max_s: the cap; waits double per failure up to it.
    """

    def __init__(self, initial_s: float, max_s: float):
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0
        self._due = 0.0

    @property
    def active(self) -> bool:
        """Whether a failure is being backed off from."""
        return self.failures > 0

    def failed(self, now: float | None = None) -> float:
        """Record a failure; return the wait in seconds before the next attempt."""
        now = time.monotonic() if now is None else now
        self.failures += 1
        wait: float = min(self.max_s, self.initial_s * 2.0 ** (self.failures - 1))
        wait *= _jitter.uniform(0.8, 1.0)  # spread retries of several consumers
        self._due = now + wait
        return wait

    def ready(self, now: float | None = None) -> bool:
        """Whether the next attempt may run now."""
        now = time.monotonic() if now is None else now
        return now >= self._due

    def reset(self) -> None:
        """Forget the failures after a success."""
        self.failures = 0
        self._due = 0.0
