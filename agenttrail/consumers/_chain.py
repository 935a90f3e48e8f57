"""The ingest chain after the fetch: batch → decode → insert → commit, one small step each.

Each step takes work for one partition with ``submit`` and makes progress with ``poll``.
Backpressure is explicit: a step that cannot take a partition's work now says so with
``accepts`` and, if offered anyway, raises :class:`MessageRejected` without having
taken it; the step before keeps the work (or, for fetched records, the fetch holds the
partition: it drops what it fetched and seeks back once the partition is accepted
again). A partition waits only for its own batch: the insert step keeps at most one
batch per partition, so another partition's batch never queues behind it; only a
failing store (which no partition can get past) holds them all.

The fetch itself (the Kafka consumer, rebalances, positions, incarnations) is the
pipeline's (``_pipeline.py``); the partition records below are what the steps share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from agenttrail.consumers._background import BackgroundWriter
from agenttrail.consumers._backoff import Backoff
from agenttrail.consumers._batch import Batch, PartitionBuffer
from agenttrail.consumers._config import ConsumerConfig
from agenttrail.consumers._decode import Decoder, PreparedBatch
from agenttrail.consumers._incarnation import LEGACY_INCARNATION
from agenttrail.consumers._ledger import PartitionFenced
from agenttrail.consumers._stats import Backlog, IngestStats
from agenttrail.store import StoreError

log = logging.getLogger("agenttrail.consumers")


class MessageRejected(Exception):
    """A step cannot take this partition's work now; it did not take it. Offer it again
    after the next ``poll`` of the chain."""


@dataclass(eq=False)
class Partition:
    """One assigned partition as the steps see it (compared by identity: a partition
    assigned again is a new record, and work of the old one never lands on the new).

    Attributes:
        tp: the Kafka partition.
        buffer: fetched records not yet batched (the batch step's).
        pending: the prepared batch the insert step holds, until it is stored.
        in_flight: ``pending`` is with the background writer now.
        ready: the fetch decided the read position (from the ledger / committed offset).
        dropped: records were dropped while held: the fetch seeks back on release.
        gap: (expected, fetched) offsets of a fetch that skipped offsets.
        incarnation: of the topic, decided with the position.
        fenced: another consumer claimed it: never written again by this consumer.
        owned: its offsets may be committed (False once revoked, or retired after the
            broker lost its messages: their rows are still stored, never committed).
    """

    tp: TopicPartition
    buffer: PartitionBuffer
    pending: PreparedBatch | None = None
    in_flight: bool = False
    ready: bool = False
    dropped: bool = False
    gap: tuple[int, int] | None = None
    incarnation: str = LEGACY_INCARNATION
    fenced: bool = False
    owned: bool = True

    @classmethod
    def new(cls, tp: TopicPartition) -> Partition:
        """A freshly assigned partition, position not decided yet."""
        return cls(tp, PartitionBuffer(tp.topic, tp.partition))

    @property
    def unstored(self) -> bool:
        """Whether it holds fetched records not yet stored."""
        return self.pending is not None or len(self.buffer) > 0


def backlog(
    parts: Iterable[Partition], highwater: Callable[[TopicPartition], int | None]
) -> Backlog | None:
    """The messages of ``parts`` not stored yet: fetched-but-unbatched, in the pending
    batch, and not fetched (up to the partition's ``highwater``). None while any one
    partition's high watermark or read position is unknown (or there are none): a sum
    over the partitions known so far would read as "caught up" with one never fetched.
    """
    total, marks = 0, {}
    for part in parts:
        high = highwater(part.tp)
        if high is None or part.buffer.position is None:
            return None
        pending = len(part.pending.batch.messages) if part.pending else 0
        total += max(0, high - part.buffer.position) + len(part.buffer) + pending
        marks[part.tp.partition] = high
    return Backlog(total, marks) if marks else None


class CommitStep:
    """Counts stored batches and commits the offsets of partitions still owned.

    The offset's metadata names the incarnation, so a later reader can tell whether
    the offset belongs to the topic it reads (brokers may drop it; Tansu does). A lost
    commit costs nothing: the ledger row 'after' of the batch keeps the position.

    Args:
        commit: commits offsets (the Kafka consumer's ``commit``); raises KafkaError.
        stats: counters to update.
        lag: the pipeline's current lag, counted with each stored batch.
    """

    def __init__(
        self,
        commit: Callable[[dict[TopicPartition, OffsetAndMetadata]], None],
        stats: IngestStats,
        lag: Callable[[], Backlog | None],
    ):
        self._commit = commit
        self._stats = stats
        self._lag = lag
        self._offsets: dict[TopicPartition, OffsetAndMetadata] = {}

    def accepts(self, part: Partition) -> bool:
        """Always: a stored batch is only counted and remembered."""
        return True

    def submit(self, part: Partition, prepared: PreparedBatch) -> None:
        """Take a batch the store holds now."""
        if prepared.duplicates:
            self._stats.duplicates(prepared.duplicates)
        if part.owned:
            self._offsets[part.tp] = OffsetAndMetadata(
                prepared.batch.last_offset + 1, part.incarnation, -1
            )
        # Counted with the lag as it is now, in one step: a reader never sees the
        # batch's events stored and the lag from before it.
        self._stats.batch_stored(prepared.events, prepared.dead_letters, lag=self._lag())

    def poll(self) -> None:
        """Commit the offsets gathered since the last poll."""
        if not self._offsets:
            return
        offsets, self._offsets = self._offsets, {}
        try:
            self._commit(offsets)
        except KafkaError as exc:
            log.warning("offset commit failed (%s); the ledger keeps the position", exc)


class InsertStep:
    """Writes prepared batches on the background writer, one per partition at a time,
    and retries them with capped exponential backoff while the store fails.

    A failing store is never a reason to drop or dead-letter anything: the same prepared
    batch is written again (its tokens make that idempotent) until it is stored. A
    partition another consumer claimed is reported through ``on_fenced`` and written
    no more.

    Args:
        background: the writer thread.
        backoff: the store's backoff, shared with the pipeline's ledger reads.
        stats: counters to update.
        on_fenced: called with a partition whose batch was refused by its claim.
        next: the commit step.
    """

    def __init__(
        self,
        background: BackgroundWriter,
        backoff: Backoff,
        stats: IngestStats,
        on_fenced: Callable[[Partition], None],
        next: CommitStep,
    ):
        self._background = background
        self.backoff = backoff
        self._stats = stats
        self._on_fenced = on_fenced
        self._next = next
        self._parts: list[Partition] = []  # holding a batch, in submission order

    def accepts(self, part: Partition) -> bool:
        """Whether the partition has no batch here (one at a time keeps its order)."""
        return part.pending is None and not part.fenced

    def submit(self, part: Partition, prepared: PreparedBatch) -> None:
        """Take a partition's next batch; it is written at the next :meth:`poll`."""
        if not self.accepts(part):
            raise MessageRejected(f"partition {part.tp.partition} has a batch being written")
        part.pending = prepared
        self._parts.append(part)

    @property
    def waiting(self) -> bool:
        """Whether a batch waits to be handed to the writer (now or after the backoff)."""
        return any(p.pending is not None and not p.in_flight for p in self._parts)

    @property
    def holding(self) -> bool:
        """Whether any batch is here (waiting or being written)."""
        return any(p.pending is not None for p in self._parts)

    @property
    def idle(self) -> bool:
        """Whether the writer has nothing to do: no batch here and no backoff."""
        return not self.holding and not self.backoff.active

    @property
    def outstanding(self) -> int:
        """Batches with the writer now."""
        return self._background.outstanding

    def poll(self, wait_s: float = 0.0) -> int:
        """Hand waiting batches to the writer (when the backoff allows), take its results;
        return how many batches were stored. Waits up to ``wait_s`` for a result."""
        self._start()
        stored = 0
        for result in self._background.results(wait_s):
            part: Partition = result.owner
            part.in_flight = False
            if part.pending is not result.prepared:
                continue  # fenced meanwhile: the partition's work was dropped
            if isinstance(result.error, PartitionFenced):
                self._drop(part)
                self._stats.partition_fenced()
                self._on_fenced(part)
                continue
            if result.error is not None:
                if not self.backoff.active or self.backoff.ready():
                    self.failed(result.error)
                continue
            self._drop(part)
            stored += 1
            self._next.submit(part, result.prepared)
        if stored and self.backoff.active and not self.holding:
            self.recovered()
        self._start()
        return stored

    def flush(self) -> None:
        """Write what is here once the backoff allows; block until the writer answers."""
        self._start()
        while self._background.outstanding:
            self.poll(wait_s=1.0)

    def failed(self, exc: StoreError) -> None:
        """The store failed: back off before the next attempt of every batch."""
        wait = self.backoff.failed()
        self._stats.store_failed(str(exc))
        log.warning("store failed (attempt %d), retrying the same batch in %.1fs: %s",
                    self.backoff.failures, wait, exc)  # fmt: skip

    def recovered(self) -> None:
        """The store answered again."""
        log.info("store answers again after %d failed attempts", self.backoff.failures)
        self.backoff.reset()
        self._stats.store_recovered()

    def _start(self) -> None:
        if not self.backoff.ready():
            return
        for part in self._parts:
            if part.pending is not None and not part.in_flight:
                part.in_flight = True
                self._background.submit(part, part.pending)

    def _drop(self, part: Partition) -> None:
        part.pending = None
        self._parts = [p for p in self._parts if p is not part]


class DecodeStep:
    """Decodes (or frames, for the store to decode) a partition's batch, on the consumer
    thread, and hands it to the insert step. Pure computation: bad input becomes dead
    letters, never an exception.

    Args:
        decoder: the decoder.
        next: the insert step.
    """

    def __init__(self, decoder: Decoder, next: InsertStep):
        self._decoder = decoder
        self._next = next

    def accepts(self, part: Partition) -> bool:
        """Whether the insert step takes the partition's next batch (asked before the
        decoding work, so a refused batch is never decoded twice)."""
        return self._next.accepts(part)

    @property
    def idle(self) -> bool:
        """Whether the writer has nothing to do."""
        return self._next.idle

    def submit(self, part: Partition, batch: Batch) -> None:
        """Decode ``batch`` and hand it on."""
        if not self.accepts(part):
            raise MessageRejected(f"partition {part.tp.partition} has a batch being written")
        self._next.submit(part, self._decoder.prepare(batch))


class BatchStep:
    """Buffers a partition's fetched records and cuts them into batches: by count, by
    bytes or by age, or to exactly a range the ledger recorded before a crash.

    While the writer has nothing to do, a partition holding ``min_batch_size`` records
    is cut at once rather than at ``batch_size`` or ``batch_ms``: under load the writer
    never waits idle beside a sizeable batch, and batches grow by themselves to what
    arrives while the writer is busy; a trickle is still gathered for ``batch_ms``, so
    it does not become an insert per record. Where a batch ends is free: its range is
    recorded in the ledger before it is inserted, and a redo takes exactly that range.

    It refuses records for a partition whose buffer is full (``max_buffered_batches``
    batches by count or by bytes) and for every partition while the store backs off
    (little is fetched in vain); a recorded range being redone is taken whole whatever
    the limits, since cutting it short would reuse its tokens for other rows.

    Args:
        config: batch size, bytes, age and buffering limits.
        backoff: the store's backoff.
        next: the decode step.
    """

    def __init__(self, config: ConsumerConfig, backoff: Backoff, next: DecodeStep):
        self._config = config
        self._backoff = backoff
        self._next = next

    def accepts(self, part: Partition) -> bool:
        """Whether the partition takes fetched records now."""
        c = self._config
        if part.fenced:
            return False
        if part.buffer.forced is not None and not self._backoff.active:
            return True
        return not (
            self._backoff.active
            or len(part.buffer) >= c.batch_size * c.max_buffered_batches
            or part.buffer.buffered_bytes >= c.batch_bytes * c.max_buffered_batches
        )

    def submit(self, part: Partition, messages: list[Any]) -> int:
        """Buffer fetched records (offsets at or past the buffer's position); return how
        many were kept."""
        if not self.accepts(part):
            raise MessageRejected(f"partition {part.tp.partition} is full")
        return part.buffer.add(messages)

    def poll(self, parts: list[Partition], final: bool = False) -> None:
        """Cut the next batch of each of ``parts`` that is due (every non-empty one when
        ``final``) and hand it on; a partition whose next step refuses it is not cut."""
        c = self._config
        idle = self._next.idle  # as it was before this poll cut anything
        for part in parts:
            if not self._next.accepts(part):
                continue
            if (
                final
                or (idle and len(part.buffer) >= c.min_batch_size)
                or part.buffer.ready(c.batch_size, c.batch_ms, None, c.batch_bytes)
            ):
                batch = part.buffer.take(c.batch_size, c.batch_bytes)
                if batch is not None:
                    self._next.submit(part, batch)
