"""Where sealed events go: the exporter interface and the Kafka exporter.

The pipeline hands an exporter framed records in order; the exporter delivers them
asynchronously and reports, per record, acknowledged or failed. Exporters never
raise into agent code: the pipeline calls them from its own thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from agenttrail.events import EVENTS_TOPIC

log = logging.getLogger("agenttrail.producer.exporter")


def _unreported(record: OutRecord, *outcome: Any) -> None:
    raise RuntimeError("a client reported a record that was never handed to it")


@dataclass(slots=True)
class OutRecord:
    """One framed event on its way out: Kafka key (the task id) and value.

    A record is its own delivery callback: a Kafka client takes one callable per record
    (librdkafka's ``on_delivery``, a kafka-python future's callback), and the exporter
    hands it the record, having set ``report`` to its handler of the batch; calling the
    record calls ``report(record, *outcome)``. No callable is made per record: a record
    in flight is long-lived, and every such object is one more for each full garbage
    collection to walk.
    """

    key: bytes
    value: bytes
    report: Callable[..., None] = field(default=_unreported, repr=False, compare=False)

    def __call__(self, *outcome: Any) -> None:
        self.report(self, *outcome)


AckCallback = Callable[[OutRecord, BaseException | None], None]
"""Called once per exported record: with None when acked, with the error when failed.

It may also have ``acked(records)`` (:class:`BatchAckCallback`): an exporter that learns
of several acknowledgements at once may report them in one call instead.
"""


class BatchAckCallback(Protocol):
    """An :data:`AckCallback` that also takes acknowledgements together.

    ``acked(records)`` stands for ``callback(record, None)`` of each record, in order;
    once it returns, every one of them was taken as acknowledged. The spooling exporter
    logs them in its ack log with one write instead of one per record.
    """

    def __call__(self, record: OutRecord, error: BaseException | None) -> None: ...

    def acked(self, records: list[OutRecord]) -> None: ...


def report_acked(on_done: AckCallback, records: list[OutRecord]) -> None:
    """Report ``records`` acknowledged to ``on_done``: in one ``acked`` call when it is a
    :class:`BatchAckCallback`, else one call per record, in order."""
    many = getattr(on_done, "acked", None)
    if many is not None:
        many(records)
    else:
        for rec in records:
            on_done(rec, None)


class ExporterUnavailable(Exception):
    """The destination cannot take records now (broker unreachable, buffer full)."""


class Exporter(Protocol):
    """Destination of sealed events.

    ``export`` must not block for long; it raises :class:`ExporterUnavailable` when the
    destination cannot take the records now (:class:`PartialExport` when it took only
    the first ones) and otherwise reports every record through ``on_done`` exactly
    once, possibly later and from another thread.

    An exporter may also have ``reset()``: called after a delivery failed, it drops
    the client so that the next ``export`` starts a fresh one (the Kafka exporter
    rebuilds its producer: a producer that hit a fatal error never sends again).
    """

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None: ...

    def probe(self, timeout: float) -> bool:
        """True when the destination is reachable; may block up to ``timeout``."""
        ...

    def flush(self, timeout: float) -> bool:
        """Wait until every exported record is reported; True when none is left."""
        ...

    def shutdown(self) -> None: ...


class KafkaExporter:
    """Delivers records to Kafka with an idempotent producer (acks=all), keyed by task id.

    The producer is created lazily on the pipeline thread, so an absent broker never
    delays the agent; until it exists, :meth:`export` raises :class:`ExporterUnavailable`.

    Args:
        bootstrap: ``host:port[,host:port]``.
        topic: destination topic.
        max_request_bytes: largest record the producer will send.
        linger_ms: how long the producer waits to fill a batch.
        block_ms: how long ``send`` may block on a full buffer or missing metadata
            before the records are spooled instead.
        delivery_timeout_ms: how long the producer retries a record before it fails
            and is spooled.
        extra: further kafka-python producer settings (security, client id, ...).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str = EVENTS_TOPIC,
        *,
        max_request_bytes: int = 5 * 1024 * 1024,
        linger_ms: int = 5,
        block_ms: int = 1000,
        delivery_timeout_ms: int = 30_000,
        extra: dict[str, Any] | None = None,
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "batch_size": 256 * 1024,
            "max_request_size": max_request_bytes,
            "max_block_ms": block_ms,
            "delivery_timeout_ms": delivery_timeout_ms,
            "request_timeout_ms": min(delivery_timeout_ms - linger_ms - 1, 15_000),
            "bootstrap_timeout_ms": 2000,
            "reconnect_backoff_max_ms": 2000,
            "client_id": "agenttrail-sdk",
        }
        self._config.update(extra or {})
        self._producer: Any = None
        self._partitions = 0
        self._partitions_checked = 0.0
        self._partition_of: dict[bytes, int] = {}
        self._direct_for: Any = None  # the producer _direct was built for
        self._direct: Callable[[bytes, bytes, int], Any] | None = None

    @property
    def destination(self) -> str:
        """Where records go, as recorded beside a spool: ``kafka://<bootstrap>/<topic>``."""
        return f"kafka://{self.bootstrap}/{self.topic}"

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            try:
                self._producer = KafkaProducer(**self._config)
            except KafkaError as exc:
                raise ExporterUnavailable(
                    f"Kafka at {self.bootstrap} is not reachable: {exc}"
                ) from exc
        return self._producer

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        """Send records in order; raises ExporterUnavailable with the unsent tail.

        Raises:
            PartialExport: some records were handed to the producer, the rest were not.
            ExporterUnavailable: none was handed over.
        """
        from kafka.errors import KafkaError, KafkaTimeoutError

        producer = self._ensure_producer()
        partition_of = self._partition_map(producer)
        complete = _done if self._config.get("acks") in (0, "0") else _done_with_offset
        append = self._direct_append(producer) if partition_of is not None else None
        small = self._config["max_request_size"] - 1024
        report = partial(complete, on_done)  # each record is its future's callback
        for i, rec in enumerate(records):
            try:
                future = None
                if append is not None and partition_of is not None and len(rec.value) < small:
                    try:
                        future = append(rec.key, rec.value, partition_of(rec.key))
                    except (TypeError, AttributeError, IndexError) as exc:
                        # Another kafka-python than the one this path knows: use send().
                        log.warning("appending to the Kafka producer directly failed (%s: "
                                    "%s); sending through KafkaProducer.send from now on",
                                    type(exc).__name__, exc)  # fmt: skip
                        append = self._direct = None
                if future is None:
                    future = producer.send(
                        self.topic,
                        key=rec.key,
                        value=rec.value,
                        partition=partition_of(rec.key) if partition_of else None,
                    )
            except KafkaError as exc:
                if not isinstance(exc, KafkaTimeoutError):
                    # Not a full buffer or missing metadata: the producer is in an error
                    # state (fatal for an idempotent producer). Build a new one next time.
                    self.reset()
                if i == 0:
                    raise ExporterUnavailable(
                        f"Kafka at {self.bootstrap} did not take the event: {exc}"
                    ) from exc
                raise PartialExport(i, exc) from exc
            rec.report = report
            both = getattr(future, "_add_cb_eb", None)
            if both is not None:
                # kafka-python's own one-lock registration of a callback and an errback
                # (add_both builds two partials and takes the future's lock twice).
                both(rec, rec)
            else:
                future.add_both(rec)

    def _direct_append(self, producer: Any) -> Callable[[bytes, bytes, int], Any] | None:
        """``send`` for what this exporter sends, straight into the producer's accumulator.

        ``KafkaProducer.send`` spends about a quarter of its time (some 5 µs a record, on
        the thread that shares the GIL with the agent) on what these records never need:
        serialisers, header checks, the metadata and partition lookups (the partition is
        known here), a size estimate (records near the request limit take ``send``),
        and a debug line formatted whether or not it is logged. This does what ``send``
        then does — append to the partition's batch, wake the sender for a new or full
        batch — with the same future. None (use ``send``) when the producer is not the
        kafka-python 3 shape this knows, is transactional, or has serialisers.
        """
        if producer is not self._direct_for:
            self._direct_for = producer
            self._direct = self._build_direct_append(producer)
        return self._direct

    def _build_direct_append(self, producer: Any) -> Callable[[bytes, bytes, int], Any] | None:
        from kafka.errors import IllegalStateError
        from kafka.structs import TopicPartition

        accumulator = getattr(producer, "_accumulator", None)
        sender = getattr(producer, "_sender", None)
        transactions = getattr(producer, "_transaction_manager", None)
        config = getattr(producer, "config", {})
        if (
            accumulator is None
            or sender is None
            or not hasattr(producer, "_closed")
            or (transactions is not None and transactions.is_transactional())
            or config.get("key_serializer") is not None
            or config.get("value_serializer") is not None
        ):
            return None
        topic = self.topic
        partitions: dict[int, Any] = {}

        def append(key: bytes, value: bytes, partition: int) -> Any:
            if producer._closed:
                raise IllegalStateError("KafkaProducer already closed!")
            tp = partitions.get(partition)
            if tp is None:
                tp = partitions[partition] = TopicPartition(topic, partition)
            result = accumulator.append(tp, None, key, value, [])
            if result[1] or result[2]:  # the batch is full, or a new one was started
                sender.wakeup()
            return result[0]

        return append

    def _partition_map(self, producer: Any) -> Callable[[bytes], int] | None:
        """The key → partition function of Kafka's default partitioner, memoised per key.

        The producer would hash every key in pure Python; a task's events share a key,
        so the partition is computed once per task. The partition count is re-read
        every 30 seconds.
        """
        from kafka.errors import KafkaError
        from kafka.partitioner.default import murmur2

        now = time.monotonic()
        if now - self._partitions_checked > 30.0:
            self._partitions_checked = now
            try:
                count = len(producer.partitions_for(self.topic) or ())
            except KafkaError:
                count = 0
            if count != self._partitions:
                self._partitions = count
                self._partition_of.clear()
        count = self._partitions
        if not count:
            return None
        cache = self._partition_of
        if len(cache) > 100_000:
            cache.clear()

        def partition_of(key: bytes) -> int:
            p = cache.get(key)
            if p is None:
                p = cache[key] = (murmur2(key) & 0x7FFFFFFF) % count
            return p

        return partition_of

    def probe(self, timeout: float) -> bool:
        from kafka.errors import KafkaError

        try:
            producer = self._ensure_producer()
            partitions = producer.partitions_for(self.topic)
        except (ExporterUnavailable, KafkaError) as exc:
            log.debug("broker probe failed: %s", exc)
            return False
        return bool(partitions)

    def flush(self, timeout: float) -> bool:
        from kafka.errors import KafkaError

        if self._producer is None:
            return True
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError:
            return False
        return True

    def reset(self) -> None:
        """Drop the producer (records it still holds fail at once); the next export
        builds a new one with a new producer id."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # a broken producer may fail to close; it is gone anyway
                log.debug("closing the failed producer: %s", exc)

    def shutdown(self) -> None:
        if self._producer is not None:
            # Records still unacked were already reported or spooled by the pipeline;
            # do not let the producer deliver them behind its back.
            self._producer.close(timeout=0)
            self._producer = None


def kafka_exporter(client: str, bootstrap: str, topic: str = EVENTS_TOPIC) -> Exporter:
    """The Kafka exporter of the ``kafka_client`` setting: ``kafka-python`` or
    ``confluent-kafka`` (the native one, :mod:`._native_exporter`).

    Raises:
        RecorderConfigError: confluent-kafka is asked for and not installed, or
            ``client`` names neither.
    """
    from agenttrail.producer._config import RecorderConfigError

    if client == "kafka-python":
        return KafkaExporter(bootstrap, topic)
    if client == "confluent-kafka":
        from agenttrail.producer._native_exporter import NativeClientMissing, NativeKafkaExporter

        try:
            return NativeKafkaExporter(bootstrap, topic)
        except NativeClientMissing as exc:
            raise RecorderConfigError(
                f"kafka_client={client!r} (AGENTTRAIL_KAFKA_CLIENT): {exc}"
            ) from None
    raise RecorderConfigError(
        f"kafka_client={client!r} (AGENTTRAIL_KAFKA_CLIENT) is not allowed: one of "
        "kafka-python, confluent-kafka."
    )


class PartialExport(ExporterUnavailable):
    """The first ``handed_over`` records were sent; the rest must be spooled."""

    def __init__(self, handed_over: int, cause: BaseException):
        super().__init__(f"broker stopped taking events after {handed_over}: {cause}")
        self.handed_over = handed_over


class UnconfirmedDelivery(Exception):
    """The broker acknowledged a record without giving it an offset.

    An idempotent producer's batch answered DUPLICATE_SEQUENCE_NUMBER comes back with
    offset -1, and kafka-python reports it as delivered. That answer is only true when the
    broker still knows this producer; a broker restarted without its state (the embedded
    broker keeps it in memory) hands the same producer ids out again, takes another
    producer's batches for ours and stores nothing. Such a record is therefore sent again
    by a new producer: a copy that was in fact stored is dropped by the consumer, which
    keeps one row per event id.
    """


def _done(on_done: AckCallback, rec: OutRecord, outcome: Any) -> None:
    """A record's outcome with acks=0: no answer to check, success is all there is."""
    on_done(rec, outcome if isinstance(outcome, BaseException) else None)


def _done_with_offset(on_done: AckCallback, rec: OutRecord, outcome: Any) -> None:
    """A record's outcome when the broker answers: only an offset proves it was stored."""
    if isinstance(outcome, BaseException):
        on_done(rec, outcome)
    elif getattr(outcome, "offset", 0) < 0:
        on_done(rec, UnconfirmedDelivery(f"acknowledged without an offset: {outcome}"))
    else:
        on_done(rec, None)
