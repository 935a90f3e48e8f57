"""Writing batches on a background thread, so fetching overlaps inserting.

The store's engine works outside the GIL (ClickHouse in C++), so while one batch is
checked and inserted here, the consumer thread keeps fetching and framing the next.
Results come back to the consumer thread, which alone touches the Kafka consumer and
commits offsets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any

from agenttrail.consumers._decode import PreparedBatch
from agenttrail.consumers._ledger import PartitionFenced
from agenttrail.consumers._writer import BatchWriter
from agenttrail.store import StoreError

log = logging.getLogger("agenttrail.consumers")


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one write: ``error`` is None when the batch is stored."""

    owner: Any
    prepared: PreparedBatch
    error: StoreError | PartitionFenced | None


class Wakeup:
    """A pipe that is readable while a result waits: the consumer thread can wait for the
    fetch and for the writer at once (``multiprocessing.connection.wait`` takes it).

    Never blocks: a full pipe already says "readable".
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write, b"\0")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._read, 4096):
                pass

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


class BackgroundWriter:
    """A thread that runs :meth:`BatchWriter.write` for submitted batches, in order.

    Args:
        writer: the writer to run.
        wakeup: set whenever a result is ready.
    """

    def __init__(self, writer: BatchWriter, wakeup: Wakeup | None = None):
        self.writer = writer
        self._wakeup = wakeup
        self._jobs: queue.SimpleQueue[tuple[Any, PreparedBatch] | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[WriteResult] = queue.SimpleQueue()
        self._outstanding = 0
        self._thread = threading.Thread(target=self._work, name="agenttrail-writer", daemon=True)
        self._thread.start()

    @property
    def outstanding(self) -> int:
        """Batches submitted whose result was not yet taken."""
        return self._outstanding

    def submit(self, owner: Any, prepared: PreparedBatch) -> None:
        """Queue a batch; ``owner`` comes back with its result. Never blocks."""
        self._outstanding += 1
        self._jobs.put((owner, prepared))

    def results(self, wait_s: float = 0.0) -> list[WriteResult]:
        """Results ready now; waits up to ``wait_s`` for the first when none is ready."""
        out: list[WriteResult] = []
        if self._wakeup is not None:
            self._wakeup.clear()  # before taking: a result put after this sets it again
        try:
            if wait_s > 0 and self._outstanding:
                out.append(self._results.get(timeout=wait_s))
            while True:
                out.append(self._results.get_nowait())
        except queue.Empty:
            pass
        self._outstanding -= len(out)
        return out

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread after the queued batches. Blocks up to ``timeout`` seconds."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            # Take every batch queued meanwhile: one ledger insert per state for all.
            jobs = [job]
            closing = False
            while True:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                jobs.append(more)
            error: StoreError | None = None
            fenced: list[PreparedBatch] = []
            try:
                fenced = self.writer.write_many([prepared for _, prepared in jobs])
            except StoreError as exc:
                error = exc
            except Exception as exc:  # a bug must not kill the thread and hang the pipeline
                log.exception("writing %d batches failed unexpectedly", len(jobs))
                error = StoreError(f"unexpected {type(exc).__name__}: {exc}")
            lost = {id(p) for p in fenced}
            for owner, prepared in jobs:
                outcome: StoreError | PartitionFenced | None = error
                if outcome is None and id(prepared) in lost:
                    outcome = PartitionFenced(f"partition {prepared.batch.partition} claimed "
                                              "by another consumer")  # fmt: skip
                self._results.put(WriteResult(owner, prepared, outcome))
            if self._wakeup is not None:
                self._wakeup.set()
            if closing:
                return
