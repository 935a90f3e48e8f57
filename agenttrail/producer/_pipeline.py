"""The emit path behind the SDK: batch processor → sealer → spooling exporter → destination.

Three parts, each with one job (OpenTelemetry separates its span processors from its
exporters the same way):

* the batch processor (this module): a bounded queue the agent's thread appends to,
  one worker thread that takes events in order, and ``flush``/``close`` that wait on a
  condition, not in a busy loop;
* the sealer (:mod:`._sealer`): event id, producer sequence, hash chain, Avro bytes;
* the spooling exporter (:mod:`._spooling`): writes every sealed batch to the on-disk
  spool before it is sent, then delivers it through the real exporter behind the same
  :class:`Exporter` protocol.

When the queue is full, ``on_full="spool"`` seals the backlog and writes it to the
spool on the caller's thread; ``"block"`` first waits up to ``block_timeout_s`` for
room. Nothing is dropped silently.

Checkpoints (proof of no loss) are sealed by the worker thread, never on the agent's:
every ``checkpoint_interval_s`` while events were sealed since the last one, and once,
``final``, at close. Each goes through the spool and exporter like any event.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

from agenttrail.events import DEFAULT_MAX_PAYLOAD_BYTES, SchemaRegistry, SigningKey
from agenttrail.producer._exporter import Exporter
from agenttrail.producer._sealer import Sealer
from agenttrail.producer._spool import FsyncPolicy
from agenttrail.producer._spooling import SpoolingExporter

log = logging.getLogger("agenttrail.producer")

OnFull = Literal["spool", "block"]


class Deferred(Protocol):
    """An event whose dict the worker builds by calling it (a span submits itself).

    Spans submit this instead of the dict so that building it (two dozen fields) costs the
    worker thread, not the agent's. The call must read only what can no longer change
    once the span has ended, and never raise (the worker logs and skips an event that
    does).
    """

    def __call__(self) -> dict[str, Any]: ...


Unsealed: TypeAlias = dict[str, Any] | Deferred


@dataclass(frozen=True)
class CloseReport:
    """What :meth:`Pipeline.close` left behind.

    Attributes:
        delivered: events acknowledged by the destination during this process's life
            (its own and replayed ones of earlier processes).
        spooled: events still on disk, to be delivered by the next process (0 is the goal).
        rejected: events that could not be encoded (written to ``rejected.jsonl``).
        unsaved: events that could be neither delivered nor spooled (the disk refused
            them); logged as errors. Anything above 0 means data loss.
        spool_dir: where the spool lives, when events were left in it.
    """

    delivered: int
    spooled: int
    rejected: int = 0
    unsaved: int = 0
    spool_dir: Path | None = None

    @property
    def complete(self) -> bool:
        """True when every event reached the destination."""
        return self.spooled == 0 and self.unsaved == 0 and self.rejected == 0


def _built(deferred: Deferred) -> dict[str, Any] | None:
    """The dict of a :class:`Deferred` event; None (logged) if building it failed."""
    try:
        return deferred()
    except Exception:  # a bug in a custom detector must not stop the batch
        log.exception(
            "agenttrail could not build event seq %s; it is not recorded",
            getattr(deferred, "_seq", "?"),
        )
        return None


class Pipeline:
    """The background half of a Recorder. One per Recorder; thread-safe ``submit``.

    Args:
        exporter: where sealed events go (wrapped in a :class:`SpoolingExporter`).
        producer_id: identity written into every event.
        spool_root: directory under which this process's spool (``<root>/<producer_id>``)
            is created at the first event; spools of dead processes found there are
            replayed. ``None`` keeps undelivered events in memory only (for tests).
        spool_fsync: fsync policy of the spool.
        queue_size: events the queue holds before ``on_full`` applies.
        on_full: see the module docstring.
        registry: the schemas to write with.
        max_payload_bytes: larger events are not sent but kept in ``rejected.jsonl``.
        identity: ``tenant``, ``agent_name``, ``agent_version`` of the checkpoints.
        checkpoint_interval_s: seconds between checkpoints while events flow (0: only
            the final one at close).
        signing_key: signs every checkpoint when given.
    """

    def __init__(
        self,
        exporter: Exporter,
        producer_id: str,
        *,
        spool_root: Path | None,
        spool_fsync: FsyncPolicy = "always",
        queue_size: int = 20_000,
        on_full: OnFull = "spool",
        block_timeout_s: float = 1.0,
        batch_size: int = 1000,
        retry_backoff_s: float = 0.5,
        registry: SchemaRegistry | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        identity: dict[str, str] | None = None,
        checkpoint_interval_s: float = 10.0,
        signing_key: SigningKey | None = None,
    ):
        self.producer_id = producer_id
        self.queue_size = queue_size
        self.on_full = on_full
        self.block_timeout_s = block_timeout_s
        self.batch_size = batch_size
        self.sealer = Sealer(
            producer_id,
            rejected_path=None if spool_root is None else spool_root / "rejected.jsonl",
            registry=registry,
            max_payload_bytes=max_payload_bytes,
            identity=identity,
            checkpoint_interval_s=checkpoint_interval_s,
            signing_key=signing_key,
        )
        self.checkpoint_interval_s = checkpoint_interval_s
        self._last_checkpoint = time.monotonic()
        self.exporter = SpoolingExporter(
            exporter,
            spool_root=spool_root,
            producer_id=producer_id,
            fsync=spool_fsync,
            retry_backoff_s=retry_backoff_s,
        )
        self._queue: collections.deque[Unsealed] = collections.deque()
        self._processed = 0  # events sealed and handed to the exporter, ever
        self._cond = threading.Condition()  # flush and blocked submitters wait on it
        self._work = threading.Lock()  # take + seal + export happen in one order
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._report: CloseReport | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"agenttrail-pipeline-{producer_id[:8]}", daemon=True
        )
        self._thread.start()

    @property
    def max_payload_bytes(self) -> int:
        return self.sealer.max_payload_bytes

    @max_payload_bytes.setter
    def max_payload_bytes(self, value: int) -> None:
        self.sealer.max_payload_bytes = value

    # -- the caller's side -------------------------------------------------------------

    def submit(self, event: Unsealed) -> None:
        """Enqueue one unsealed event (or a :class:`Deferred` one).

        Never raises; blocks only under ``on_full="block"``.
        """
        queue = self._queue
        if len(queue) < self.queue_size and not self._closed:
            queue.append(event)
            if len(queue) >= self.batch_size and not self._wake.is_set():
                # set() takes the event's lock and notifies: once per wake-up, not per
                # event while a backlog waits (the worker clears it before it drains).
                self._wake.set()
            return
        self._overflow(event)

    def _overflow(self, event: Unsealed) -> None:
        if self.on_full == "block" and not self._closed:
            deadline = time.monotonic() + self.block_timeout_s
            with self._cond:
                self._wake.set()
                while len(self._queue) >= self.queue_size and time.monotonic() < deadline:
                    self._cond.wait(max(0.0, deadline - time.monotonic()))
            if len(self._queue) < self.queue_size:
                self._queue.append(event)
                return
        # Seal the whole backlog and this event and write them to the spool, in order,
        # on this thread.
        with self._work:
            self._queue.append(event)
            self._process(len(self._queue))

    # -- the worker --------------------------------------------------------------------

    def _process(self, limit: int) -> None:
        """Take up to ``limit`` events, seal and export them. Caller holds ``_work``."""
        queue = self._queue
        taken = [queue.popleft() for _ in range(min(limit, len(queue)))]
        if not taken:
            return
        # Built one at a time as the sealer takes them: a dict lives only while its event
        # is sealed, instead of a batch of them surviving into the collector's old
        # generation.
        self.exporter.write(
            self.sealer.seal(e if isinstance(e, dict) else _built(e) for e in taken)
        )
        with self._cond:
            self._processed += len(taken)
            self._cond.notify_all()

    def _checkpoint(self, *, final: bool) -> None:
        """Seal and export checkpoints of everything sealed so far. Caller holds ``_work``."""
        self._last_checkpoint = time.monotonic()
        self.exporter.write(self.sealer.checkpoint(final=final))

    def _checkpoint_due(self) -> bool:
        interval = self.checkpoint_interval_s
        return (
            interval > 0
            and self.sealer.checkpoint_pending
            and time.monotonic() - self._last_checkpoint >= interval
        )

    def _run(self) -> None:
        while True:
            self._wake.wait(0.05)
            self._wake.clear()
            try:
                while self._queue:
                    with self._work:
                        self._process(self.batch_size)
                if self._checkpoint_due():
                    with self._work:
                        self._checkpoint(final=False)
            except Exception:  # the worker must outlive any single bad batch
                log.exception("agenttrail pipeline batch failed; retrying")
                time.sleep(0.1)
            if self._stopping and not self._queue:
                return

    # -- flushing and closing ------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every event submitted so far is on disk or delivered.

        Returns:
            True if so within ``timeout``; False when time ran out or events are held
            in memory because the disk refuses them (see ``stats["spool_full"]``).
        """
        deadline = time.monotonic() + timeout
        with self._work:  # no batch half-processed while the target is taken
            target = self._processed + len(self._queue)
        self._wake.set()
        with self._cond:
            while self._processed < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
                self._wake.set()
        return self.exporter.flush(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 30.0) -> CloseReport:
        """Seal and spool everything, deliver what can be delivered, stop.

        Blocks at most about ``timeout`` seconds. Idempotent: later calls return the
        first report. Events submitted after close are spooled synchronously.
        """
        with self._close_lock:
            if self._report is None:
                self._report = self._close(timeout)
            return self._report

    def _close(self, timeout: float) -> CloseReport:
        deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        self._closed = True
        with self._work:
            self._process(len(self._queue))
            if self.sealer.producer_seq:
                # The final checkpoint: how far this producer got, nothing follows.
                self._checkpoint(final=True)
        left = self.exporter.close(max(0.0, deadline - time.monotonic()))
        report = CloseReport(
            delivered=left.delivered,
            spooled=left.spooled,
            rejected=self.sealer.rejected,
            unsaved=left.held,
            spool_dir=left.spool_dir,
        )
        if report.unsaved:
            log.error(
                "agenttrail closed with %d events neither delivered nor spooled (%s)",
                report.unsaved,
                self.exporter.spool_error,
            )
        elif report.spooled:
            log.warning(
                "agenttrail closed with %d events spooled in %s; the next start delivers them.",
                report.spooled,
                report.spool_dir,
            )
        return report

    @property
    def stats(self) -> dict[str, int]:
        """Counters for status lines and tests.

        ``queued`` events wait to be sealed; ``spool_pending`` are on disk and not yet
        acknowledged (in flight or waiting); ``held_in_memory`` could not be written to
        the spool (``spool_full`` is 1 then); ``delivered`` were acknowledged.
        """
        return {
            "queued": len(self._queue),
            "rejected": self.sealer.rejected,
            **self.exporter.stats(),
        }

    @property
    def spool_error(self) -> str | None:
        """Why the spool refuses writes right now (a full disk), or None."""
        return self.exporter.spool_error
