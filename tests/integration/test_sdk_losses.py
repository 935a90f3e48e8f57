"""The SDK's three ways of losing events (issue 9), each staged against the real broker.

* the broker SIGKILLed and restarted on the same port: the producer hits a fatal error
  (its producer id is unknown to the new broker) and must be rebuilt;
* the agent SIGKILLed during a broker outage: what it recorded and flushed meanwhile
  must be on disk, not in a producer's memory;
* an emitting agent SIGKILLed with the broker up, then its spool replayed by the next
  process: each event_id reaches the topic, and a resend is byte-identical;
* a restarted broker handing the agent's producer id to another producer: its sends are
  then answered "duplicate" with no offset, which the SDK must not count as delivered.

The embedded broker keeps messages in memory, so a restarted broker starts empty: the
expectations count what the test emitted after the restart (or during the outage).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from agenttrail.embedded import EmbeddedBroker
from agenttrail.producer import Recorder
from tests.deadline import wait_until
from tests.integration.test_sdk_kafka import PARTITIONS, read_topic
from tests.ports import restartable_port
from tests.sdk_behaviour import check_chain

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("kafka_client")  # each test with each Kafka client


def _emit(rec: Recorder, prefix: str, tasks: int, spans: int) -> int:
    for t in range(tasks):
        with rec.task("loss", task_id=f"{prefix}-{t}") as task:
            for i in range(spans):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)
    return tasks * (spans + 2)


def _kill(broker: EmbeddedBroker) -> None:
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not broker.running, timeout=30, what="the broker to die")
    broker.stop()


def test_a_broker_killed_and_restarted_on_its_port_gets_every_later_event(
    tmp_path: Path,
) -> None:
    port = restartable_port()
    first = EmbeddedBroker(port=port, partitions=PARTITIONS).start()
    rec = Recorder(
        bootstrap=first.bootstrap, spool_dir=tmp_path / "spool", retry_backoff_s=0.05,
        checkpoint_interval_s=0,
    )  # fmt: skip
    try:
        before = _emit(rec, "before", tasks=2, spans=10)
        wait_until(
            lambda: rec.stats["delivered"] == before, timeout=60, what="delivery to broker 1"
        )
        _kill(first)
        during = _emit(rec, "during", tasks=3, spans=20)
        assert rec.flush(30), "the outage's events are on disk"
        with EmbeddedBroker(port=port, partitions=PARTITIONS).start() as second:
            after = _emit(rec, "after", tasks=3, spans=20)
            report = rec.close(timeout=90)
            assert report.complete, report
            events = read_topic(second.bootstrap, "agenttrail.events", during + after)
    finally:
        rec.close(timeout=1)
        first.stop()
    ids = Counter(e["event_id"] for e in events)
    assert len(events) == during + after and max(ids.values()) == 1, "each event exactly once"
    assert {e["task_id"].split("-")[0] for e in events} == {"during", "after"}
    assert sorted(e["producer_seq"] for e in events) == list(range(before, before + during + after))
    check_chain(events)


def test_an_ack_without_an_offset_after_a_broker_restart_is_not_taken_as_delivered(
    tmp_path: Path,
) -> None:
    # The embedded broker numbers producer ids from 1 again after a restart. The agent's
    # producer (id 1 on the first broker) meets another producer that the new broker also
    # gave id 1 and that has already sent more: the broker answers the agent's next batches
    # DUPLICATE_SEQUENCE_NUMBER with offset -1 and stores nothing; kafka-python reports that
    # as success. Every event the agent records after the restart must still arrive.
    port = restartable_port()
    first = EmbeddedBroker(port=port, partitions=PARTITIONS).start()
    rec = Recorder(bootstrap=first.bootstrap, spool_dir=tmp_path / "spool", retry_backoff_s=0.05)
    other: KafkaProducer | None = None
    try:
        before = _emit(rec, "before", tasks=2, spans=10)
        wait_until(
            lambda: rec.stats["delivered"] == before, timeout=60, what="delivery to broker 1"
        )
        _kill(first)
        with EmbeddedBroker(port=port, partitions=PARTITIONS).start() as second:
            other = KafkaProducer(
                bootstrap_servers=second.bootstrap, enable_idempotence=True, acks="all"
            )
            for p in range(PARTITIONS):  # further ahead than the agent on every partition
                for _ in range(before + 10):
                    other.send("agenttrail.events", b"other", key=b"o", partition=p)
            other.flush(60)
            pid = other._transaction_manager.producer_id_and_epoch.producer_id
            after = _emit(rec, "after", tasks=3, spans=20)
            report = rec.close(timeout=90)
            assert report.complete, report
            events = read_topic(
                second.bootstrap, "agenttrail.events", after, skip=lambda v: v == b"other"
            )
    finally:
        rec.close(timeout=1)
        if other is not None:
            other.close(timeout=5)
        first.stop()
    assert pid == 1, "the staging needs the new broker to reuse the agent's producer id"
    ids = Counter(e["event_id"] for e in events)
    assert len(events) == after and max(ids.values()) == 1, "each later event exactly once"
    assert {e["task_id"].split("-")[0] for e in events} == {"after"}
    check_chain(events)


OUTAGE_AGENT = textwrap.dedent(
    """
    import sys
    from agenttrail.producer import Recorder
    rec = Recorder(
        bootstrap=sys.argv[1], spool_dir=sys.argv[2], retry_backoff_s=0.05,
        checkpoint_interval_s=0,
    )
    emitted = 0
    def burst(prefix):
        global emitted
        with rec.task("outage", task_id=f"{prefix}-{emitted}") as task:
            for i in range(48):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)
        emitted += 50
    burst("up")
    while rec.stats["delivered"] < 50:
        rec.flush(1)
    print("up", rec.producer_id, flush=True)
    sys.stdin.readline()  # the test kills the broker, then says go
    n = 0
    while True:
        burst(f"down{n}")
        n += 1
        flushed = rec.flush(5)
        print("flushed", emitted, flushed, rec.stats["inflight"], rec.stats["spool_pending"],
              flush=True)
    """
)


def test_an_agent_killed_during_an_outage_loses_nothing_it_flushed(tmp_path: Path) -> None:
    port = restartable_port()
    spool = tmp_path / "spool"
    first = EmbeddedBroker(port=port, partitions=PARTITIONS).start()
    agent = subprocess.Popen(
        [sys.executable, "-c", OUTAGE_AGENT, first.bootstrap, str(spool)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines: list[list[str]] = []
    try:
        assert agent.stdin is not None and agent.stdout is not None
        up, dead_producer = agent.stdout.readline().split()
        assert up == "up"
        _kill(first)
        agent.stdin.write("go\n")
        agent.stdin.flush()
        for _ in range(3):  # three bursts recorded and flushed during the outage
            lines.append(agent.stdout.readline().split())
    finally:
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        first.stop()
    flushed_through = int(lines[-1][1])  # events 0..flushed_through-1; the first 50 were acked
    assert lines[-1][2] == "True", f"flush() said the events were on disk: {lines}"
    with EmbeddedBroker(port=port, partitions=PARTITIONS).start() as second:
        rec = Recorder(bootstrap=second.bootstrap, spool_dir=spool, retry_backoff_s=0.05)
        report = rec.close(timeout=60)
        assert report.complete, report
        expected = flushed_through - 50
        events = read_topic(second.bootstrap, "agenttrail.events", expected)
    mine = [e for e in events if e["producer_id"] == dead_producer]
    got = sorted(e["producer_seq"] for e in mine)
    assert got[:expected] == list(range(50, flushed_through)), (
        "every event recorded and flushed during the outage was on disk when the agent died"
    )
    assert len(set(e["event_id"] for e in mine)) == len(mine)


STREAM_AGENT = textwrap.dedent(
    """
    import sys
    from agenttrail.producer import Recorder
    rec = Recorder(bootstrap=sys.argv[1], topic=sys.argv[2], spool_dir=sys.argv[3])
    print(rec.producer_id, flush=True)
    n = 0
    while True:
        with rec.task("stream", task_id=f"stream-{n}") as task:
            for i in range(20):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)
        n += 1
        if n % 10 == 0:
            rec.flush(5)
            print(n, rec.stats["delivered"], flush=True)
    """
)


def test_an_agent_killed_mid_stream_then_replayed_leaves_each_event_once(
    broker: EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    agent = subprocess.Popen(
        [sys.executable, "-c", STREAM_AGENT, broker.bootstrap, topic, str(spool)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert agent.stdout is not None
        dead_producer = agent.stdout.readline().strip()
        progress = [agent.stdout.readline().split() for _ in range(3)]
    finally:
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
    tasks_flushed = int(progress[-1][0])
    rec = Recorder(bootstrap=broker.bootstrap, topic=topic, spool_dir=spool)
    report = rec.close(timeout=60)
    assert report.complete, report
    flushed = tasks_flushed * 22
    # Checkpoints included: they take producer_seq values like the events around them.
    events = read_topic(broker.bootstrap, topic, flushed, checkpoints=True)
    mine = [e for e in events if e["producer_id"] == dead_producer]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for e in mine:
        by_id.setdefault(e["event_id"], []).append(e)
    seqs = {e["producer_seq"] for e in mine}
    assert set(range(flushed)) <= seqs, "every flushed event reached the topic"
    assert seqs == set(range(len(seqs))), "the delivered producer_seq range has no gap"
    for copies in by_id.values():
        # A copy can only come from a resend (sent, then killed before the ack was
        # recorded); it must be the same event, byte for byte.
        assert all(c == copies[0] for c in copies)
    resent = sum(len(c) - 1 for c in by_id.values())
    assert resent <= 20_000, "only records in flight at the kill can be sent twice"
    assert not [p for p in spool.iterdir() if p.is_dir()], "the replayed spool is removed"
