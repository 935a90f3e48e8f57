"""The ingest loop's fetch step: poll Kafka, then hand records to the chain (``_chain.py``).

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
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from agenttrail.consumers._background import BackgroundWriter, Wakeup
from agenttrail.consumers._backoff import Backoff
from agenttrail.consumers._batch import PartitionBuffer
from agenttrail.consumers._chain import (
    BatchStep,
    CommitStep,
    DecodeStep,
    InsertStep,
    MessageRejected,
    Partition,
    backlog,
)
from agenttrail.consumers._config import ConsumerConfig
from agenttrail.consumers._decode import Decoder, PythonDecoder, StoreDecoder
from agenttrail.consumers._errors import BrokerRefused, BrokerUnavailable
from agenttrail.consumers._fetchers import FetcherPool
from agenttrail.consumers._framing import FramingSpec, first_offset, spec_for
from agenttrail.consumers._incarnation import IncarnationProbe
from agenttrail.consumers._ledger import OffsetLedger
from agenttrail.consumers._librdkafka import choose
from agenttrail.consumers._stats import Backlog, IngestStats
from agenttrail.consumers._writer import BatchWriter
from agenttrail.events import EventCodec
from agenttrail.store import FAMILY_TABLES, Store, StoreUnavailable

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


class IngestPipeline:
    """Kafka → ClickHouse ingestion for one consumer process of a group.

    The pipeline is the fetch step of a chain (``_chain.py``): it drives the Kafka
    consumer (polls, rebalances, read positions, the topic's incarnation) and offers
    each partition's records to the batch step, which hands batches on to decode,
    insert and commit. A step that refuses a partition's records makes the fetch hold
    that partition: what was fetched for it is dropped and fetched again from its next
    unbuffered offset once the partition is accepted again.

    Guarantees: offsets are committed only after the batch's inserts succeeded; a batch
    is inserted with deduplication tokens derived from its offset range, recorded in the
    ledger before the insert, so a crash or retry at any point stores each event once.
    Bad input goes to ``dead_letters``; a failing store pauses consumption and is
    retried with capped exponential backoff, never dead-lettered; a failing broker is
    retried the same way, and one that refuses the consumer for good (authorization,
    configuration) ends the run with :class:`BrokerRefused`.

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
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self._broker_backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self._background: BackgroundWriter | None = None
        self._batching: BatchStep | None = None
        self._inserting: InsertStep | None = None
        self._committing: CommitStep | None = None
        self._events: queue.SimpleQueue[tuple[str, list[TopicPartition]]] = queue.SimpleQueue()
        self._parts: dict[TopicPartition, Partition] = {}
        # Partitions of an incarnation the broker no longer has: their fetched records
        # are still stored (under their own incarnation), never committed.
        self._retiring: list[Partition] = []
        # Revoked with unstored records: kept until the next assignment tells whether the
        # broker lost its messages (then nobody else can re-read them: store them) or
        # the partition moved (its next owner redoes it from the ledger: drop them).
        self._revoked: list[Partition] = []
        self._incarnation: str | None = None
        self._incarnation_checked_at = time.monotonic()
        self._probe = IncarnationProbe(config.bootstrap, config.topic, config.kafka_options)
        self._consumer: KafkaConsumer | None = None
        # When the client last lost its partitions without getting an assignment since.
        self._unassigned_since: float | None = None
        self._framing_spec: FramingSpec | None = None
        # Readable while the writer has a result: ends a fetcher pool's wait for records.
        self._wakeup: Wakeup | None = None

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

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then store what was fetched, commit, and return.

        Blocks. On stop, batches already fetched are stored and committed if the store
        answers; otherwise they are left uncommitted and will be redone (exactly once)
        by the next consumer of their partitions.

        Raises:
            BrokerUnavailable: the Kafka consumer could not be created or subscribed (the
                broker is unreachable, or refused it); the original error is its cause.
            BrokerRefused: the broker refused the running consumer for good (e.g. its
                authorization was revoked); what was stored is committed first.
        """
        self._wakeup = wakeup = Wakeup()
        try:
            consumer = self._open_consumer()
        except BaseException:
            wakeup.close()
            raise
        log.info("consuming %s as group %s into %s", self.config.topic, self.config.group,
                 self.store.location)  # fmt: skip
        self._background = BackgroundWriter(self.writer, wakeup)
        self._committing = CommitStep(self._commit, self.stats, self._lag)
        self._inserting = InsertStep(
            self._background, self._backoff, self.stats, self._fence, self._committing
        )
        self._batching = BatchStep(self.config, self._backoff, DecodeStep(self.decoder,
                                   self._inserting))  # fmt: skip
        try:
            while not stop.is_set():
                if self._join_stuck():
                    consumer = self._reopen_consumer(consumer)
                busy = self._step(consumer)
                if not busy and (self._backoff.active or self._broker_backoff.active):
                    # Waiting out a backoff: poll gently so the group membership stays alive.
                    stop.wait(0.2)
            self._drain()
        finally:
            self._background.close()
            self._probe.close()
            wakeup.close()
            self._consumer = None
            try:
                consumer.close(autocommit=False)
            except Exception:  # closing must not hide the loop's own error
                log.warning("closing the Kafka consumer failed", exc_info=True)

    def _open_consumer(self) -> KafkaConsumer:
        """Create the Kafka consumer (in this process, or with fetcher processes) and
        subscribe it to the topic.

        Raises:
            BrokerUnavailable: the broker is unreachable, or refused the consumer.
        """
        settings = self.kafka_settings()
        try:
            # In this process, or a group member whose partitions are fetched by
            # ``config.fetchers`` child processes (``_fetchers``).
            consumer: KafkaConsumer = (
                FetcherPool(
                    settings,
                    self.config.fetchers,
                    self._framing(),
                    choose(self.config.fetcher_client, settings),
                    wakeup=self._wakeup,
                )
                if self.config.fetchers
                else KafkaConsumer(**settings)
            )
            consumer.subscribe([self.config.topic], listener=_Listener(self._events))
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"Cannot consume {self.config.topic} from the Kafka broker at "
                f"{self.config.bootstrap}: {type(exc).__name__}: {exc}. Check --bootstrap "
                "(AGENTTRAIL_BOOTSTRAP) and that the broker is running.",
                self.config.bootstrap,
            ) from exc
        self._consumer = consumer
        self._unassigned_since = time.monotonic()
        return consumer

    def _framing(self) -> FramingSpec | None:
        """What fetcher processes frame for the store (the store decoder's flat families;
        nothing for the Python decoder). One per pipeline: restarted children and new
        consumers frame with the same check nonce."""
        if self._framing_spec is None:
            decoder = self.decoder
            if isinstance(decoder, StoreDecoder):
                spec = spec_for(decoder.store_encoders, decoder.codec.max_payload_bytes)
            else:
                spec = spec_for({}, 0)
            self._framing_spec = spec
        return self._framing_spec

    def _join_stuck(self) -> bool:
        """Whether the Kafka client is stuck between a revocation and the assignment
        that should follow it.

        Seen with kafka-python 3.0 after the embedded broker restarted under a running
        consumer: the client takes the SyncGroup answer, marks itself joined and never
        applies the assignment, so the consumer holds no partition for good. A join
        that completes always reports an assignment (empty when the group has more
        members than partitions), so a revocation with no assignment for several
        session timeouts (and ``stuck_join_s``), while the client claims to need no
        rejoin, is that state.
        """
        since = self._unassigned_since
        if since is None or self._consumer is None:
            return False
        session_s = float(self.kafka_settings().get("session_timeout_ms", 10_000)) / 1000
        if time.monotonic() - since < max(3 * session_s, self.config.stuck_join_s):
            return False
        # kafka-python keeps that state on its coordinator (a FetcherPool passes it on);
        # a client that does not tell is never taken for stuck.
        coordinator = getattr(self._consumer, "_coordinator", self._consumer)
        need_rejoin = getattr(coordinator, "need_rejoin", None)
        if not callable(need_rejoin):
            return False
        try:
            return not need_rejoin()
        except Exception:
            log.debug("cannot ask the Kafka client whether it must rejoin", exc_info=True)
            return False

    def _reopen_consumer(self, consumer: KafkaConsumer) -> KafkaConsumer:
        """Replace a stuck Kafka consumer with a new member of the group. Nothing is
        lost: partitions are positioned from the ledger again when assigned."""
        log.warning("the Kafka client was revoked its partitions %.0fs ago and never got "
                    "an assignment; joining the group again with a new consumer",
                    time.monotonic() - (self._unassigned_since or 0.0))  # fmt: skip
        self.stats.broker_failed("group join stuck: consumer recreated")
        try:
            fresh = self._open_consumer()
        except BrokerUnavailable as exc:
            log.warning("cannot create a new Kafka consumer yet (%s); keeping the old one", exc)
            self._consumer = consumer
            self._unassigned_since = time.monotonic()  # try again after another window
            return consumer
        try:
            consumer.close(autocommit=False)
        except Exception:
            log.warning("closing the stuck Kafka consumer failed", exc_info=True)
        for tp in list(self._parts):  # whatever the old member still held is its no more
            self._events.put(("revoked", [tp]))
        self._unassigned_since = time.monotonic()
        return fresh

    # -- one iteration -----------------------------------------------------------------

    def _step(self, consumer: KafkaConsumer) -> bool:
        batching, inserting = self._chain()
        full = any(not batching.accepts(p) for p in self._parts.values())
        # With a full buffer, wait for the writer rather than fetch records to drop.
        done = self._progress(wait_s=0.05 if full else 0.0)
        self._release(consumer)
        timeout = 0 if inserting.waiting and self._backoff.ready() else self.config.poll_timeout_ms
        fetched = self._poll(consumer, timeout)
        self._apply_rebalance()
        if (fetched or self._incarnation_due()) and not self._same_incarnation(consumer, fetched):
            fetched = {}
        self._initialise(consumer)
        accepted = 0
        for tp, messages in fetched.items():
            part = self._parts.get(tp)
            if part is None or not part.ready:
                continue  # not ours (any more), or re-read after its position is decided
            if not batching.accepts(part):
                self._hold(consumer, part)  # fetched again from its position on release
                continue
            if not self._contiguous(consumer, part, messages):
                continue
            try:
                accepted += batching.submit(part, messages)
            except MessageRejected:
                self._hold(consumer, part)
        # Results first: a partition whose batch was just stored is cut again at once.
        done += self._progress(wait_s=0.0)
        self._cut(final=False)
        done += self._progress(wait_s=0.0)
        self.stats.set_lag(self._lag())
        return accepted > 0 or done > 0

    def _chain(self) -> tuple[BatchStep, InsertStep]:
        assert self._batching is not None and self._inserting is not None, "run() builds it"
        return self._batching, self._inserting

    def _progress(self, wait_s: float) -> int:
        """Let the insert and commit steps work; return how many batches were stored."""
        _, inserting = self._chain()
        assert self._committing is not None
        stored = inserting.poll(wait_s)
        self._committing.poll()
        self._retiring = [p for p in self._retiring if p.unstored]
        return stored

    def _cut(self, final: bool) -> None:
        """Cut the due batches: every one of a retiring partition, the due ones of the
        partitions whose position is decided."""
        batching, _ = self._chain()
        batching.poll(self._retiring, final=True)
        batching.poll([p for p in self._parts.values() if p.ready], final=final)

    def _poll(self, consumer: KafkaConsumer, timeout_ms: int) -> dict[Any, list[Any]]:
        """One fetch. A broker error the client gives up on is retried with backoff
        (nothing fetched is lost: positions only move with accepted records); one that
        refuses this consumer for good ends the run.

        Raises:
            BrokerRefused: authorization, authentication or configuration was refused.
        """
        if not self._broker_backoff.ready():
            return {}
        try:
            fetched: dict[Any, list[Any]] = consumer.poll(
                timeout_ms=timeout_ms, max_records=self.config.batch_size
            )
        except KafkaError as exc:
            if isinstance(exc, _REFUSED):
                raise BrokerRefused(
                    f"The Kafka broker at {self.config.bootstrap} refused consumer group "
                    f"{self.config.group} on topic {self.config.topic}: "
                    f"{type(exc).__name__}: {exc}. Check the consumer's credentials and the "
                    "broker's ACLs for the topic and the group (--kafka-option).",
                    self.config.bootstrap,
                ) from exc
            wait = self._broker_backoff.failed()
            self.stats.broker_failed(f"{type(exc).__name__}: {exc}")
            log.warning("fetch failed (attempt %d, %s: %s); retrying in %.1fs",
                        self._broker_backoff.failures, type(exc).__name__, exc,
                        wait)  # fmt: skip
            for part in self._parts.values():
                part.dropped = part.ready  # seek back to what was accepted
            return {}
        if self._broker_backoff.active:
            log.info("fetching again after %d failed attempts", self._broker_backoff.failures)
            self._broker_backoff.reset()
        return fetched

    def _contiguous(self, consumer: KafkaConsumer, part: Partition, messages: Any) -> bool:
        """Whether fetched records continue exactly where the partition's accepted ones
        end. A fetch that starts past the expected offset (records fetched before a
        seek, a position reset) is dropped and fetched again from the expected offset;
        only when the same gap comes back is it taken for a real hole in the log
        (compaction, transaction markers) and accepted."""
        expected = part.buffer.position
        if expected is None:
            return True
        first = first_offset(messages, expected)
        if first is None or first == expected or part.gap == (expected, first):
            part.gap = None
            return True
        log.warning("partition %d: fetched offset %d while %d was expected; fetching again "
                    "from %d", part.tp.partition, first, expected, expected)  # fmt: skip
        part.gap = (expected, first)
        consumer.seek(part.tp, expected)
        return False

    def _hold(self, consumer: KafkaConsumer, part: Partition) -> None:
        """Drop what was fetched for a partition the chain refuses; :meth:`_release`
        seeks it back. Fetcher processes also stop fetching it until then (the consumer
        in this process cannot be paused safely, see the module)."""
        part.dropped = True
        if isinstance(consumer, FetcherPool):
            consumer.hold(part.tp)

    def _release(self, consumer: KafkaConsumer) -> None:
        """Seek partitions the batch step takes again back to the first offset dropped."""
        batching, _ = self._chain()
        for part in self._parts.values():
            if part.dropped and part.ready and batching.accepts(part):
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
            self._unassigned_since = time.monotonic() if kind == "revoked" else None
            for tp in tps:
                if kind == "revoked":
                    dropped = self._parts.pop(tp, None)
                    if dropped is not None:
                        dropped.owned = False
                        if dropped.unstored:
                            self._revoked.append(dropped)
                            log.info("partition %s revoked with unstored records; its next "
                                     "owner redoes them from the ledger",
                                     tp.partition)  # fmt: skip
                elif tp.topic == self.config.topic:
                    self._parts[tp] = Partition.new(tp)
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
            self._parts[tp] = Partition.new(tp)
        return False

    def _retire(self, part: Partition) -> None:
        """Keep a partition of a vanished incarnation until what it fetched is stored."""
        part.owned = False
        part.buffer.forced = None  # its recorded range can never be re-read
        if part.unstored:
            self._retiring.append(part)

    def _initialise(self, consumer: KafkaConsumer) -> None:
        """Decide the read position of newly assigned partitions from the ledger rows
        and committed offsets of the topic's current incarnation."""
        waiting = [p for p in self._parts.values() if not p.ready]
        if not waiting or not self._backoff.ready():
            return
        _, inserting = self._chain()
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
            inserting.failed(exc)
            return
        if self._backoff.active and not inserting.holding:
            inserting.recovered()
        try:
            committed = {
                p.tp: _committed_offset(consumer, p.tp, incarnation)
                for p in waiting
                if p.tp.partition not in entries
            }
            # A partition read from its start is read from an offset named here, not
            # from "the beginning": records a fetch of an earlier assignment returns
            # would otherwise be taken as the start, and the offsets before them lost.
            fresh = [tp for tp, offset in committed.items() if offset is None]
            starts: dict[TopicPartition, int] = consumer.beginning_offsets(fresh) if fresh else {}
            for tp in fresh:
                committed[tp] = starts.get(tp)
        except KafkaError as exc:
            log.warning("cannot read the committed offsets of %s yet (%s: %s); retrying",
                        self.config.topic, type(exc).__name__, exc)  # fmt: skip
            return
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
                offset = committed[part.tp]
                if offset is None:  # the broker named no start: whatever comes first
                    consumer.seek_to_beginning(part.tp)
                else:
                    consumer.seek(part.tp, offset)
                    part.buffer.position = offset
            part.ready = True

    def _fence(self, part: Partition) -> None:
        """Stop writing a partition another consumer claimed; wait for the rebalance
        that takes it from this consumer (a fresh assignment claims it anew)."""
        log.warning("partition %d was claimed by another consumer; this one stops writing "
                    "it (its batch was not inserted)", part.tp.partition)  # fmt: skip
        part.fenced = True
        part.buffer = PartitionBuffer(part.tp.topic, part.tp.partition)

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        assert self._consumer is not None
        self._consumer.commit(offsets)

    def _lag(self) -> Backlog | None:
        consumer = self._consumer
        return None if consumer is None else backlog(self._parts.values(), consumer.highwater)

    def _drain(self) -> None:
        """Store what was fetched before stopping: one attempt, no waiting on a dead store."""
        _, inserting = self._chain()
        assert self._committing is not None
        self._backoff.reset()
        for _ in range(self.config.max_buffered_batches + 2):
            self._cut(final=True)
            if not inserting.holding:
                return
            inserting.flush()
            self._committing.poll()
            if self._backoff.active:
                log.warning("stopping with unstored batches; they stay uncommitted and are "
                            "redone by the next consumer")  # fmt: skip
                return


# Errors by which the broker refuses this consumer for good: retrying cannot help.
_REFUSED = (
    kafka_errors.AuthorizationError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.SaslAuthenticationFailedError,
    kafka_errors.KafkaConfigurationError,
    kafka_errors.UnsupportedVersionError,
)


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
