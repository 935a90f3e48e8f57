"""A consumer with fetcher processes through a broker SIGKILLed mid-stream and started
again on its port: every event the broker still had when it died and every event sent
after is stored once, at the position the broker acknowledged for it. Real broker,
real engine; counted from the producer's own acknowledgements."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from agenttrail.embedded import EmbeddedBroker
from agenttrail.events import EVENTS_TOPIC
from agenttrail.store import FAMILY_TABLES, Store
from tests.deadline import wait_until
from tests.integration.test_consumer_fencing import pipeline
from tests.integration.test_consumer_fetchers import pool_of
from tests.integration.test_pipeline import config, make_events
from tests.ports import restartable_port

PARTITIONS = 4


class Acked:
    """Event id → (partition, offset) as the broker acknowledged each send."""

    def __init__(self) -> None:
        self.at: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def send(self, bootstrap: str, tasks: int, per_task: int, prefix: str) -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        try:
            sent = []
            for task_id, record, payload in make_events(tasks, per_task, prefix=prefix):
                future = producer.send(EVENTS_TOPIC, key=task_id.encode(), value=payload)
                sent.append((str(record["event_id"]), future))
            producer.flush(timeout=30)
            for event_id, future in sent:
                meta = future.get(timeout=30)
                with self.lock:
                    self.at[event_id] = (meta.partition, meta.offset)
        finally:
            producer.close()


def stored(store: Store) -> list[tuple[str, int, int]]:
    """(event id, partition, offset) of every stored row, copies included."""
    rows: list[tuple[str, int, int]] = []
    for table in FAMILY_TABLES.values():
        sql = f"SELECT toString(event_id), kafka_partition, kafka_offset FROM {table}"
        rows += [(str(e), int(p), int(o)) for e, p, o in store.query(sql)]
    return rows


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[list[EmbeddedBroker]]:
    """A broker of this test only, on a port it can be started on again (in a list, so
    the test can replace it)."""
    holder = [
        EmbeddedBroker(
            port=restartable_port(), partitions=PARTITIONS, log_path=tmp_path / "broker.log"
        ).start(timeout=30)
    ]
    try:
        yield holder
    finally:
        holder[0].stop()


def test_fetchers_through_a_broker_sigkilled_and_restarted_store_every_event_once(
    own_broker: list[EmbeddedBroker],
    unique_group: str,
    fetcher_client: str,
    store: Store,
    tmp_path: Path,
) -> None:
    broker = own_broker[0]
    port = broker.port
    before, after = Acked(), Acked()
    before.send(broker.bootstrap, tasks=8, per_task=50, prefix="before")  # 400 events
    cfg = config(broker.bootstrap, EVENTS_TOPIC, unique_group, fetchers=2, batch_size=20,
                 fetcher_client=fetcher_client)  # fmt: skip
    with pipeline(cfg, store) as p:
        pool = pool_of(p)
        # Mid-stream: some of the first events stored, not all of them.
        wait_until(lambda: p.stats.snapshot().events_total >= 60, timeout=90,
                   what="events flowing before the broker is killed")  # fmt: skip
        pid = broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        broker.stop()  # reaps it
        stored_at_kill = len(stored(store))
        broker = EmbeddedBroker(port=port, partitions=PARTITIONS,
                                log_path=tmp_path / "broker2.log").start(timeout=30)  # fmt: skip
        own_broker[0] = broker
        after.send(broker.bootstrap, tasks=8, per_task=25, prefix="after")  # 200 events
        wait_until(lambda: set(after.at) <= {e for e, _, _ in stored(store)}, timeout=120,
                   what="every event sent after the restart stored")  # fmt: skip
        # The same fetcher processes (or replacements) did the fetching throughout.
        assert pool.pids and p._consumer is not None
    rows = stored(store)
    copies = {k: n for k, n in Counter(e for e, _, _ in rows).items() if n > 1}
    assert not copies, f"{len(copies)} events stored more than once"
    at = {e: (part, off) for e, part, off in rows}
    # Everything sent after the restart: stored once, where the new broker put it.
    assert {e: at[e] for e in after.at} == after.at
    # What was sent before: stored at its acknowledged position, and per partition an
    # unbroken run from the log's start (the broker lost its memory when it died; the
    # consumer never skips an offset of what it had).
    old = {e: at[e] for e in before.at if e in at}
    assert old == {e: before.at[e] for e in old}
    assert len(old) >= stored_at_kill >= 60
    for partition in range(PARTITIONS):
        offsets = sorted(off for part, off in old.values() if part == partition)
        assert offsets == list(range(len(offsets))), f"partition {partition}: a hole"
    # Each new-broker position holds one event; the old broker's positions likewise.
    assert len({at[e] for e in after.at}) == len(after.at)
    assert len(set(old.values())) == len(old)
    assert set(p.stats.snapshot().partitions) == set(range(PARTITIONS))
