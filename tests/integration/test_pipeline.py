"""The ingest pipeline end to end: real broker (Tansu), real engine (chdb), no mocks.

Each test produces events, runs the consumer, and compares what the store holds to what
it produced, counted independently (event ids, hashes, partition and offset).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from agenttrail.consumers import (
    Batch,
    BatchDecoder,
    BatchWriter,
    ConsumerConfig,
    IngestPipeline,
    IngestStats,
    OffsetLedger,
)
from agenttrail.consumers._incarnation import topic_incarnation
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.embedded import EmbeddedBroker
from agenttrail.events import EventType, to_micros
from agenttrail.store import FAMILY_TABLES, Store, open_store
from tests.deadline import wait_until
from tests.integration.conftest import INGEST_KAFKA_OPTIONS

FAMILIES = [str(e) for e in EventType]


@dataclass
class Produced:
    """What a test sent, counted independently of the pipeline."""

    event_ids: dict[str, set[str]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)  # event_id → hash
    messages: int = 0

    def count(self, family: str) -> int:
        return len(self.event_ids.get(family, set()))

    @property
    def events(self) -> int:
        return sum(len(v) for v in self.event_ids.values())


def make_events(
    tasks: int, per_task: int, prefix: str = "task"
) -> list[tuple[str, dict[str, Any], bytes]]:
    """``tasks`` hash-chained tasks of ``per_task`` events cycling through the families."""
    out = []
    for t in range(tasks):
        task_id = f"{prefix}-{t}"
        prev = ""
        for seq in range(per_task):
            record = sample_record(FAMILIES[seq % len(FAMILIES)], task_id=task_id, seq=seq)
            payload = sealed(record, prev)
            prev = record["hash"]
            out.append((task_id, record, payload))
    return out


def produce(
    bootstrap: str,
    topic: str,
    events: list[tuple[str, dict[str, Any], bytes]],
    produced: Produced | None = None,
    partition: int | None = None,
    one_by_one: bool = False,
) -> Produced:
    """Send events keyed by task id and wait until the broker acknowledged all of them
    (``one_by_one``: each before the next is sent, so each is a batch of its own)."""
    produced = produced or Produced()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for task_id, record, payload in events:
            sent = producer.send(topic, key=task_id.encode(), value=payload, partition=partition)
            if one_by_one:
                sent.get(timeout=30)
            produced.event_ids.setdefault(record["event_type"], set()).add(str(record["event_id"]))
            produced.hashes[str(record["event_id"])] = record["hash"]
            produced.messages += 1
        producer.flush(timeout=30)
    finally:
        producer.close()
    return produced


def send_raw(bootstrap: str, topic: str, items: list[tuple[bytes | None, int]]) -> None:
    """Send raw values to given partitions (for bad input), in order."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for value, partition in items:
            producer.send(topic, key=b"raw", value=value, partition=partition).get(timeout=30)
    finally:
        producer.close()


def config(bootstrap: str, topic: str, group: str, **overrides: Any) -> ConsumerConfig:
    """A consumer config for tests: short batches and group timeouts."""
    values: dict[str, Any] = {
        "bootstrap": bootstrap,
        "topic": topic,
        "group": group,
        "batch_size": 200,
        "batch_ms": 100,
        "backoff_initial_s": 0.1,
        "backoff_max_s": 0.5,
        "kafka_options": dict(INGEST_KAFKA_OPTIONS),
    }
    values.update(overrides)
    return ConsumerConfig(**values)


@contextmanager
def running(cfg: ConsumerConfig, store: Store) -> Iterator[IngestStats]:
    """Run a pipeline in a thread; on exit stop it and re-raise anything it raised."""
    stop = threading.Event()
    pipeline = IngestPipeline(cfg, store)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            pipeline.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="test-ingest", daemon=True)
    thread.start()
    try:
        yield pipeline.stats
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive(), "the pipeline did not stop within 60 s of being asked"
    if errors:
        raise errors[0]


def table_counts(store: Store) -> dict[str, int]:
    """Rows per family table."""
    return {
        family: int(store.query(f"SELECT count() FROM {table}")[0][0])
        for family, table in FAMILY_TABLES.items()
    }


def stored_ids(store: Store) -> Counter[str]:
    """How often each event id is stored, across all family tables."""
    ids: Counter[str] = Counter()
    for table in FAMILY_TABLES.values():
        for (event_id,) in store.query(f"SELECT toString(event_id) FROM {table}"):
            ids[str(event_id)] += 1
    return ids


def stored_positions(store: Store) -> Counter[tuple[int, int]]:
    """How often each (partition, offset) is stored, across family tables and dead letters."""
    positions: Counter[tuple[int, int]] = Counter()
    for table in (*FAMILY_TABLES.values(), "dead_letters"):
        for p, o in store.query(f"SELECT kafka_partition, kafka_offset FROM {table}"):
            positions[(int(p), int(o))] += 1
    return positions


# --- tests ------------------------------------------------------------------------------


def wait_stored(
    stats: IngestStats, events: int, dead_letters: int = 0, timeout: float = 60
) -> None:
    def probe() -> Any:
        s = stats.snapshot()
        return s.events_total >= events and s.dead_letters >= dead_letters and s

    wait_until(
        probe, timeout=timeout, what=f"{events} events and {dead_letters} dead letters stored"
    )


def test_every_family_is_stored_as_produced(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    produced = produce(broker.bootstrap, topic, make_events(tasks=12, per_task=25))
    with running(config(broker.bootstrap, topic, unique_group), store) as stats:
        wait_stored(stats, produced.events)
        final = stats.snapshot()
    assert table_counts(store) == {f: produced.count(f) for f in FAMILIES}
    assert final.events == {f: produced.count(f) for f in FAMILIES}
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes) and set(ids.values()) == {1}
    positions = stored_positions(store)
    assert len(positions) == produced.messages and set(positions.values()) == {1}
    # The hash chain survives storage: each stored hash is the one the producer sealed.
    for table in FAMILY_TABLES.values():
        for event_id, digest in store.query(f"SELECT toString(event_id), hash FROM {table}"):
            assert produced.hashes[event_id] == digest
    # A task's events sit in one partition (keyed by task id), in order.
    rows = store.query(
        "SELECT task_id, uniqExact(kafka_partition), count() FROM tool_spans GROUP BY task_id"
    )
    assert all(parts == 1 for _, parts, _ in rows)
    # Offsets were committed only for what was stored: everything, once done.
    assert final.lag == 0
    ledger = store.query(
        "SELECT state, count() FROM ingest_ledger WHERE consumer_group = {g:String} GROUP BY state",
        {"g": unique_group},
    )
    assert dict(ledger)["after"] == final.batches


def test_state_transition_boundary_and_llm_text_round_trip(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    record = sample_record("state_transition", task_id="tsk-b", seq=0)
    call = sample_record("llm_call", task_id="tsk-b", seq=1, text_bytes=6000)
    events = [("tsk-b", record, sealed(record)), ("tsk-b", call, sealed(call, record["hash"]))]
    produce(broker.bootstrap, topic, events)
    with running(config(broker.bootstrap, topic, unique_group), store) as stats:
        wait_stored(stats, 2)
    ((has, steps, tools, entry),) = store.query(
        "SELECT has_boundary, boundary_max_steps, boundary_declared_tools, boundary_entry_json "
        "FROM state_transitions"
    )
    boundary = record["boundary"]
    assert (has, steps, tools, entry) == (
        True,
        boundary["max_steps"],
        boundary["declared_tools"],
        boundary["entry_json"],
    )
    ((messages, ts, tokens),) = store.query(
        "SELECT messages_json, toUnixTimestamp64Micro(ts), input_tokens FROM llm_calls"
    )
    assert messages == call["messages_json"]
    assert ts == to_micros(call["ts"])
    assert tokens == call["input_tokens"]


def fetch_partition(bootstrap: str, topic: str, partition: int, count: int) -> list[Any]:
    """Read the first ``count`` messages of a partition with a plain consumer (no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    messages: list[Any] = []

    def probe() -> bool:
        for batch in consumer.poll(timeout_ms=200).values():
            messages.extend(batch)
        return len(messages) >= count

    try:
        wait_until(probe, timeout=30, what=f"{count} messages fetched from partition {partition}")
    finally:
        consumer.close()
    return messages[:count]


def test_the_same_batch_inserted_twice_is_stored_once(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    events = make_events(tasks=1, per_task=40)
    produce(broker.bootstrap, topic, events, partition=0)
    send_raw(broker.bootstrap, topic, [(b"not an event", 0)])
    messages = fetch_partition(broker.bootstrap, topic, 0, 41)
    batch = Batch(topic, 0, messages[0].offset, messages[-1].offset, messages)
    writer = BatchWriter(store, OffsetLedger(store, unique_group, "test"))
    prepared = BatchDecoder().prepare(batch)
    writer.write(prepared)
    # A crash after the insert and before the commit: the batch is delivered again.
    writer.write(BatchDecoder().prepare(batch))
    assert sum(table_counts(store).values()) == 40
    assert store.query("SELECT count() FROM dead_letters")[0][0] == 1
    assert set(stored_positions(store).values()) == {1}


def test_restart_after_insert_before_commit_resumes_behind_the_batch(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    produced = produce(broker.bootstrap, topic, make_events(tasks=1, per_task=30), partition=2)
    messages = fetch_partition(broker.bootstrap, topic, 2, 30)
    incarnation = topic_incarnation(broker.bootstrap, topic)
    first = Batch(topic, 2, messages[0].offset, messages[9].offset, messages[:10], incarnation)
    # Stored and marked 'after', but the consumer died before committing the offset.
    BatchWriter(store, OffsetLedger(store, unique_group, "crashed")).write(
        BatchDecoder().prepare(first)
    )
    with running(config(broker.bootstrap, topic, unique_group, batch_size=7), store) as stats:
        wait_stored(stats, 20)
        wait_until(lambda: stats.snapshot().lag == 0, what="lag 0")
    assert sum(table_counts(store).values()) == produced.events
    assert set(stored_ids(store).values()) == {1}


def test_restart_after_crash_mid_batch_redoes_exactly_the_recorded_range(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    produced = produce(broker.bootstrap, topic, make_events(tasks=1, per_task=30), partition=1)
    messages = fetch_partition(broker.bootstrap, topic, 1, 30)
    incarnation = topic_incarnation(broker.bootstrap, topic)
    crashed = Batch(topic, 1, messages[0].offset, messages[11].offset, messages[:12], incarnation)
    prepared = BatchDecoder().prepare(crashed)
    ledger = OffsetLedger(store, unique_group, "crashed")
    b = prepared.batch
    ledger.mark(topic, 1, b.first_offset, b.last_offset, "before", incarnation=b.incarnation)
    head = prepared.inserts[0]  # the crash came after the first table's insert only
    store.insert_columns(head.table, head.column_names, head.columns, dedup_token=head.dedup_token)
    # A batch size that would cut the range differently: only an exact redo avoids duplicates.
    with running(config(broker.bootstrap, topic, unique_group, batch_size=5), store) as stats:
        wait_until(lambda: stats.snapshot().lag == 0 and stats.snapshot().batches, what="lag 0")
    assert table_counts(store) == {f: produced.count(f) for f in FAMILIES}
    assert set(stored_ids(store).values()) == {1}
    redo = store.query(
        "SELECT first_offset, last_offset FROM ingest_ledger WHERE state = 'after' "
        "AND kafka_partition = 1 ORDER BY last_offset LIMIT 1"
    )
    assert redo == [(b.first_offset, b.last_offset)]


BAD_INPUT: list[tuple[str, bytes | None]] = [
    ("bad_magic_byte", b"\x01" + sealed(sample_record("tool_span"))[1:]),
    ("unknown_schema_id", b"\x00\x00\x00\x03\xe7" + sealed(sample_record("tool_span"))[5:]),
    ("truncated", sealed(sample_record("tool_span"))[:100]),
    ("trailing_bytes", sealed(sample_record("tool_span")) + b"\x00"),
    ("oversize", sealed(sample_record("llm_call", text_bytes=9000))),
    (
        "malformed_body",
        sealed(sample_record("guard_event")).replace(b"acme", b"\xff\xfe\xfd\xfc", 1),
    ),
    ("invalid_record", sealed(sample_record("tool_span", seq=3) | {"attempt": 0})),
    ("truncated", None),
]


def produce_bad_input(
    bootstrap: str, topic: str, partition: int
) -> tuple[Produced, list[tuple[int, str, str]]]:
    """Each of ``BAD_INPUT`` between good events on one empty partition: what was
    produced, and each bad message's (offset, reason, raw bytes as hex)."""
    good = make_events(tasks=1, per_task=len(BAD_INPUT) + 1)
    produced = Produced()
    expected: list[tuple[int, str, str]] = []
    offset = 0
    for i, (reason, payload) in enumerate(BAD_INPUT):
        produce(bootstrap, topic, [good[i]], produced, partition=partition)
        send_raw(bootstrap, topic, [(payload, partition)])
        expected.append((offset + 1, reason, (payload or b"").hex().upper()))
        offset += 2
    produce(bootstrap, topic, [good[-1]], produced, partition=partition)
    return produced, expected


def test_bad_input_is_dead_lettered_with_its_reason_and_the_partition_keeps_flowing(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    produced, expected = produce_bad_input(broker.bootstrap, topic, 0)
    cfg = config(broker.bootstrap, topic, unique_group, max_payload_bytes=8192)
    with running(cfg, store) as stats:
        wait_stored(stats, produced.events, dead_letters=len(BAD_INPUT))
    rows = store.query(
        "SELECT kafka_offset, reason, hex(raw) FROM dead_letters WHERE kafka_partition = 0 "
        "ORDER BY kafka_offset"
    )
    assert [tuple(r) for r in rows] == expected
    assert sum(table_counts(store).values()) == produced.events
    assert set(stored_ids(store)) == set(produced.hashes)


def test_a_failing_store_pauses_and_retries_and_never_dead_letters_good_events(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    before = produce(broker.bootstrap, topic, make_events(tasks=4, per_task=10, prefix="a"))
    with running(config(broker.bootstrap, topic, unique_group), store) as stats:
        wait_stored(stats, before.events)
        # Take the ledger away: every batch's first write fails, as with a store outage.
        store.command("DETACH TABLE ingest_ledger")
        try:
            during = produce(broker.bootstrap, topic, make_events(tasks=4, per_task=10, prefix="b"))
            send_raw(broker.bootstrap, topic, [(b"garbage", 3)])
            wait_until(lambda: stats.snapshot().store_failures >= 3, what="3 failed attempts")
            snap = stats.snapshot()
            assert snap.retrying and snap.last_error and "ingest_ledger" in snap.last_error
            assert snap.events_total == before.events
            assert store.query("SELECT count() FROM dead_letters")[0][0] == 0
        finally:
            store.command("ATTACH TABLE ingest_ledger")
        wait_stored(stats, before.events + during.events, dead_letters=1)
        assert not stats.snapshot().retrying
    assert sum(table_counts(store).values()) == before.events + during.events
    assert set(stored_ids(store).values()) == {1}
    assert store.query("SELECT count() FROM dead_letters")[0][0] == 1


def test_two_consumers_in_one_group_share_partitions_and_store_everything_once(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store, store_dir: Path
) -> None:
    first = produce(broker.bootstrap, topic, make_events(tasks=8, per_task=10, prefix="a"))
    cfg = config(broker.bootstrap, topic, unique_group, batch_size=50)
    # chdb hosts a directory in one process only: the second consumer shares the engine
    # through its own store handle, as two threads of `agenttrail up` would.
    with open_store(data=store_dir) as second_store, running(cfg, store) as one:
        wait_stored(one, first.events)
        with running(cfg, second_store) as two:

            def split() -> bool:
                a, b = one.snapshot().partitions, two.snapshot().partitions
                return bool(a and b and not set(a) & set(b))

            wait_until(split, timeout=60, what="the group split the partitions between both")
            second = produce(
                broker.bootstrap, topic, make_events(tasks=16, per_task=10, prefix="b")
            )

            def both_done() -> bool:
                a, b = one.snapshot(), two.snapshot()
                return a.events_total + b.events_total >= first.events + second.events

            wait_until(both_done, timeout=60, what="both consumers stored everything")
            a, b = one.snapshot(), two.snapshot()
    assert b.events_total > 0 and a.events_total > first.events, (a, b)
    assert sum(table_counts(store).values()) == first.events + second.events
    assert set(stored_ids(store).values()) == {1}
    assert set(stored_positions(store).values()) == {1}
