"""The embedded broker against real clients: topics, delivery, port clashes, the CLI."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from agenttrail.cli import main
from agenttrail.embedded import (
    BrokerError,
    EmbeddedBroker,
    embedded_consumer_config,
    ensure_topics,
    wait_for_broker,
)
from agenttrail.events import CONTROL_TOPIC, EVENTS_TOPIC
from tests.deadline import wait_until
from tests.integration.conftest import BROKER_PARTITIONS

REPO_ROOT = Path(__file__).resolve().parents[2]


def _new_topic(broker: EmbeddedBroker, prefix: str, partitions: int) -> str:
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="test-create")
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
    finally:
        admin.close()
    return topic


def _partition_counts(bootstrap: str) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-describe")
    try:
        described = admin.describe_topics([EVENTS_TOPIC, CONTROL_TOPIC])
    finally:
        admin.close()
    return {topic["name"]: len(topic["partitions"]) for topic in described}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_session_broker_answers_metadata_on_its_bootstrap(broker: EmbeddedBroker) -> None:
    assert broker.running
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.pid is not None and _pid_alive(broker.pid)
    wait_for_broker(broker.bootstrap, timeout=5.0)  # raises if nobody answers


def test_topics_exist_with_the_requested_partition_counts(broker: EmbeddedBroker) -> None:
    assert _partition_counts(broker.bootstrap) == {
        EVENTS_TOPIC: BROKER_PARTITIONS,
        CONTROL_TOPIC: 1,
    }


def test_ensure_topics_again_changes_nothing(broker: EmbeddedBroker) -> None:
    ensure_topics(broker.bootstrap, partitions=BROKER_PARTITIONS * 2)

    assert _partition_counts(broker.bootstrap) == {
        EVENTS_TOPIC: BROKER_PARTITIONS,
        CONTROL_TOPIC: 1,
    }


def test_idempotent_producer_and_consumer_group_round_trip_exactly(
    broker: EmbeddedBroker, unique_group: str
) -> None:
    run = uuid.uuid4().hex.encode()
    keys = [f"task-{n}".encode() for n in range(7)]
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    try:
        for n in range(60):
            key = keys[n % len(keys)]
            # Binary, empty-ish and large values: the bytes must come back untouched.
            value = bytes([n, 0, 255]) + os.urandom(16) + (b"x" * 100_000 if n == 13 else b"")
            producer.send(EVENTS_TOPIC, key=key, value=value, headers=[("run", run)])
            sent[key].append(value)
        producer.flush(timeout=30)
    finally:
        producer.close()
    expected_total = sum(len(values) for values in sent.values())

    consumer = KafkaConsumer(
        EVENTS_TOPIC,
        bootstrap_servers=broker.bootstrap,
        group_id=unique_group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **embedded_consumer_config(),
    )
    received: dict[bytes, list[bytes]] = defaultdict(list)
    partitions_seen: dict[bytes, set[int]] = defaultdict(set)
    next_offset: dict[TopicPartition, int] = {}

    def read_all() -> bool:
        for tp, records in consumer.poll(timeout_ms=500).items():
            next_offset[tp] = records[-1].offset + 1
            for record in records:
                if dict(record.headers).get("run") == run:
                    received[record.key].append(record.value)
                    partitions_seen[record.key].add(record.partition)
        return sum(len(values) for values in received.values()) >= expected_total

    try:
        wait_until(read_all, timeout=30.0, what=f"reading back {expected_total} records")
        consumer.commit()
        assigned = consumer.assignment()
        committed = {tp: consumer.committed(tp) for tp in next_offset}
    finally:
        consumer.close()

    # Same records, same per-key order, nothing duplicated, each key on one partition.
    assert dict(received) == dict(sent)
    assert all(len(parts) == 1 for parts in partitions_seen.values())
    assert len(assigned) == BROKER_PARTITIONS
    # The group's commit is what it consumed (not end_offsets(): see the test below).
    assert committed == next_offset


@pytest.mark.xfail(
    strict=True,
    reason="Tansu v0.6.0-510f3e2 answers ListOffsets(latest) with the last batch's base "
    "offset + 1, so end_offsets() undercounts after a multi-record batch. Fetch high "
    "watermarks are right. If this passes, Tansu was fixed: drop the marker.",
)
def test_end_offsets_count_every_record_of_a_batch(broker: EmbeddedBroker) -> None:
    topic = _new_topic(broker, "test-end-offsets", partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=500)
    try:
        for n in range(5):  # one batch of five records, offsets 0-4
            producer.send(topic, value=bytes([n]))
        producer.flush(timeout=15)
    finally:
        producer.close()
    partition = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        end = consumer.end_offsets([partition])[partition]
    finally:
        consumer.close()

    assert end == 5


def test_messages_in_topic_counts_every_record_despite_that(broker: EmbeddedBroker) -> None:
    from agenttrail.embedded._kafka_admin import messages_in_topic

    topic = _new_topic(broker, "test-messages", partitions=3)
    assert messages_in_topic(broker.bootstrap, topic) == 0
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=200)
    try:
        # Multi-record batches on partitions 0 and 1, a single record on 2.
        for n in range(1000):
            producer.send(topic, value=b"x" * 300, partition=n % 2)
        producer.send(topic, value=b"one", partition=2)
        producer.flush(timeout=15)
    finally:
        producer.close()
    assert messages_in_topic(broker.bootstrap, topic) == 1001


def test_second_broker_on_the_same_port_fails_naming_the_port(broker: EmbeddedBroker) -> None:
    clash = EmbeddedBroker(port=broker.port)

    with pytest.raises(BrokerError, match=rf"Port {broker.port} .*already in use.*--port 0"):
        clash.start(timeout=10.0)

    assert not clash.running
    assert broker.running


def test_stop_reaps_the_broker_and_frees_its_port(tmp_path: Path) -> None:
    log_path = tmp_path / "broker.log"
    embedded = EmbeddedBroker(port=0, partitions=2, log_path=log_path).start()
    pid, port = embedded.pid, embedded.port
    assert pid is not None

    embedded.stop()
    embedded.stop()  # idempotent

    assert not _pid_alive(pid)
    assert embedded.pid is None
    EmbeddedBroker(port=port).start().stop()  # the port can be bound again
    assert f"127.0.0.1:{port}" in log_path.read_text()


def test_broker_left_running_is_stopped_when_python_exits() -> None:
    script = (
        "from agenttrail.embedded import EmbeddedBroker\n"
        "broker = EmbeddedBroker().start()\n"
        "print(broker.pid, flush=True)\n"  # exits without stop(): atexit must clean up
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid = int(done.stdout.strip())

    assert not _pid_alive(pid)


# -- the `agenttrail broker` command -------------------------------------------------


class _CliProcess:
    """``python -m agenttrail.cli broker …`` with its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agenttrail.cli", "broker", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()
        self.seen: list[str] = []

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def next_line_matching(self, predicate: Any, what: str) -> str:
        def probe() -> str | None:
            while not self.lines.empty():
                line = self.lines.get()
                self.seen.append(line)
                if predicate(line):
                    return line
            if self.process.poll() is not None and self.lines.empty():
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"CLI exited {self.process.returncode}: {stderr}")
            return None

        return wait_until(probe, timeout=30.0, what=what)

    def finish(self, signum: int) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=20)
        self._reader.join(timeout=5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)


@pytest.fixture
def cli_process() -> Iterator[list[_CliProcess]]:
    started: list[_CliProcess] = []
    yield started
    for cli in started:
        cli.kill()


def _produce_and_read_back(bootstrap: str, value: bytes) -> bytes:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        written = producer.send(CONTROL_TOPIC, key=b"k", value=value).get(timeout=15)
    finally:
        producer.close()
    partition = TopicPartition(CONTROL_TOPIC, written.partition)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([partition])
        consumer.seek(partition, written.offset)
        records = wait_until(
            lambda: consumer.poll(timeout_ms=500).get(partition),
            timeout=20.0,
            what="reading the produced record back",
        )
    finally:
        consumer.close()
    return bytes(records[0].value)


def test_cli_json_prints_bootstrap_accepts_a_message_and_exits_0_on_sigint(
    tmp_path: Path, cli_process: list[_CliProcess]
) -> None:
    cli = _CliProcess("--port", "0", "--partitions", "3", "--json", "--data", str(tmp_path))
    cli_process.append(cli)
    ready = json.loads(cli.next_line_matching(lambda line: '"ready"' in line, "ready line"))
    bootstrap = ready["bootstrap"]
    assert bootstrap == f"127.0.0.1:{ready['port']}"
    assert ready["topics"] == {EVENTS_TOPIC: 3, CONTROL_TOPIC: 1}
    assert _partition_counts(bootstrap) == {EVENTS_TOPIC: 3, CONTROL_TOPIC: 1}

    value = uuid.uuid4().bytes
    assert _produce_and_read_back(bootstrap, value) == value

    assert cli.finish(signal.SIGINT) == 0
    assert json.loads(cli.seen[-1]) == {"status": "stopped"}
    assert not _pid_alive(ready["pid"])
    assert f"127.0.0.1:{ready['port']}" in (tmp_path / "broker.log").read_text()


def test_cli_text_prints_export_hint_and_exits_0_on_sigterm(
    cli_process: list[_CliProcess],
) -> None:
    cli = _CliProcess("--port", "0")
    cli_process.append(cli)
    export = cli.next_line_matching(
        lambda line: "export AGENTTRAIL_BOOTSTRAP=" in line, "export hint"
    )
    bootstrap = export.split("=", 1)[1]
    wait_for_broker(bootstrap, timeout=10.0)

    assert cli.finish(signal.SIGTERM) == 0
    assert cli.seen[-1] == "Broker stopped."
    with pytest.raises(BrokerError):
        wait_for_broker(bootstrap, timeout=0.5)


def test_cli_exits_2_naming_the_port_when_it_is_taken(broker: EmbeddedBroker) -> None:
    result = CliRunner().invoke(main, ["broker", "--port", str(broker.port)])

    assert result.exit_code == 2
    assert f"Port {broker.port}" in result.output
    assert broker.running
