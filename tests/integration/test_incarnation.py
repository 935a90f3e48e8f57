"""Positions belong to one broker incarnation (issue 7, item 1).

The embedded broker keeps messages in memory and numbers offsets from 0 again after
every start, while the ledger lives in the store and outlives it. These tests restart
the broker on the same store and count, from the event ids they produced themselves,
that every acknowledged event is stored exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agenttrail.consumers import Batch, BatchDecoder, BatchWriter, IngestStats, OffsetLedger
from agenttrail.consumers._incarnation import topic_incarnation
from agenttrail.embedded import EmbeddedBroker, LocalStack
from agenttrail.events import EVENTS_TOPIC
from agenttrail.producer import Recorder
from agenttrail.store import Store, open_store
from tests.deadline import wait_until
from tests.integration.test_pipeline import (
    Produced,
    config,
    fetch_partition,
    make_events,
    produce,
    running,
    stored_ids,
    table_counts,
)
from tests.ports import restartable_port


class RestartableBroker:
    """An embedded broker of one test that can be restarted on its port (2 partitions)."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        # Restarted on its port: one below the ephemeral range (tests/ports.py says why).
        self.broker = EmbeddedBroker(
            port=restartable_port(), partitions=2, log_path=log_path
        ).start(timeout=30)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def restart(self) -> None:
        """Stop the broker, start a new one on the same port: a new, empty incarnation."""
        port = self.broker.port
        self.broker.stop()
        self.broker = EmbeddedBroker(port=port, partitions=2, log_path=self.log_path)
        self.broker.start(timeout=30)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    """A broker of this test only (the tests restart it)."""
    holder = RestartableBroker(tmp_path / "broker.log")
    try:
        yield holder
    finally:
        holder.broker.stop()


def wait_all_stored(store: Store, produced: Produced, stats: IngestStats) -> None:
    def probe() -> bool:
        return sum(table_counts(store).values()) >= produced.events and stats.snapshot().lag == 0

    wait_until(probe, timeout=90, what=f"all {produced.events} produced events stored")


def assert_exactly_once(store: Store, produced: Produced) -> None:
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes), (
        f"missing {len(set(produced.hashes) - set(ids))} of {len(produced.hashes)} events"
    )
    assert set(ids.values()) == {1}, "some event is stored more than once"


def test_a_restarted_broker_on_the_same_store_loses_nothing(
    own_broker: RestartableBroker, unique_group: str, store: Store
) -> None:
    produced = Produced()
    # Same partition, same count, same batch size: the second run's batches cover
    # exactly the offset ranges of the first run's, so a token without the
    # incarnation would make ClickHouse drop them as retries.
    produce(own_broker.bootstrap, EVENTS_TOPIC, make_events(2, 30, prefix="one"), produced, 0)
    cfg = config(own_broker.bootstrap, EVENTS_TOPIC, unique_group, batch_size=20)
    with running(cfg, store) as stats:
        wait_all_stored(store, produced, stats)
    own_broker.restart()
    produce(own_broker.bootstrap, EVENTS_TOPIC, make_events(2, 30, prefix="two"), produced, 0)
    cfg = config(own_broker.bootstrap, EVENTS_TOPIC, unique_group, batch_size=20)
    with running(cfg, store) as stats:
        wait_all_stored(store, produced, stats)
    assert_exactly_once(store, produced)
    incarnations = store.query(
        "SELECT uniqExact(incarnation) FROM ingest_ledger WHERE consumer_group = {g:String}",
        {"g": unique_group},
    )
    assert incarnations == [(2,)]


def test_a_broker_restarted_under_a_running_consumer_loses_nothing(
    own_broker: RestartableBroker, unique_group: str, store: Store
) -> None:
    produced = Produced()
    produce(own_broker.bootstrap, EVENTS_TOPIC, make_events(4, 25, prefix="before"), produced)
    cfg = config(own_broker.bootstrap, EVENTS_TOPIC, unique_group, batch_size=20)
    with running(cfg, store) as stats:
        wait_all_stored(store, produced, stats)
        own_broker.restart()
        produce(own_broker.bootstrap, EVENTS_TOPIC, make_events(4, 25, prefix="after"), produced)
        wait_all_stored(store, produced, stats)
    assert_exactly_once(store, produced)


def test_same_offset_range_of_two_incarnations_is_stored_twice(
    own_broker: RestartableBroker, unique_group: str, store: Store
) -> None:
    """The deduplication token names the incarnation: equal ranges are different batches."""
    produced = Produced()
    produce(own_broker.bootstrap, EVENTS_TOPIC, make_events(1, 10, prefix="old"), produced, 1)
    old = topic_incarnation(own_broker.bootstrap, EVENTS_TOPIC)
    first = fetch_partition(own_broker.bootstrap, EVENTS_TOPIC, 1, 10)
    own_broker.restart()
    produce(own_broker.bootstrap, EVENTS_TOPIC, make_events(1, 10, prefix="new"), produced, 1)
    new = topic_incarnation(own_broker.bootstrap, EVENTS_TOPIC)
    second = fetch_partition(own_broker.bootstrap, EVENTS_TOPIC, 1, 10)
    assert old != new and old.startswith("topic-id:")
    assert [m.offset for m in first] == [m.offset for m in second]
    writer = BatchWriter(store, OffsetLedger(store, unique_group, "test"))
    for incarnation, messages in ((old, first), (new, second)):
        batch = Batch(EVENTS_TOPIC, 1, 0, 9, messages, incarnation)
        writer.write(BatchDecoder().prepare(batch))
        writer.write(BatchDecoder().prepare(batch))  # a retry of the same batch: once
    assert_exactly_once(store, produced)


def _emit(rec: Recorder, prefix: str, tasks: int) -> None:
    for t in range(tasks):
        with rec.task("restart_path", task_id=f"{prefix}-{t}") as task:
            for i in range(4):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)


def test_the_readme_path_through_a_restarted_stack_stores_every_acked_event(
    tmp_path: Path,
) -> None:
    """`up` (or `demo`), stop, `up` again on the same data, then an agent: all stored."""
    data = tmp_path / "data"
    delivered = 0
    for run, tasks in (("first", 6), ("second", 6), ("third", 3)):
        stack = LocalStack(data=data, port=0, partitions=2).start()
        try:
            rec = Recorder(stack.bootstrap, tenant="t", agent="a", agent_version="1",
                           spool_dir=tmp_path / f"spool-{run}")  # fmt: skip
            _emit(rec, run, tasks)
            report = rec.close(timeout=30)
            assert report.complete
            delivered += report.delivered
            stack.wait_stored(report.delivered, timeout=90)
        finally:
            stack.stop()
    with open_store(data=data) as store:
        rows = store.query(
            "SELECT task_id, count() FROM tool_spans GROUP BY task_id ORDER BY task_id"
        )
        total = store.query(
            "SELECT (SELECT count() FROM tool_spans) + (SELECT count() FROM state_transitions)"
            " + (SELECT count() FROM checkpoints)"  # each recorder's final checkpoint
        )[0][0]
    assert len(rows) == 15 and {n for _, n in rows} == {4}
    assert total == delivered
