"""A consumer that lost its partition never writes it again (issue 8 item 7).

* The fencing protocol at each point of a write: a writer frozen before its 'before'
  ledger row, at its fence check, before its first table insert, or before its 'after'
  row, while a successor claims the partition and stores the rest; then thawed.
* Rebalances forced while records sit in the buffers (members joining and leaving).

Ground truth: the event ids and Kafka positions these tests produced.

Against Tansu a consumer whose threads stop is not evicted from its group (its
heartbeats go on), so the freeze is applied to the writer itself: what a frozen
process would do when it wakes is exactly the thawed write here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agenttrail.consumers import (
    Backlog,
    Batch,
    BatchDecoder,
    BatchWriter,
    IngestPipeline,
    IngestStats,
    OffsetLedger,
)
from agenttrail.consumers._incarnation import topic_incarnation
from agenttrail.consumers._ledger import Claim, PartitionFenced
from agenttrail.embedded import EmbeddedBroker
from agenttrail.store import FAMILY_TABLES, LEDGER_TABLE, Store, open_store
from tests.deadline import wait_until
from tests.integration.test_pipeline import (
    Produced,
    config,
    fetch_partition,
    make_events,
    produce,
    stored_ids,
    stored_positions,
)

_STATE = 6  # index of the state column in the ledger's insert (see _ledger._COLUMNS)


class FreezableStats(IngestStats):
    """Counters whose consumer-thread update blocks while the consumer is frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.thawed = threading.Event()
        self.thawed.set()

    def set_lag(self, lag: Backlog | None) -> None:
        self.thawed.wait()  # the consumer thread stops here: no poll, no heartbeat
        super().set_lag(lag)


class Freezer:
    """Blocks the first store call of a write at ``point`` once armed."""

    def __init__(self, store: Store, point: str, stats: FreezableStats):
        self.point, self.stats = point, stats
        self.armed = threading.Event()
        self.frozen = threading.Event()
        self.release = threading.Event()
        self._done = False
        for name in ("insert_columns", "insert_from_file", "query"):
            real = getattr(store, name)
            setattr(store, name, self._wrap(name, real))

    def _matches(self, name: str, args: tuple[Any, ...]) -> bool:
        if self.point == "fence":
            return name == "query" and "argMax(claim" in args[0]
        if name == "query":
            return False
        table = args[0]
        if self.point == "insert":
            return table in FAMILY_TABLES.values()
        if table != LEDGER_TABLE or name != "insert_columns":
            return False
        return bool(args[2][_STATE][0] == ("before" if self.point == "before" else "after"))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.armed.is_set() and not self._done and self._matches(name, args):
                self._done = True
                self.stats.thawed.clear()
                self.frozen.set()
                self.release.wait(120)
            return real(*args, **kwargs)

        return call


@contextmanager
def pipeline(cfg: Any, store: Store, stats: IngestStats | None = None) -> Iterator[IngestPipeline]:
    """A pipeline on a thread; stopped on exit, its error re-raised."""
    stop = threading.Event()
    p = IngestPipeline(cfg, store, stats=stats or IngestStats())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            p.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield p
    finally:
        stop.set()
        thread.join(90)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("point", ["before", "fence", "insert", "after"])
def test_a_writer_frozen_at_each_point_of_a_write_while_its_partition_moves_stores_once(
    broker: EmbeddedBroker, topic: str, store: Store, store_dir: Path, point: str
) -> None:
    """The fencing protocol itself, step by step: A is frozen at ``point`` of a write
    while B claims the partition, reads the ledger and stores the rest with other batch
    boundaries; then A is thawed. Each offset ends stored once, whatever the point."""
    produced = produce(broker.bootstrap, topic, make_events(1, 60, prefix="z"), partition=0)
    messages = fetch_partition(broker.bootstrap, topic, 0, 60)
    incarnation = topic_incarnation(broker.bootstrap, topic)
    stats = FreezableStats()
    with open_store(data=store_dir) as store_a:
        ledger_a = OffsetLedger(store_a, "g", "zombie")
        writer_a = BatchWriter(store_a, ledger_a)
        (claim_a,) = ledger_a.claim(topic, incarnation, [0]).values()

        def batch(first: int, last: int, claim: Claim) -> Batch:
            return Batch(topic, 0, first, last, messages[first : last + 1], incarnation,
                         claim.claim, claim.claimed_at)  # fmt: skip

        writer_a.write(BatchDecoder().prepare(batch(0, 19, claim_a)))
        freezer = Freezer(store_a, point, stats)
        freezer.armed.set()
        outcome: list[BaseException | None] = []

        def zombie() -> None:
            try:
                writer_a.write(BatchDecoder().prepare(batch(20, 39, claim_a)))
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=zombie, daemon=True)
        thread.start()
        wait_until(freezer.frozen.is_set, what=f"the write frozen at {point}")
        # B takes over as a consumer does on assignment: claim, then read the ledger.
        ledger_b = OffsetLedger(store, "g", "successor")
        writer_b = BatchWriter(store, ledger_b)
        (claim_b,) = ledger_b.claim(topic, incarnation, [0]).values()
        entry = ledger_b.latest(topic, [0], incarnation)[0]
        position = entry.resume_at
        if entry.state == "before":  # redo exactly the recorded range
            writer_b.write(BatchDecoder().prepare(batch(entry.first_offset, entry.last_offset,
                                                        claim_b)))  # fmt: skip
            position = entry.last_offset + 1
        while position < 60:
            last = min(position + 24, 59)  # other boundaries than A's batches
            writer_b.write(BatchDecoder().prepare(batch(position, last, claim_b)))
            position = last + 1
        freezer.release.set()
        thread.join(60)
    (result,) = outcome
    if point in ("before", "fence"):
        assert isinstance(result, PartitionFenced), result
    else:
        assert result is None  # it passed the fence before B claimed: B redid its range
    positions = stored_positions(store)
    assert sorted(positions) == [(0, m.offset) for m in messages]
    assert set(positions.values()) == {1}
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes) and set(ids.values()) == {1}
    # A third owner resumes behind everything, never at the zombie's late rows.
    assert OffsetLedger(store, "g", "third").latest(topic, [0], incarnation)[0].resume_at == 60


def test_rebalances_forced_while_records_are_buffered_lose_nothing_and_copy_nothing(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store, store_dir: Path
) -> None:
    produced = Produced()
    # Long batch age: records sit in the buffers when each rebalance comes.
    cfg = config(broker.bootstrap, topic, unique_group, batch_size=500, batch_ms=1500)
    with open_store(data=store_dir) as store_b, pipeline(cfg, store, IngestStats()) as one:
        for round_ in range(4):
            produce(broker.bootstrap, topic, make_events(4, 20, prefix=f"r{round_}"), produced)
            stats = IngestStats()
            with pipeline(cfg, store_b, stats):  # a member joins: rebalance
                wait_until(lambda s=stats: s.snapshot().partitions, timeout=60,
                           what="the joining consumer getting partitions")  # fmt: skip
                produce(broker.bootstrap, topic, make_events(4, 20, prefix=f"s{round_}"),
                        produced)  # fmt: skip
            # ... and leaves again: another rebalance, with the first one's buffers full.
        wait_until(
            lambda: (
                set(stored_ids(store)) >= set(produced.hashes) and one.stats.snapshot().lag == 0
            ),
            timeout=120,
            what="everything stored after the rebalances",
        )
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes) and set(ids.values()) == {1}
    positions = stored_positions(store)
    assert len(positions) == produced.messages and set(positions.values()) == {1}
