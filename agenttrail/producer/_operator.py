"""The operator's end of the control protocol: publish a command, collect the answers.

Used by ``agenttrail kill``. Publishing waits for the broker's acknowledgement
(``acks=all``), so a command that returns is on the topic for every recorder, running
or yet to start. Collecting reads the topic from the command's own offset with
``assign()`` and gathers the receipts (which tasks each recorder is stopping) and the
acknowledgements (each task stopped).

Which tasks were running is only known from receipts: a recorder that is alive sends
one within a poll of hearing the command. The collector therefore waits at least
``settle_s`` for receipts, then until every task named in one is acknowledged, or
until the wait is over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agenttrail.events import CONTROL_TOPIC
from agenttrail.producer._control import ControlMessage, ControlMessageError


class ControlUnavailable(ConnectionError):
    """The control topic could not be reached; the command was not published."""


@dataclass
class Stopped:
    """One acknowledged task."""

    task_id: str
    producer_id: str
    latency_ms: float | None
    """From the recorder hearing the command to the task stopped (the recorder's clock)."""
    seen_after_ms: float
    """From publishing the command to reading this acknowledgement (the operator's clock)."""


@dataclass
class CommandOutcome:
    """What became of a command."""

    command: ControlMessage
    offset: int
    recorders: dict[str, list[str]] = field(default_factory=dict)
    """Producer id → the tasks its receipt named."""
    stopped: dict[str, Stopped] = field(default_factory=dict)
    waited_s: float = 0.0

    @property
    def pending(self) -> list[str]:
        """Tasks named in a receipt and not acknowledged."""
        named = [t for tasks in self.recorders.values() for t in tasks]
        return sorted(t for t in set(named) if t not in self.stopped)

    @property
    def complete(self) -> bool:
        return not self.pending

    def to_dict(self) -> dict[str, Any]:
        return {
            "command_id": self.command.command_id,
            "type": self.command.type,
            "scope": self.command.scope.to_dict(),
            "issued_by": self.command.issued_by,
            "reason": self.command.reason,
            "signed": self.command.signature is not None,
            "offset": self.offset,
            "recorders": len(self.recorders),
            "stopped": [s.__dict__ for s in sorted(self.stopped.values(), key=lambda s: s.task_id)],
            "not_stopped": self.pending,
            "waited_s": round(self.waited_s, 3),
            "complete": self.complete,
        }


def _kafka_errors() -> tuple[type[BaseException], ...]:
    from kafka.errors import KafkaError

    return (KafkaError, OSError)


def publish_command(
    bootstrap: str, command: ControlMessage, topic: str = CONTROL_TOPIC, timeout: float = 10.0
) -> tuple[int, int]:
    """Publish ``command``; returns its (partition, offset) once the broker stored it.

    Raises:
        ControlUnavailable: the broker did not take it within ``timeout``.
    """
    from kafka import KafkaProducer

    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            request_timeout_ms=int(timeout * 1000),
            max_block_ms=int(timeout * 1000),
        )
    except _kafka_errors() as exc:
        raise ControlUnavailable(f"Kafka at {bootstrap} is not reachable: {exc}") from None
    try:
        meta = producer.send(topic, key=command.command_id.encode(), value=command.encode()).get(
            timeout=timeout
        )
        return int(meta.partition), int(meta.offset)
    except _kafka_errors() as exc:
        raise ControlUnavailable(
            f"The command could not be published to {topic} at {bootstrap}: {exc}"
        ) from None
    finally:
        producer.close(timeout=5.0)


class AnswerCollector:
    """A reader of the control topic, connected before the command is published so that
    the time to connect is not counted as kill latency. Close it (or use ``with``).

    Raises:
        ControlUnavailable: the topic could not be reached.
    """

    def __init__(self, bootstrap: str, topic: str = CONTROL_TOPIC):
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=50,
            )
            partitions = self._consumer.partitions_for_topic(topic) or {0}
            self._tps = {p: TopicPartition(topic, p) for p in sorted(partitions)}
            self._consumer.assign(list(self._tps.values()))
            self._consumer.seek_to_end(*self._tps.values())
            for tp in self._tps.values():
                self._consumer.position(tp)  # resolve now, not after the command
        except _kafka_errors() as exc:
            raise ControlUnavailable(f"Kafka at {bootstrap} is not reachable: {exc}") from None

    def collect(
        self,
        command: ControlMessage,
        partition: int,
        offset: int,
        *,
        wait_s: float,
        settle_s: float = 1.0,
        published_at: float | None = None,
    ) -> CommandOutcome:
        """Receipts and acknowledgements of ``command`` (see :func:`collect_answers`)."""
        from kafka import TopicPartition

        start = published_at if published_at is not None else time.monotonic()
        outcome = CommandOutcome(command, offset)
        tp = self._tps.get(partition) or TopicPartition(self.topic, partition)
        if partition not in self._tps:
            self._tps[partition] = tp
            self._consumer.assign(list(self._tps.values()))
        self._consumer.seek(tp, offset)
        settle = min(settle_s, wait_s)
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= wait_s or (elapsed >= settle and outcome.complete):
                break
            for records in self._consumer.poll(timeout_ms=50).values():
                for record in records:
                    _take(record.value, outcome, start)
        outcome.waited_s = time.monotonic() - start
        return outcome

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> AnswerCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def collect_answers(
    bootstrap: str,
    command: ControlMessage,
    partition: int,
    offset: int,
    *,
    wait_s: float,
    settle_s: float = 1.0,
    topic: str = CONTROL_TOPIC,
    published_at: float | None = None,
) -> CommandOutcome:
    """Read receipts and acknowledgements of ``command`` from its offset on.

    Returns when every task named in a receipt is acknowledged and at least
    ``settle_s`` passed (receipts have had time to arrive), or when ``wait_s`` is over.
    Connects after the command was published; :class:`AnswerCollector` connects before.

    Raises:
        ControlUnavailable: the topic could not be read at all.
    """
    with AnswerCollector(bootstrap, topic) as collector:
        return collector.collect(
            command,
            partition,
            offset,
            wait_s=wait_s,
            settle_s=settle_s,
            published_at=published_at,
        )


def _take(value: bytes | None, outcome: CommandOutcome, start: float) -> None:
    try:
        message = ControlMessage.decode(value)
    except ControlMessageError:
        return
    if message.command_id != outcome.command.command_id or message.producer_id is None:
        return
    if message.type == "receipt":
        outcome.recorders.setdefault(message.producer_id, []).extend(message.tasks)
    elif message.type == "ack" and message.task_id is not None:
        outcome.stopped.setdefault(
            message.task_id,
            Stopped(
                message.task_id,
                message.producer_id,
                message.latency_ms,
                round((time.monotonic() - start) * 1000, 3),
            ),
        )
