"""The ingest chain under broker trouble and backpressure (issue 8 items 1 and 3).

Fetch errors are injected into a real kafka-python consumer talking to the embedded
broker (its ``poll`` raises kafka-python's own error types for a while); everything
else — the store, the ledger, the commits — is real. Ground truth is what each test
produced, counted by event id and by (partition, offset).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka import errors as kafka_errors

from agenttrail.consumers import BrokerRefused, ConsumerError, IngestPipeline, IngestStats
from agenttrail.consumers._chain import BatchStep, DecodeStep, MessageRejected, Partition
from agenttrail.embedded import EmbeddedBroker
from agenttrail.store import Store
from tests.deadline import wait_until
from tests.integration.test_pipeline import (
    Produced,
    config,
    make_events,
    produce,
    stored_ids,
    stored_positions,
)


class _FaultyPipeline(IngestPipeline):
    """A pipeline whose Kafka consumer's ``poll`` raises ``fault()`` while it returns an
    error (``None`` lets the real poll run)."""

    fault: Callable[[], kafka_errors.KafkaError | None] = staticmethod(lambda: None)

    def _open_consumer(self) -> KafkaConsumer:
        consumer = super()._open_consumer()
        real = consumer.poll

        def poll(*args: Any, **kwargs: Any) -> Any:
            error = self.fault()
            if error is not None:
                raise error
            return real(*args, **kwargs)

        consumer.poll = poll  # type: ignore[method-assign]
        return consumer


def _run(pipeline: IngestPipeline, stop: threading.Event, errors: list[BaseException]) -> None:
    try:
        pipeline.run(stop)
    except BaseException as exc:
        errors.append(exc)


def test_fetch_errors_are_retried_and_lose_or_copy_nothing(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    produced = Produced()
    produce(broker.bootstrap, topic, make_events(4, 30, prefix="a"), produced)
    pipeline = _FaultyPipeline(config(broker.bootstrap, topic, unique_group), store)
    raised = {"n": 0}
    window = threading.Event()  # set: every poll fails

    def fault() -> kafka_errors.KafkaError | None:
        if window.is_set() or raised["n"] < 3:
            raised["n"] += 1
            return kafka_errors.KafkaConnectionError("injected: connection reset")
        return None

    pipeline.fault = fault
    stop, errors = threading.Event(), []
    thread = threading.Thread(target=_run, args=(pipeline, stop, errors), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(stored_ids(store)) >= 60, timeout=60, what="half stored")
        window.set()  # an outage while records are buffered and batches in flight
        produce(broker.bootstrap, topic, make_events(4, 30, prefix="b"), produced)
        wait_until(lambda: raised["n"] > 10, timeout=30, what="polls failing")
        window.clear()
        wait_until(
            lambda: (
                set(stored_ids(store)) >= set(produced.hashes)
                and pipeline.stats.snapshot().lag == 0
            ),
            timeout=90,
            what="everything stored after the fetch errors",
        )
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes) and set(ids.values()) == {1}
    positions = stored_positions(store)
    assert len(positions) == produced.messages and set(positions.values()) == {1}
    snap = pipeline.stats.snapshot()
    assert snap.broker_failures == raised["n"]
    assert snap.last_broker_error is not None and "KafkaConnectionError" in snap.last_broker_error


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.TopicAuthorizationFailedError("injected"),
        kafka_errors.GroupAuthorizationFailedError("injected"),
    ],
    ids=["topic-acl", "group-acl"],
)
def test_a_broker_that_refuses_for_good_ends_the_run_with_a_clear_error_after_storing(
    broker: EmbeddedBroker,
    topic: str,
    unique_group: str,
    store: Store,
    error: kafka_errors.KafkaError,
) -> None:
    produced = Produced()
    produce(broker.bootstrap, topic, make_events(2, 20), produced)
    pipeline = _FaultyPipeline(config(broker.bootstrap, topic, unique_group), store)
    refuse = threading.Event()
    pipeline.fault = lambda: error if refuse.is_set() else None
    stop, errors = threading.Event(), []
    thread = threading.Thread(target=_run, args=(pipeline, stop, errors), daemon=True)
    thread.start()
    try:
        wait_until(lambda: set(stored_ids(store)) >= set(produced.hashes), timeout=60,
                   what="everything stored before the refusal")  # fmt: skip
        refuse.set()
        thread.join(60)
    finally:
        stop.set()
        thread.join(60)
    assert len(errors) == 1 and isinstance(errors[0], BrokerRefused), errors
    refused = errors[0]
    assert isinstance(refused, ConsumerError) and refused.__cause__ is error
    assert broker.bootstrap in str(refused) and unique_group in str(refused)
    assert "ACL" in str(refused) and type(error).__name__ in str(refused)
    assert set(stored_ids(store).values()) == {1}


class _Refusing:
    """A next step that takes what ``accepts`` allows (the test sets it), keeping it."""

    def __init__(self) -> None:
        self.taken: list[Any] = []
        self.idle = False

    def accepts(self, part: Partition) -> bool:
        return False

    def submit(self, part: Partition, item: Any) -> None:
        if not self.accepts(part):
            raise MessageRejected("full")
        self.taken.append(item)


class _Record:
    def __init__(self, offset: int):
        self.offset, self.key, self.value, self.timestamp = offset, None, b"x" * 10, 0


def test_backpressure_holds_only_the_refused_partition_and_never_decodes_twice() -> None:
    from kafka import TopicPartition

    from agenttrail.consumers import ConsumerConfig
    from agenttrail.events._backoff import Backoff

    cfg = ConsumerConfig(bootstrap="unused", topic="t", group="g", batch_size=5, batch_ms=60_000,
                         max_buffered_batches=2)  # fmt: skip
    decoded: list[Any] = []

    class _CountingDecoder:
        def prepare(self, batch: Any) -> Any:
            decoded.append((batch.partition, batch.first_offset))
            return batch

    insert = _Refusing()
    batching = BatchStep(cfg, Backoff(0.1, 1.0), DecodeStep(_CountingDecoder(), insert))  # type: ignore[arg-type]
    held, free = Partition.new(TopicPartition("t", 0)), Partition.new(TopicPartition("t", 1))
    for part in (held, free):
        part.ready = True
    # The insert step refuses partition 0 only: its records fill its buffer and then the
    # batch step refuses them, while partition 1 keeps flowing.
    insert.accepts = lambda part: part is free  # type: ignore[method-assign]
    offset = 0
    while batching.accepts(held):
        batching.submit(held, [_Record(offset + i) for i in range(5)])
        offset += 5
        batching.poll([held, free])
    with pytest.raises(MessageRejected):
        batching.submit(held, [_Record(offset)])
    for n in range(4):
        batching.submit(free, [_Record(n * 5 + i) for i in range(5)])
        batching.poll([held, free])
    assert len(held.buffer) == cfg.batch_size * cfg.max_buffered_batches
    assert [first for part, first in decoded if part == 1] == [0, 5, 10, 15]
    assert not any(part == 0 for part, _ in decoded), "a refused batch was decoded"
    # Released: its batches go on in offset order, each decoded once.
    insert.accepts = lambda part: True  # type: ignore[method-assign]
    batching.poll([held, free])
    batching.poll([held, free])
    assert [first for part, first in decoded if part == 0] == [0, 5]
    assert sorted(decoded) == sorted(set(decoded))


def test_an_idle_writer_gets_a_sizeable_batch_at_once_and_a_busy_one_full_batches() -> None:
    from kafka import TopicPartition

    from agenttrail.consumers import ConsumerConfig
    from agenttrail.events._backoff import Backoff

    cfg = ConsumerConfig(bootstrap="unused", topic="t", group="g", batch_size=100,
                         min_batch_size=10, batch_ms=60_000)  # fmt: skip
    insert = _Refusing()
    insert.accepts = lambda part: True  # type: ignore[method-assign]

    class _Passing:
        def prepare(self, batch: Any) -> Any:
            return batch

    batching = BatchStep(cfg, Backoff(0.1, 1.0), DecodeStep(_Passing(), insert))  # type: ignore[arg-type]
    part = Partition.new(TopicPartition("t", 0))
    part.ready = True
    ranges = lambda: [(b.first_offset, b.last_offset) for b in insert.taken]  # noqa: E731

    insert.idle = True
    batching.submit(part, [_Record(i) for i in range(9)])
    batching.poll([part])
    assert ranges() == [], "a trickle below min_batch_size waits for batch_ms"
    batching.submit(part, [_Record(9)])
    batching.poll([part])
    assert ranges() == [(0, 9)], "an idle writer takes min_batch_size at once"

    insert.idle = False
    batching.submit(part, [_Record(10 + i) for i in range(99)])
    batching.poll([part])
    assert ranges() == [(0, 9)], "a busy writer's next batch waits for batch_size"
    batching.submit(part, [_Record(109 + i) for i in range(11)])
    batching.poll([part])
    assert ranges() == [(0, 9), (10, 109)]
    insert.idle = True
    batching.poll([part])
    assert ranges() == [(0, 9), (10, 109), (110, 119)]
    assert len(part.buffer) == 0


def test_stats_count_fetch_failures() -> None:
    stats = IngestStats()
    stats.broker_failed("KafkaConnectionError: x")
    snap = stats.snapshot()
    assert (
        snap.broker_failures == 1 and snap.to_dict()["last_broker_error"] == snap.last_broker_error
    )
