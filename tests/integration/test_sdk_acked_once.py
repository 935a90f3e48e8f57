"""An acknowledged record is never sent again, also after the agent was SIGKILLed.

The agent runs in its own process and emits without pause. Its exporter is the real
Kafka exporter behind a witness that, after the SDK has taken a record's
acknowledgement (the SDK's callback returned; for acknowledgements the exporter reports
together, its batch callback), appends a digest of the record to a file with one
unbuffered write: the page cache keeps it through a SIGKILL. The test
kills the agent while acknowledgements stream in, lets a new recorder replay the dead
agent's spool, and then counts every message on the topic: no witnessed record may be
there twice. Records that were in flight without an acknowledgement may be (the
consumer drops those copies); they are counted, not forbidden.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from agenttrail.embedded import EmbeddedBroker
from agenttrail.embedded._kafka_admin import topic_end_offsets
from agenttrail.producer import Recorder
from tests.deadline import wait_until
from tests.integration.test_sdk_kafka import PARTITIONS

REPO = Path(__file__).resolve().parents[2]
DIGEST = 16

ACKED_AGENT = textwrap.dedent(
    """
    import hashlib, os, sys
    from agenttrail.producer import Recorder
    from agenttrail.producer._exporter import kafka_exporter

    def digest(record):
        return hashlib.blake2b(record.value, digest_size=16).digest()

    class Witnessed:
        # The SDK's ack callback, then the digests of what it took as acknowledged;
        # acknowledgements reported together (acked) are witnessed together.

        def __init__(self, on_done, fd):
            self.on_done, self.fd = on_done, fd
            if hasattr(on_done, "acked"):
                self.acked = self._acked

        def __call__(self, record, error):
            self.on_done(record, error)  # the SDK takes the acknowledgement first
            if error is None:
                os.write(self.fd, digest(record))

        def _acked(self, records):
            self.on_done.acked(records)
            os.write(self.fd, b"".join(digest(r) for r in records))

    class Witness:
        def __init__(self, inner, path):
            self.inner = inner
            self.destination = inner.destination
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

        def export(self, records, on_done):
            self.inner.export(records, Witnessed(on_done, self.fd))

        def probe(self, timeout):
            return self.inner.probe(timeout)

        def flush(self, timeout):
            return self.inner.flush(timeout)

        def reset(self):
            self.inner.reset()

        def shutdown(self):
            self.inner.shutdown()

    bootstrap, topic, spool, witness, client = sys.argv[1:6]
    rec = Recorder(
        exporter=Witness(kafka_exporter(client, bootstrap, topic), witness), spool_dir=spool,
        checkpoint_interval_s=0,
    )
    print(rec.producer_id, flush=True)
    n = 0
    while True:
        with rec.task("acked", task_id=f"acked-{n}") as task:
            for i in range(20):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)
        n += 1
    """
)


def _digests(path: Path) -> list[bytes]:
    data = path.read_bytes()
    whole = len(data) - len(data) % DIGEST
    return [data[i : i + DIGEST] for i in range(0, whole, DIGEST)]


def _all_messages(bootstrap: str, topic: str) -> list[bytes]:
    """Every value on ``topic``, up to the end offsets as they are now.

    The ends are the true ones (``topic_end_offsets``): the embedded broker's ListOffsets
    answer stops at its last batch's first offset + 1, and a poll returns at most 500
    records, so reading "past" that answer could leave the rest of a large last batch
    unread and count its records as missing.
    """
    ends_by_partition = topic_end_offsets(bootstrap, topic)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = {tp: ends_by_partition.get(tp.partition, 0) for tp in parts}
        values: list[bytes] = []

        def read_to_the_end() -> bool:
            for batch in consumer.poll(timeout_ms=500).values():
                values.extend(m.value for m in batch)
            return all(consumer.position(p) >= ends[p] for p in parts)

        wait_until(read_to_the_end, timeout=60, what=f"{sum(ends.values())} messages")
    finally:
        consumer.close()
    return values


def test_an_agent_killed_as_acks_arrive_never_has_an_acknowledged_record_resent(
    broker: EmbeddedBroker, topic: str, tmp_path: Path, kafka_client: str
) -> None:
    spool, witness = tmp_path / "spool", tmp_path / "acked.bin"
    witnessed: list[bytes] = []
    for round_ in range(2):  # two kills at different points of the stream
        argv = [broker.bootstrap, topic, str(spool), str(witness), kafka_client]
        agent = subprocess.Popen(
            [sys.executable, "-c", ACKED_AGENT, *argv],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            assert agent.stdout is not None
            agent.stdout.readline()  # the recorder exists
            floor = len(witnessed) * DIGEST + (2000 + 1500 * round_) * DIGEST

            def acks_stream_in(floor: int = floor) -> bool:
                return witness.exists() and witness.stat().st_size >= floor

            wait_until(acks_stream_in, timeout=120, interval=0.002, what="acks to arrive")
        finally:
            os.kill(agent.pid, signal.SIGKILL)  # mid-stream: more acks were on their way
            agent.wait(10)
        witnessed = _digests(witness)
        replay = Recorder(bootstrap=broker.bootstrap, topic=topic, spool_dir=spool)
        report = replay.close(timeout=90)
        assert report.complete, report
        assert report.delivered > 0, "the dead agent left unacknowledged records to replay"

    on_topic = Counter(
        hashlib.blake2b(v, digest_size=DIGEST).digest()
        for v in _all_messages(broker.bootstrap, topic)
    )
    assert len(set(witnessed)) == len(witnessed), "the witness saw each ack once"
    missing = [d for d in witnessed if on_topic[d] == 0]
    twice = [d for d in witnessed if on_topic[d] > 1]
    assert not missing, f"{len(missing)} acknowledged records are not on the topic"
    assert not twice, (
        f"{len(twice)} of {len(witnessed)} acknowledged records were sent again by the "
        "process that replayed the spool"
    )
    assert not [p for p in spool.iterdir() if p.is_dir()], "the replayed spools are removed"
