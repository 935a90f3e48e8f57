"""The writer thread's wakeup (``_background.Wakeup``): readable exactly while a result
waits, so the consumer thread's wait for fetched records ends when a batch is stored."""

from __future__ import annotations

import select
import threading
from typing import Any

from agenttrail.consumers._background import BackgroundWriter, Wakeup


def readable(wakeup: Wakeup, timeout: float = 0.0) -> bool:
    return bool(select.select([wakeup], [], [], timeout)[0])


class _Writer:
    """Stands in for the batch writer: ``write_many`` returns when the test says so."""

    def __init__(self) -> None:
        self.go = threading.Event()

    def write_many(self, batches: list[Any]) -> list[Any]:
        self.go.wait(10)
        return []


def test_the_wakeup_is_readable_while_a_result_waits_and_not_after_it_is_taken() -> None:
    wakeup = Wakeup()
    writer = _Writer()
    background = BackgroundWriter(writer, wakeup)  # type: ignore[arg-type]
    try:
        background.submit("p0", object())  # type: ignore[arg-type]
        assert not readable(wakeup, 0.2), "readable before anything was written"
        writer.go.set()
        assert readable(wakeup, 5.0), "a stored batch did not wake the consumer thread"
        results = background.results(wait_s=1.0)
        assert [r.owner for r in results] == ["p0"] and results[0].error is None
        assert not readable(wakeup), "still readable after the result was taken"
    finally:
        background.close()
        wakeup.close()


def test_setting_a_wakeup_never_blocks_however_often_nobody_clears_it() -> None:
    wakeup = Wakeup()
    try:
        for _ in range(100_000):  # far more than a pipe holds
            wakeup.set()
        assert readable(wakeup)
        wakeup.clear()
        assert not readable(wakeup)
    finally:
        wakeup.close()
