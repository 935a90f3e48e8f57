"""Poll with a deadline instead of sleeping: fails with a message saying what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns a truthy value; return that value.

    Raises:
        AssertionError: the deadline passed; the message names ``what`` and the last value.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what} did not happen within {timeout:.1f}s (last value {last!r})"
            )
        time.sleep(interval)
