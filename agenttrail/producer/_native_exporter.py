"""The native Kafka exporter: librdkafka (confluent-kafka) sends and receives acks.

With kafka-python, the producer's accumulator, its sender thread and every response
run in Python, on the interpreter the agent's own thread uses: while the agent emits
without pause, acknowledgements hardly get the GIL and the sustained rate halves.
librdkafka batches, sends, retries and reads the broker's answers in its own C threads;
Python only hands it each record (``produce``, about a microsecond) and takes each
delivery report on a poll thread of this exporter.

Optional: ``pip install 'agenttrail[native]'`` and ``kafka_client="confluent-kafka"``
(``AGENTTRAIL_KAFKA_CLIENT``). It implements the same :class:`~._exporter.Exporter`
protocol as :class:`~._exporter.KafkaExporter`, with the same guarantees behind the
spooling exporter: an idempotent producer with acks=all, keyed by task id and
partitioned as Kafka's default partitioner does (murmur2, so a task's events land on
the partition kafka-python would choose), only a record with an offset counts as
delivered, and a failed delivery (broker restarted, fatal producer error, timeout)
drops the producer so the next export builds a fresh one.
"""

from __future__ import annotations

import collections
import logging
import threading
from functools import partial
from typing import Any

from agenttrail.events import EVENTS_TOPIC
from agenttrail.events._clients import confluent_kafka_available
from agenttrail.producer._exporter import (
    AckCallback,
    ExporterUnavailable,
    OutRecord,
    PartialExport,
    UnconfirmedDelivery,
    report_acked,
)

log = logging.getLogger("agenttrail.producer.exporter")
rdkafka_log = logging.getLogger("agenttrail.producer.librdkafka")

POLL_S = 0.05
"""How long the poll thread waits for delivery reports in one call (GIL released)."""


class NativeClientMissing(ImportError):
    """``kafka_client="confluent-kafka"`` was asked for without the package installed."""


class DeliveryFailed(Exception):
    """librdkafka reported a record as not delivered; ``error`` is its KafkaError."""

    def __init__(self, error: Any):
        super().__init__(str(error))
        self.error = error


class _Client:
    """One librdkafka producer and the thread that serves its delivery reports."""

    def __init__(self, config: dict[str, Any]):
        from confluent_kafka import Producer

        self.fatal: str | None = None
        # Successful reports of the current poll, handed on together when it returns.
        self._acked: collections.deque[tuple[AckCallback, OutRecord]] = collections.deque()
        self.producer = Producer({**config, "error_cb": self._error, "logger": _Log(self)})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="agenttrail-rdkafka", daemon=True)
        self._thread.start()

    def _error(self, error: Any) -> None:
        # Global errors (all brokers down, authentication, fatal idempotence errors). The
        # records affected also fail one by one; a fatal error also refuses new ones.
        if error.fatal():
            self.fatal = str(error)
            log.warning("librdkafka producer hit a fatal error: %s", error)
        else:
            log.debug("librdkafka: %s", error)

    def _poll(self) -> None:
        poll = self.producer.poll
        while not self._stop.is_set():
            try:
                poll(POLL_S)
            except Exception as exc:
                # confluent-kafka raises a fatal producer error out of poll (an idempotent
                # producer the broker no longer knows, say) instead of calling error_cb.
                self.fail(f"{type(exc).__name__}: {exc}")
            self.report_acked()

    def fail(self, why: str) -> None:
        """This producer never delivers again: every record it holds, and every report
        served from now on, is a failure, so that the spooling exporter drops it and
        sends those records again from its spool with a new producer."""
        if self.fatal is None:
            self.fatal = why
            log.warning(
                "agenttrail: the librdkafka producer failed (%s); its unacknowledged "
                "records are sent again by a new producer",
                why,
            )
            self._purge()

    def delivered(self, on_done: AckCallback, rec: OutRecord, error: Any, msg: Any) -> None:
        """A delivery report (poll thread): only an offset from the broker this producer
        was built for proves the record was stored.

        A success is handed on when the poll that served it returns (:meth:`report_acked`),
        together with the others of that poll; a failure at once, after them.
        """
        if error is None and self.fatal is None:
            offset = msg.offset()
            if offset is not None and offset >= 0:
                self._acked.append((on_done, rec))
                return
        self.report_acked()
        if error is not None:
            on_done(rec, DeliveryFailed(error))
        elif self.fatal is not None:
            on_done(rec, DeliveryFailed(f"reported by a failed producer: {self.fatal}"))
        else:
            # A batch the broker answered DUPLICATE_SEQUENCE_NUMBER: librdkafka reports
            # it delivered without an offset (see UnconfirmedDelivery).
            offset = msg.offset()
            on_done(rec, UnconfirmedDelivery(f"acknowledged without an offset: {offset}"))

    def report_acked(self) -> None:
        """Hand on the successful reports served so far, in order: the records of one
        callback in one :meth:`~._exporter.BatchAckCallback.acked` call when it has one
        (the spooling exporter logs them with one write), else one call per record.
        Safe from two threads at once (poll and flush both serve reports)."""
        acked = self._acked
        on_done: AckCallback | None = None
        records: list[OutRecord] = []
        while True:
            try:
                callback, rec = acked.popleft()
            except IndexError:
                break
            if callback is not on_done:
                if on_done is not None:
                    report_acked(on_done, records)
                on_done, records = callback, []
            records.append(rec)
        if on_done is not None:
            report_acked(on_done, records)

    def _purge(self) -> None:
        """Report every queued and in-flight record as failed (at the next poll)."""
        try:
            self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        except Exception as exc:  # a broken producer may fail to purge; it is dropped anyway
            log.debug("purging the failed producer: %s", exc)

    def close(self) -> None:
        """Stop serving reports, drop what is queued or in flight, free the producer.

        Reports not served are never delivered: the spooling exporter sends those
        records again from its spool.
        """
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        self._purge()


class _Log:
    """librdkafka's log lines into Python logging; a changed cluster id fails the producer.

    A broker that answers with another cluster id than before was replaced by one that
    knows nothing of this producer (the embedded broker keeps its state in memory): it
    may hand this producer's id to another producer and answer this one's batches as
    duplicates, with offsets of other records. kafka-python reports such answers without
    an offset; librdkafka with the offsets the broker sent, so none of them can be
    trusted: the producer is dropped and its unacknowledged records sent again.
    """

    def __init__(self, client: _Client):
        self._client = client

    def log(self, level: int, msg: str, *args: Any) -> None:
        if args and args[0] == "CLUSTERID":
            self._client.fail(f"the broker's cluster id changed: {args[-1]}")
        rdkafka_log.log(level, msg, *args)


class NativeKafkaExporter:
    """Delivers records to Kafka with librdkafka's idempotent producer (acks=all).

    ``export`` never blocks: ``produce`` only queues in librdkafka's memory (the records
    are already in the spool). Delivery reports arrive on the exporter's poll thread.

    Args:
        bootstrap: ``host:port[,host:port]``.
        topic: destination topic.
        max_request_bytes: largest record the producer will send.
        linger_ms: how long the producer waits to fill a batch.
        delivery_timeout_ms: how long the producer retries a record before it fails
            and is sent again from the spool by a fresh producer.
        extra: further librdkafka settings (``security.protocol``, ``sasl.*``, ...).

    Raises:
        NativeClientMissing: confluent-kafka is not installed.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str = EVENTS_TOPIC,
        *,
        max_request_bytes: int = 5 * 1024 * 1024,
        linger_ms: int = 5,
        delivery_timeout_ms: int = 30_000,
        extra: dict[str, Any] | None = None,
    ):
        if not confluent_kafka_available():
            raise NativeClientMissing(
                "kafka_client='confluent-kafka' needs the confluent-kafka package: "
                "pip install 'agenttrail[native]', or use kafka_client='kafka-python'."
            )
        self.bootstrap = bootstrap
        self.topic = topic
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "batch.size": 1024 * 1024,
            "message.max.bytes": max_request_bytes + 1024,
            "message.timeout.ms": delivery_timeout_ms,
            "request.timeout.ms": min(delivery_timeout_ms - linger_ms - 1, 15_000),
            "queue.buffering.max.messages": 200_000,
            "reconnect.backoff.max.ms": 2000,
            "partitioner": "murmur2_random",  # Kafka's default (Java, kafka-python)
            "client.id": "agenttrail-sdk",
            "log.connection.close": False,
        }
        self._config.update(extra or {})
        self._client: _Client | None = None
        self._lock = threading.Lock()  # building and dropping the client

    @property
    def destination(self) -> str:
        """The same as the kafka-python exporter's: either client replays the other's spool."""
        return f"kafka://{self.bootstrap}/{self.topic}"

    def _ensure_client(self) -> _Client:
        with self._lock:
            if self._client is None:
                from confluent_kafka import KafkaException

                try:
                    self._client = _Client(self._config)
                except (KafkaException, ValueError, TypeError) as exc:
                    raise ExporterUnavailable(
                        f"cannot create a Kafka producer for {self.bootstrap}: {exc}"
                    ) from exc
            return self._client

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        """Queue records in order; each is reported through ``on_done`` from the poll thread.

        Raises:
            PartialExport: librdkafka's queue took the first records only.
            ExporterUnavailable: it took none, or the producer hit a fatal error (it is
                dropped; the next export builds a fresh one).
        """
        from confluent_kafka import KafkaException

        client = self._ensure_client()
        if client.fatal is not None:
            self.reset()
            raise ExporterUnavailable(f"the Kafka producer failed for good: {client.fatal}")
        produce = client.producer.produce
        report = partial(client.delivered, on_done)  # each record is its own on_delivery
        topic = self.topic
        for i, rec in enumerate(records):
            rec.report = report
            try:
                produce(topic, rec.value, rec.key, on_delivery=rec)
            except (BufferError, KafkaException) as exc:
                # BufferError: librdkafka's queue is full; KafkaException: the producer
                # refuses (fatal error, oversized record). Either way, later.
                if not isinstance(exc, BufferError):
                    self.reset()
                if i == 0:
                    raise ExporterUnavailable(
                        f"Kafka at {self.bootstrap} did not take the event: {exc}"
                    ) from exc
                raise PartialExport(i, exc) from exc

    def probe(self, timeout: float) -> bool:
        from confluent_kafka import KafkaException

        try:
            metadata = self._ensure_client().producer.list_topics(self.topic, timeout=timeout)
        except (ExporterUnavailable, KafkaException) as exc:
            log.debug("broker probe failed: %s", exc)
            return False
        topic = metadata.topics.get(self.topic)
        return topic is not None and topic.error is None and bool(topic.partitions)

    def flush(self, timeout: float) -> bool:
        """Wait until librdkafka holds no record (each was reported); True when none is left."""
        client = self._client
        if client is None:
            return True
        left = int(client.producer.flush(timeout))  # serves reports on this thread too
        client.report_acked()
        return left == 0

    def reset(self) -> None:
        """Drop the producer: its queued and in-flight records are never reported; the
        spooling exporter sends them again. The next export builds a new producer (with
        a new producer id)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def shutdown(self) -> None:
        # Records still unacked were already reported or spooled by the pipeline; do not
        # let the producer deliver them behind its back.
        self.reset()
