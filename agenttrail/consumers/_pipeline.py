"""The ingest loop: poll Kafka → buffer per partition → decode/validate → insert → commit.

One thread drives the Kafka consumer (kafka-python's consumer is not thread-safe);
rebalance callbacks only queue events that the loop applies between polls.

Pausing is done here, not with ``KafkaConsumer.pause``: kafka-python 3.0 parks the
parsed records of a partition paused mid-poll and, after ``resume``, may never restore
them, which stops fetching that partition for good (seen against Tansu with the
backpressure pause). A held partition's fetched records are dropped instead, and the
consumer seeks back to the partition's next unbuffered offset when it is released.
While the store fails the loop polls slowly, so little is fetched in vain.

Positions are tied to the topic's incarnation (``_incarnation``): partitions are
(re)initialised from ledger rows and committed offsets of the incarnation read when
they are assigned, and when the broker's metadata shows a new incarnation mid-run
(the embedded broker restarted under the consumer), every partition is started again
from that incarnation's own rows, while what was fetched from the old one is still
stored under the old incarnation's tokens.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from agenttrail.consumers._background import BackgroundWriter
from agenttrail.consumers._backoff import Backoff
from agenttrail.consumers._batch import PartitionBuffer
from agenttrail.consumers._config import ConsumerConfig
from agenttrail.consumers._decode import Decoder, PreparedBatch, PythonDecoder, StoreDecoder
from agenttrail.consumers._errors import BrokerUnavailable
from agenttrail.consumers._fetchers import FetcherPool
from agenttrail.consumers._incarnation import LEGACY_INCARNATION, IncarnationProbe
from agenttrail.consumers._ledger import OffsetLedger, PartitionFenced
from agenttrail.consumers._stats import IngestStats
from agenttrail.consumers._writer import BatchWriter
from agenttrail.events import EventCodec
from agenttrail.store import FAMILY_TABLES, Store, StoreError, StoreUnavailable

log = logging.getLogger("agenttrail.consumers")

_INCARNATION_CHECK_S = 2.0  # an idle consumer confirms the topic's incarnation this often


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """Queues rebalance events for the loop; runs on kafka-python's IO thread, so it
    must not block (a blocked callback stalls heartbeats)."""

    def __init__(self, events: queue.SimpleQueue[tuple[str, list[TopicPartition]]]):
        self.events = events

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.events.put(("revoked", list(revoked)))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.events.put(("assigned", list(assigned)))

    def on_partitions_lost(self, lost: list[TopicPartition]) -> None:
        self.events.put(("revoked", list(lost)))


@dataclass
class _Partition:
    tp: TopicPartition
    buffer: PartitionBuffer
    ready: bool = False  # position decided from the ledger / committed offset
    pending: PreparedBatch | None = None
    in_flight: bool = False  # pending is with the background writer
    dropped: bool = False  # records were dropped while held: seek back on release
    incarnation: str = LEGACY_INCARNATION  # of the topic, decided with the position
    fenced: bool = False  # another consumer claimed it: never written again by this one
    gap: tuple[int, int] | None = None  # (expected, fetched) of a fetch that skipped offsets


class IngestPipeline:
    """Kafka → ClickHouse ingestion for one consumer process of a group.

    Guarantees: offsets are committed only after the batch's inserts succeeded; a batch
    is inserted with deduplication tokens derived from its offset range, recorded in the
    ledger before the insert, so a crash or retry at any point stores each event once.
    Bad input goes to ``dead_letters``; a failing store pauses consumption and is
    retried with capped exponential backoff, never dead-lettered.

    Args:
        config: consumer settings.
        store: an open, migrated store. The pipeline does not close it.
        stats: counters to update (a fresh :class:`IngestStats` by default).
        codec: the event codec (the packaged registry by default).

    Raises:
        SchemaMissing: a family table is missing (the store is not migrated).
        StoreUnavailable: the store failed to list the tables' columns.
    """

    def __init__(
        self,
        config: ConsumerConfig,
        store: Store,
        *,
        stats: IngestStats | None = None,
        codec: EventCodec | None = None,
    ):
        self.config = config
        self.store = store
        self.stats = stats or IngestStats()
        self.consumer_name = f"{socket.gethostname()}:{os.getpid()}"
        # The engine decodes only where it can read the framed blocks (in-process).
        kind = StoreDecoder if config.store_decodes and store.can_query_files else PythonDecoder
        self.decoder: Decoder = kind(
            codec or EventCodec(max_payload_bytes=config.max_payload_bytes),
            column_types={t: store.table_columns(t) for t in FAMILY_TABLES.values()},
        )
        self.ledger = OffsetLedger(store, config.group, self.consumer_name)
        self.writer = BatchWriter(store, self.ledger, self.decoder)
        self._background: BackgroundWriter | None = None
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self._events: queue.SimpleQueue[tuple[str, list[TopicPartition]]] = queue.SimpleQueue()
        self._parts: dict[TopicPartition, _Partition] = {}
        # Partitions of an incarnation the broker no longer has: their fetched records
        # are still stored (under their own incarnation), never committed.
        self._retiring: list[_Partition] = []
        # Revoked with unstored records: kept until the next assignment tells whether the
        # broker lost its messages (then nobody else can re-read them: store them) or
        # the partition moved (its next owner redoes it from the ledger: drop them).
        self._revoked: list[_Partition] = []
        self._incarnation: str | None = None
        self._incarnation_checked_at = time.monotonic()
        self._probe = IncarnationProbe(config.bootstrap, config.topic, config.kafka_options)
        self._consumer: KafkaConsumer | None = None

    def kafka_settings(self) -> dict[str, Any]:
        """The KafkaConsumer settings used: agenttrail's defaults, then ``kafka_options``."""
        c = self.config
        settings: dict[str, Any] = {
            "bootstrap_servers": c.bootstrap.split(","),
            "group_id": c.group,
            "client_id": f"agenttrail-ingest-{self.consumer_name}",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max(c.batch_size, 500),
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "fetch_max_bytes": 64 * 1024 * 1024,
            # A group forms in about half the session timeout on the embedded broker,
            # and a killed member's partitions move after one: 10 s starts and recovers
            # in seconds there, and is within Apache Kafka's allowed range (6-300 s).
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 2_000,
        }
        settings.update(c.kafka_options)
        return settings

    def _open_consumer(self) -> KafkaConsumer:
        """The Kafka consumer: in this process, or a group member whose partitions are
        fetched by ``config.fetchers`` child processes (``_fetchers``)."""
        if self.config.fetchers:
            return FetcherPool(self.kafka_settings(), self.config.fetchers)
        return KafkaConsumer(**self.kafka_settings())

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then store what was fetched, commit, and return.

        Blocks. On stop, batches already fetched are stored and committed if the store
        answers; otherwise they are left uncommitted and will be redone (exactly once)
        by the next consumer of their partitions.

        Raises:
            BrokerUnavailable: the Kafka consumer could not be created or subscribed (the
                broker is unreachable, or refused it); the original error is its cause.
        """
        try:
            consumer = self._open_consumer()
            consumer.subscribe([self.config.topic], listener=_Listener(self._events))
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"Cannot consume {self.config.topic} from the Kafka broker at "
                f"{self.config.bootstrap}: {type(exc).__name__}: {exc}. Check --bootstrap "
                "(AGENTTRAIL_BOOTSTRAP) and that the broker is running.",
                self.config.bootstrap,
            ) from exc
        self._consumer = consumer
        log.info("consuming %s as group %s into %s", self.config.topic, self.config.group,
                 self.store.location)  # fmt: skip
        self._background = BackgroundWriter(self.writer)
        try:
            while not stop.is_set():
                busy = self._step(consumer)
                if not busy and self._backoff.active:
                    # Waiting out a backoff: poll gently so the group membership stays alive.
                    stop.wait(0.2)
            self._drain()
        finally:
            self._background.close()
            self._probe.close()
            self._consumer = None
            try:
                consumer.close(autocommit=False)
            except Exception:  # closing must not hide the loop's own error
                log.warning("closing the Kafka consumer failed", exc_info=True)

    # -- one iteration -----------------------------------------------------------------

    def _step(self, consumer: KafkaConsumer) -> bool:
        full = any(self._held(p) for p in self._parts.values())
        # With a full buffer, wait for the writer rather than fetch records to drop.
        done = self._collect(wait_s=0.05 if full else 0.0)
        self._release(consumer)
        waiting = any(p.pending and not p.in_flight for p in self._parts.values())
        timeout = 0 if waiting and self._backoff.ready() else self.config.poll_timeout_ms
        fetched = consumer.poll(timeout_ms=timeout, max_records=self.config.batch_size)
        self._apply_rebalance()
        if (fetched or self._incarnation_due()) and not self._same_incarnation(consumer, fetched):
            fetched = {}
        self._initialise(consumer)
        accepted = 0
        for tp, messages in fetched.items():
            part = self._parts.get(tp)
            if part is None or not part.ready:
                continue  # not ours (any more), or re-read after its position is decided
            if self._held(part):
                part.dropped = True
                continue
            if not self._contiguous(consumer, part, messages):
                continue
            accepted += part.buffer.add(messages)
        self._cut(final=False)
        self._submit()
        done += self._collect(wait_s=0.0)
        self._update_lag(consumer)
        return accepted > 0 or done > 0

    def _contiguous(self, consumer: KafkaConsumer, part: _Partition, messages: list[Any]) -> bool:
        """Whether fetched records continue exactly where the partition's accepted ones
        end. A fetch that starts past the expected offset (records fetched before a
        seek, a position reset) is dropped and fetched again from the expected offset;
        only when the same gap comes back is it taken for a real hole in the log
        (compaction, transaction markers) and accepted."""
        expected = part.buffer.position
        if expected is None:
            return True
        first = next((m.offset for m in messages if m.offset >= expected), None)
        if first is None or first == expected or part.gap == (expected, first):
            part.gap = None
            return True
        log.warning("partition %d: fetched offset %d while %d was expected; fetching again "
                    "from %d", part.tp.partition, first, expected, expected)  # fmt: skip
        part.gap = (expected, first)
        consumer.seek(part.tp, expected)
        return False

    def _held(self, part: _Partition) -> bool:
        """Whether the partition takes no new records: the store fails, or its buffer is full."""
        c = self.config
        if part.fenced:
            return True
        if part.buffer.forced is not None and not self._backoff.active:
            return False  # a recorded range is re-read whole, whatever the limits now
        return (
            self._backoff.active
            or len(part.buffer) >= c.batch_size * c.max_buffered_batches
            or part.buffer.buffered_bytes >= c.batch_bytes * c.max_buffered_batches
        )

    def _release(self, consumer: KafkaConsumer) -> None:
        """Seek released partitions back to the first offset they dropped."""
        for part in self._parts.values():
            if part.dropped and part.ready and not self._held(part):
                part.dropped = False
                if part.buffer.position is None:
                    consumer.seek_to_beginning(part.tp)
                else:
                    consumer.seek(part.tp, part.buffer.position)

    def _apply_rebalance(self) -> None:
        changed = False
        while True:
            try:
                kind, tps = self._events.get_nowait()
            except queue.Empty:
                break
            changed = True
            for tp in tps:
                if kind == "revoked":
                    dropped = self._parts.pop(tp, None)
                    if dropped and (dropped.pending or len(dropped.buffer)):
                        self._revoked.append(dropped)
                        log.info("partition %s revoked with unstored records; its next owner "
                                 "redoes them from the ledger", tp.partition)  # fmt: skip
                elif tp.topic == self.config.topic:
                    self._parts[tp] = _Partition(tp, PartitionBuffer(tp.topic, tp.partition))
        if changed:
            self.stats.set_partitions(tuple(sorted(tp.partition for tp in self._parts)))

    def _incarnation_due(self) -> bool:
        """Whether an idle consumer should confirm the incarnation (every few seconds):
        a broker restarted under it may hold as many messages as it had read, so no
        fetch error would ever tell."""
        return time.monotonic() - self._incarnation_checked_at >= _INCARNATION_CHECK_S

    def _same_incarnation(self, consumer: KafkaConsumer, fetched: dict[Any, Any]) -> bool:
        """Whether the records just fetched come from the incarnation being read.

        Asked after the poll, before any record is accepted: incarnations only ever
        follow one another, so if the broker still is the incarnation the partitions
        were positioned in, every record fetched before this moment came from it too.
        Costs one metadata request per poll that returned records. When the topic has
        a new incarnation, every partition is retired and positioned again from the new
        incarnation's own rows; when the question cannot be answered, the records are
        dropped and re-fetched later.
        """
        if self._incarnation is None:
            return True  # no partition positioned yet: nothing fetched is accepted
        self._incarnation_checked_at = time.monotonic()
        try:
            now = self._probe.read()
        except KafkaError as exc:
            log.warning("cannot confirm the incarnation of %s (%s); fetching again",
                        self.config.topic, exc)  # fmt: skip
            for tp in fetched:
                part = self._parts.get(tp)
                if part is not None and part.ready:
                    part.dropped = True  # _release seeks back to what was accepted
            return False
        if now == self._incarnation:
            return True
        log.warning("topic %s changed incarnation (%s -> %s): the broker lost its messages "
                    "or the topic was recreated; reading it again from its start",
                    self.config.topic, self._incarnation, now)  # fmt: skip
        self._incarnation = None
        for part in self._revoked:
            self._retire(part)
        self._revoked.clear()
        for tp, part in list(self._parts.items()):
            self._retire(part)
            self._parts[tp] = _Partition(tp, PartitionBuffer(tp.topic, tp.partition))
        return False

    def _retire(self, part: _Partition) -> None:
        """Keep a partition of a vanished incarnation until what it fetched is stored."""
        part.buffer.forced = None  # its recorded range can never be re-read
        if part.pending is not None or len(part.buffer):
            self._retiring.append(part)

    def _initialise(self, consumer: KafkaConsumer) -> None:
        """Decide the read position of newly assigned partitions from the ledger rows
        and committed offsets of the topic's current incarnation."""
        waiting = [p for p in self._parts.values() if not p.ready]
        if not waiting or not self._backoff.ready():
            return
        try:
            incarnation = self._probe.read()
        except KafkaError as exc:
            log.warning("cannot read the metadata of %s yet (%s); retrying", self.config.topic,
                        exc)  # fmt: skip
            return
        try:
            # Claim first, read second: a zombie's 'before' row is either visible to the
            # read below, or written after this claim (and then fenced before it inserts).
            claims = self.ledger.claim(
                self.config.topic, incarnation, [p.tp.partition for p in waiting]
            )
            entries = self.ledger.latest(
                self.config.topic, [p.tp.partition for p in waiting], incarnation
            )
        except StoreUnavailable as exc:
            self._store_failed(exc)
            return
        if self._backoff.active and not self._any_pending():
            self._store_recovered()
        if incarnation != self._incarnation:
            log.info("topic %s is incarnation %s", self.config.topic, incarnation or "(legacy)")
            if self._incarnation is not None:
                for old in self._revoked:
                    self._retire(old)
        self._revoked.clear()
        self._incarnation = incarnation
        for part in waiting:
            part.incarnation = incarnation
            part.buffer.incarnation = incarnation
            claim = claims[part.tp.partition]
            part.buffer.claim, part.buffer.claimed_at = claim.claim, claim.claimed_at
            entry = entries.get(part.tp.partition)
            if entry is not None:
                consumer.seek(part.tp, entry.resume_at)
                part.buffer.position = entry.resume_at
                if entry.state == "before":
                    part.buffer.force_range(entry.first_offset, entry.last_offset)
                    log.info("partition %d: redoing batch %d-%d recorded before a crash",
                             part.tp.partition, entry.first_offset, entry.last_offset)  # fmt: skip
            else:
                committed = _committed_offset(consumer, part.tp, incarnation)
                if committed is None:
                    consumer.seek_to_beginning(part.tp)
                else:
                    consumer.seek(part.tp, committed)
                    part.buffer.position = committed
            part.ready = True

    def _cut(self, final: bool) -> None:
        """Cut and prepare the next batch of every partition that has none pending."""
        c = self.config
        for part in self._retiring:
            if part.pending is None:
                batch = part.buffer.take(c.batch_size, c.batch_bytes)
                if batch is not None:
                    part.pending = self.decoder.prepare(batch)
        for part in self._parts.values():
            if (
                part.ready
                and part.pending is None
                and (final or part.buffer.ready(c.batch_size, c.batch_ms, None, c.batch_bytes))
            ):
                batch = part.buffer.take(c.batch_size, c.batch_bytes)
                if batch is not None:
                    part.pending = self.decoder.prepare(batch)

    def _submit(self) -> None:
        """Hand pending batches to the background writer (after a backoff, when due)."""
        assert self._background is not None
        if not self._backoff.ready():
            return
        for part in (*self._retiring, *self._parts.values()):
            if part.pending is not None and not part.in_flight:
                part.in_flight = True
                self._background.submit(part, part.pending)

    def _collect(self, wait_s: float) -> int:
        """Commit the batches the writer stored; schedule a retry of failed ones."""
        assert self._background is not None
        done: dict[TopicPartition, OffsetAndMetadata] = {}
        stored = 0
        for result in self._background.results(wait_s):
            part: _Partition = result.owner
            part.in_flight = False
            if isinstance(result.error, PartitionFenced):
                self._fence(part)
                continue
            if result.error is not None:
                if not self._backoff.active or self._backoff.ready():
                    self._store_failed(result.error)
                continue
            stored += 1
            if result.prepared.duplicates:
                self.stats.duplicates(result.prepared.duplicates)
            if part in self._retiring and part.pending is result.prepared:
                part.pending = None  # stored; an offset of a vanished incarnation is not committed
                if not len(part.buffer):
                    self._retiring.remove(part)
            elif self._parts.get(part.tp) is part and part.pending is result.prepared:
                part.pending = None
                # The metadata names the incarnation, so a later reader can tell whether
                # this offset belongs to the topic it reads (brokers may drop it; Tansu does).
                done[part.tp] = OffsetAndMetadata(
                    result.prepared.batch.last_offset + 1, part.incarnation, -1
                )
            # Counted with the lag as it is now, in one step: a reader never sees the
            # batch's events stored and the lag from before it.
            self.stats.batch_stored(
                result.prepared.events, result.prepared.dead_letters, lag=self._lag()
            )
        if done:
            self._commit(done)
        if stored and self._backoff.active and not self._any_pending():
            self._store_recovered()
        return stored

    def _fence(self, part: _Partition) -> None:
        """Stop writing a partition another consumer claimed; wait for the rebalance
        that takes it from this consumer (a fresh assignment claims it anew)."""
        log.warning("partition %d was claimed by another consumer; this one stops writing "
                    "it (its batch was not inserted)", part.tp.partition)  # fmt: skip
        self.stats.partition_fenced()
        part.fenced = True
        part.pending = None
        part.buffer = PartitionBuffer(part.tp.topic, part.tp.partition)

    def _any_pending(self) -> bool:
        return any(p.pending for p in (*self._retiring, *self._parts.values()))

    def _commit(self, offsets: dict[TopicPartition, Any]) -> None:
        assert self._consumer is not None
        try:
            self._consumer.commit(offsets)
        except KafkaError as exc:
            # The rows are stored and the ledger says 'after': whoever owns the partition
            # next resumes behind this batch, so a lost commit costs nothing.
            log.warning("offset commit failed (%s); the ledger keeps the position", exc)

    def _store_failed(self, exc: StoreError) -> None:
        wait = self._backoff.failed()
        self.stats.store_failed(str(exc))
        log.warning("store failed (attempt %d), retrying the same batch in %.1fs: %s",
                    self._backoff.failures, wait, exc)  # fmt: skip

    def _store_recovered(self) -> None:
        log.info("store answers again after %d failed attempts", self._backoff.failures)
        self._backoff.reset()
        self.stats.store_recovered()

    def _update_lag(self, consumer: KafkaConsumer) -> None:
        self.stats.set_lag(self._lag())

    def _lag(self) -> int | None:
        consumer = self._consumer
        if consumer is None:
            return None
        total, known = 0, False
        for part in self._parts.values():
            high = consumer.highwater(part.tp)
            if high is None or part.buffer.position is None:
                continue
            known = True
            pending = len(part.pending.batch.messages) if part.pending else 0
            total += max(0, high - part.buffer.position) + len(part.buffer) + pending
        return total if known else None

    def _drain(self) -> None:
        """Store what was fetched before stopping: one attempt, no waiting on a dead store."""
        assert self._background is not None
        self._backoff.reset()
        for _ in range(self.config.max_buffered_batches + 2):
            self._cut(final=True)
            if not self._any_pending():
                return
            self._submit()
            while self._background.outstanding:
                self._collect(wait_s=1.0)
            if self._backoff.active:
                log.warning("stopping with unstored batches; they stay uncommitted and are "
                            "redone by the next consumer")  # fmt: skip
                return


def _committed_offset(consumer: KafkaConsumer, tp: TopicPartition, incarnation: str) -> int | None:
    """The group's committed offset of ``tp`` if it belongs to ``incarnation``.

    An offset committed with another incarnation in its metadata names other messages
    and is ignored. One committed without (by an older agenttrail, or kept by a broker
    that drops commit metadata, as Tansu does) is trusted: the broker keeps committed
    offsets beside the topic, so it lost them when it lost the topic's messages.
    """
    committed = consumer.committed(tp, metadata=True)
    if committed is None or committed.offset is None or committed.offset < 0:
        return None
    if committed.metadata and committed.metadata != incarnation:
        log.info("partition %d: committed offset %d belongs to incarnation %s, not %s; "
                 "ignored", tp.partition, committed.offset, committed.metadata,
                 incarnation)  # fmt: skip
        return None
    return int(committed.offset)
