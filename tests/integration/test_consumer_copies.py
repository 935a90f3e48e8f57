"""Copies an at-least-once producer resends never reach the tables (issue 9 item 5).

The resent copies are byte-identical (same event_id, same (task_id, seq), same hash)
at new offsets, so the offset-based deduplication tokens cannot catch them; the
consumer drops them and counts them. Ground truth: the ids this test produced.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agenttrail.consumers import Batch, BatchDecoder, BatchWriter, OffsetLedger
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.embedded import EmbeddedBroker
from agenttrail.store import FAMILY_TABLES, Store
from tests.deadline import wait_until
from tests.integration.test_pipeline import (
    Produced,
    config,
    make_events,
    produce,
    running,
    stored_ids,
    table_counts,
)


@dataclass
class Msg:
    offset: int
    value: bytes
    key: bytes = b"task"
    timestamp: int = 1_700_000_000_000


@pytest.mark.parametrize("store_decodes", [False, True], ids=["python", "store"])
def test_resent_copies_are_dropped_and_counted_and_each_event_is_stored_once(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store, store_decodes: bool
) -> None:
    events = make_events(tasks=6, per_task=10, prefix="resend")
    produced = produce(broker.bootstrap, topic, events)
    produce(broker.bootstrap, topic, events)  # resent before anything was stored
    cfg = config(broker.bootstrap, topic, unique_group, store_decodes=store_decodes)
    with running(cfg, store) as stats:
        wait_until(lambda: stats.snapshot().lag == 0 and stats.snapshot().events_total
                   >= produced.events, timeout=60, what="the first round stored")  # fmt: skip
        produce(broker.bootstrap, topic, events[:25])  # resent after they were stored
        wait_until(lambda: stats.snapshot().duplicates_dropped >= produced.events + 25
                   and stats.snapshot().lag == 0, timeout=60,
                   what="every copy dropped")  # fmt: skip
        final = stats.snapshot()
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes) and set(ids.values()) == {1}
    assert final.duplicates_dropped == produced.events + 25
    assert final.events_total == produced.events
    assert store.query("SELECT count() FROM dead_letters")[0][0] == 0


def test_a_different_event_on_the_same_task_and_seq_is_not_a_copy(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    one = sample_record("tool_span", task_id="shared-task", seq=0)
    other = sample_record("tool_span", task_id="shared-task", seq=0)  # a new event_id
    produced = Produced()
    produce(broker.bootstrap, topic, [("shared-task", one, sealed(one))], produced)
    produce(broker.bootstrap, topic, [("shared-task", other, sealed(other))], produced)
    with running(config(broker.bootstrap, topic, unique_group), store) as stats:
        wait_until(lambda: stats.snapshot().events_total >= 2, what="both events stored")
        assert stats.snapshot().duplicates_dropped == 0
    assert set(stored_ids(store)) == {str(one["event_id"]), str(other["event_id"])}


@pytest.mark.parametrize("store_decodes", [False, True], ids=["python", "store"])
def test_a_batch_redone_finds_its_own_rows_and_counts_them_as_its_events_not_copies(
    store: Store, store_decodes: bool
) -> None:
    # A crash after the inserts and before the ledger's 'after' (or a retry after a store
    # failure that stored some of the batch's tables): the next attempt re-reads the same
    # range, finds its own rows at their own offsets, and must neither store them twice
    # nor count them as resent copies.
    events = make_events(tasks=3, per_task=10, prefix="redo")
    messages = [Msg(offset, payload) for offset, (_, _, payload) in enumerate(events)]
    expected: dict[str, int] = {}
    for _, record, _ in events:
        expected[record["event_type"]] = expected.get(record["event_type"], 0) + 1
    types = {t: store.table_columns(t) for t in FAMILY_TABLES.values()}
    prepared = []
    for attempt in range(2):  # a fresh decoder and writer each time: a new process
        decoder = BatchDecoder(store_decodes=store_decodes, column_types=types)
        writer = BatchWriter(store, OffsetLedger(store, "g", "test"), decoder)
        # The second is what the ledger's 'before' row makes of the range: a redo.
        raw = Batch("redo", 0, 0, len(messages) - 1, list(messages), redo=attempt == 1)
        batch = decoder.prepare(raw)
        writer.write(batch)
        prepared.append(batch)
    for done in prepared:
        assert done.duplicates == 0
        assert done.events == expected
    assert table_counts(store) == {f: expected.get(f, 0) for f in FAMILY_TABLES}
    assert set(stored_ids(store).values()) == {1}


def test_a_large_batch_stored_by_the_engine_and_redone_through_python_is_stored_once(
    store: Store,
) -> None:
    # The first attempt passes the store's check and is inserted as one Avro block; the
    # redo finds its own rows, so its group is decoded in Python and inserted as columns
    # under the same token. 6,000 spans are far more than one client-side Native block
    # (~2 MiB): the token drops the redo only if both inserts are one block each.
    n = 6000
    messages = []
    for i in range(n):
        record = sample_record("tool_span", task_id=f"big-{i // 10}", seq=i % 10)
        messages.append(Msg(i, sealed(record), key=f"big-{i // 10}".encode()))
    types = {t: store.table_columns(t) for t in FAMILY_TABLES.values()}
    paths = []
    for attempt in range(2):  # a fresh decoder and writer each time: a new process
        decoder = BatchDecoder(store_decodes=True, column_types=types)
        writer = BatchWriter(store, OffsetLedger(store, "g", "test"), decoder)
        batch = decoder.prepare(Batch("big", 0, 0, n - 1, list(messages), redo=attempt == 1))
        writer.write(batch)
        (insert,) = batch.inserts
        paths.append("avro" if insert.avro is not None else "columns")
        assert batch.events == {"tool_span": n} and batch.duplicates == 0
    assert paths == ["avro", "columns"]
    assert table_counts(store)["tool_span"] == n
    assert set(stored_ids(store).values()) == {1}
    # The views behind task_runs drop the redone block too.
    assert store.query("SELECT sum(events) FROM task_runs_state")[0][0] == n


@pytest.mark.parametrize("store_decodes", [False, True], ids=["python", "store"])
def test_a_copy_resent_to_the_same_position_of_a_restarted_broker_is_still_a_copy(
    store: Store, store_decodes: bool
) -> None:
    # The embedded broker numbers offsets from 0 again after a restart, so a replayed
    # spool can put an event at the very (partition, offset) it had before. A first
    # attempt of a batch has no rows of its own in the store: the stored row is a copy.
    events = make_events(tasks=2, per_task=5, prefix="restart")
    messages = [Msg(offset, payload) for offset, (_, _, payload) in enumerate(events)]
    types = {t: store.table_columns(t) for t in FAMILY_TABLES.values()}
    decoder = BatchDecoder(store_decodes=store_decodes, column_types=types)
    writer = BatchWriter(store, OffsetLedger(store, "g", "test"), decoder)
    last = len(messages) - 1
    writer.write(decoder.prepare(Batch("t", 0, 0, last, list(messages), incarnation="old")))
    again = decoder.prepare(Batch("t", 0, 0, last, list(messages), incarnation="new"))
    writer.write(again)
    assert again.duplicates == len(events) and sum(again.events.values()) == 0
    assert set(stored_ids(store).values()) == {1} and len(stored_ids(store)) == len(events)
