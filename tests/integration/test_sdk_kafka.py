"""The SDK against the real broker: the shared behaviour suite, outages, and crashes.

Each test writes to its own topic and reads it back with a plain kafka-python consumer,
decoding every message; the expectations are what the test itself emitted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from agenttrail.embedded import EmbeddedBroker
from agenttrail.events import EventCodec
from agenttrail.producer import Recorder
from tests.deadline import wait_until
from tests.ports import restartable_port
from tests.sdk_behaviour import RecorderBehaviour, check_chain

PARTITIONS = 4


def make_topic(bootstrap: str) -> str:
    name = f"sdk-test-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        admin.close()
    return name


def read_topic(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float = 60.0,
    skip: Callable[[bytes], bool] | None = None,
    *,
    checkpoints: bool = False,
) -> list[Any]:
    """Every event on ``topic``, decoded, in per-partition order; waits for ``expected``.

    Messages whose value ``skip`` accepts (another producer's, not events) are left out.
    The recorders' own checkpoints are not counted, and are left out unless
    ``checkpoints`` (they take producer_seq values like any event).
    """
    codec = EventCodec()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        messages: list[Any] = []

        def take(timeout_ms: int) -> None:
            for batch in consumer.poll(timeout_ms=timeout_ms).values():
                messages.extend(m for m in batch if skip is None or not skip(m.value))

        def fetched_all() -> bool:
            take(500)
            decoded = (codec.decode(m.value)["event_type"] for m in messages)
            return sum(t != "checkpoint" for t in decoded) >= expected

        wait_until(fetched_all, timeout=timeout, what=f"{expected} messages on {topic}")
        take(300)  # give stragglers a moment: more than expected is a failure too
    finally:
        consumer.close()
    for m in messages:
        event = codec.decode(m.value)
        assert m.key == event["task_id"].encode(), "messages are keyed by task id"
    events = [codec.decode(m.value) for m in messages]
    return events if checkpoints else [e for e in events if e["event_type"] != "checkpoint"]


class TestKafka(RecorderBehaviour):
    """The shared behaviour suite, once with each Kafka client."""

    @pytest.fixture(autouse=True)
    def _broker(self, broker: EmbeddedBroker, kafka_client: str) -> None:
        self.broker = broker

    def make_recorder(self, tmp_path: Path, **settings: Any) -> Recorder:
        self.topic = make_topic(self.broker.bootstrap)
        settings.setdefault("checkpoint_interval_s", 0)  # only the final checkpoint
        return Recorder(
            bootstrap=self.broker.bootstrap,
            topic=self.topic,
            spool_dir=tmp_path / "spool",
            **settings,
        )

    def read_events(self, recorder: Recorder, expected: int) -> list[dict[str, Any]]:
        report = recorder.close(timeout=30)
        assert report.complete, report
        everything = read_topic(self.broker.bootstrap, self.topic, expected, checkpoints=True)
        assert report.delivered == len(everything)
        events = [e for e in everything if e["event_type"] != "checkpoint"]
        assert len(events) == expected
        return events


def _emit(rec: Recorder, tasks: int, spans: int, prefix: str) -> None:
    for t in range(tasks):
        with rec.task("outage", task_id=f"{prefix}-{t}") as task:
            for i in range(spans):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)


@pytest.mark.usefixtures("kafka_client")
def test_broker_absent_at_start_then_started_gets_every_event_in_order(tmp_path: Path) -> None:
    port = restartable_port()
    rec = Recorder(
        bootstrap=f"127.0.0.1:{port}", spool_dir=tmp_path / "spool", retry_backoff_s=0.05,
        checkpoint_interval_s=0,
    )  # fmt: skip
    _emit(rec, tasks=4, spans=25, prefix="absent")
    assert rec.flush(30)
    wait_until(lambda: rec.stats["spool_pending"] == 108, timeout=30, what="108 spooled events")
    with EmbeddedBroker(port=port, partitions=PARTITIONS).start() as late_broker:
        report = rec.close(timeout=60)
        assert report.complete and report.delivered == 108 + 1, report  # + final checkpoint
        events = read_topic(late_broker.bootstrap, "agenttrail.events", 108)
    assert len({e["event_id"] for e in events}) == 108
    for t in range(4):
        mine = [e for e in events if e["task_id"] == f"absent-{t}"]
        assert [e["seq"] for e in mine] == list(range(27)), "each task in order, no gap"
    assert sorted(e["producer_seq"] for e in events) == list(range(108))
    check_chain(events)


AGENT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from agenttrail.producer import Recorder
    rec = Recorder(
        bootstrap=sys.argv[1], spool_dir=sys.argv[2], retry_backoff_s=60, checkpoint_interval_s=0
    )
    for t in range(3):
        with rec.task("crash", task_id=f"crash-{t}") as task:
            for i in range(10):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)
    rec.flush(30)
    while rec.stats["spool_pending"] < 36:
        time.sleep(0.05)
    print(rec.producer_id, flush=True)
    time.sleep(600)  # killed here, spool full, never closed
    """
)


@pytest.mark.usefixtures("kafka_client")
def test_agent_killed_with_a_spool_is_delivered_by_the_next_start(tmp_path: Path) -> None:
    port = restartable_port()
    spool = tmp_path / "spool"
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT_SCRIPT, f"127.0.0.1:{port}", str(spool)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert agent.stdout is not None
        dead_producer = agent.stdout.readline().strip()
        assert dead_producer, "the agent printed its producer id once 36 events were spooled"
    finally:
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
    with EmbeddedBroker(port=port, partitions=PARTITIONS).start() as late_broker:
        rec = Recorder(bootstrap=late_broker.bootstrap, spool_dir=spool, retry_backoff_s=0.05)
        with rec.task("next_start"):
            pass
        report = rec.close(timeout=60)
        assert report.complete, report
        events = read_topic(late_broker.bootstrap, "agenttrail.events", 38)
    old = [e for e in events if e["producer_id"] == dead_producer]
    assert len(old) == 36
    assert sorted(e["producer_seq"] for e in old) == list(range(36))
    check_chain(events)
    assert not [p for p in spool.iterdir() if p.is_dir()], "replayed spools are removed"


def test_a_producer_of_another_shape_falls_back_to_send_and_delivers_everything(
    broker: EmbeddedBroker,
) -> None:
    """The exporter's direct append knows kafka-python 3's accumulator; a release whose
    ``append`` takes other arguments must cost the fast path, never an event."""
    import threading

    from agenttrail.producer._exporter import KafkaExporter, OutRecord

    topic = f"shape-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.wait_for_topics([topic], timeout_ms=30_000)
    admin.close()
    exporter = KafkaExporter(broker.bootstrap, topic)
    producer = exporter._ensure_producer()
    real_append = producer._accumulator.append
    calls = {"send": 0}

    # A release whose append needs an argument the direct path does not pass (send does).
    def other_shape(tp: Any, ts: Any, key: Any, value: Any, headers: Any, *,
                    abort_on_new_batch: bool) -> Any:  # fmt: skip
        calls["send"] += 1
        return real_append(tp, ts, key, value, headers, abort_on_new_batch=abort_on_new_batch)

    producer._accumulator.append = other_shape
    acked: list[OutRecord] = []
    done = threading.Event()
    records = [OutRecord(f"task-{i % 5}".encode(), f"value-{i}".encode()) for i in range(50)]

    def on_done(rec: OutRecord, error: BaseException | None) -> None:
        assert error is None, error
        acked.append(rec)
        if len(acked) == len(records):
            done.set()

    try:
        exporter.export(records, on_done)
        assert exporter.flush(30)
        assert done.wait(30), f"{len(acked)} of {len(records)} acknowledged"
    finally:
        exporter.shutdown()
    assert calls["send"] >= len(records)  # every record went through send()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)  # fmt: skip
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    values = sorted(m.value for m in consumer)
    consumer.close()
    assert values == sorted(r.value for r in records)
