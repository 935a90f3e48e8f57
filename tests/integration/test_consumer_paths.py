"""The store-decoded path and the Python-decoded path store identical rows.

A retried batch may take either path (the store's check can fail for a transient
reason), so exactly-once requires that both give each table the same rows. The store
checks a block within its insert, so a block failing the check (a bad value, a copy,
an event twice) must store nothing before the codec's insert of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from agenttrail.consumers import Batch, BatchDecoder, BatchWriter, OffsetLedger
from agenttrail.consumers._decode import PreparedBatch
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.events import EventCodec
from agenttrail.store import FAMILY_TABLES, Store, StoreError, StoreUnavailable

FLAT = ["llm_call", "tool_span", "agent_message", "guard_event"]


@dataclass
class Msg:
    offset: int
    value: bytes | None
    key: bytes | None = b"task"
    timestamp: int = 1_700_000_000_000


def rows(store: Store, table: str) -> list[tuple[object, ...]]:
    return store.query(f"SELECT * EXCEPT ingested_at FROM {table} ORDER BY kafka_offset")


@pytest.mark.parametrize("family", FLAT)
def test_both_paths_store_the_same_rows(store: Store, family: str) -> None:
    messages = [Msg(i, sealed(sample_record(family, seq=i, text_bytes=300))) for i in range(50)]
    table = FAMILY_TABLES[family]
    store.command(f"CREATE TABLE {table}_python AS {table}")
    python = BatchDecoder(store_decodes=False).prepare(Batch("t", 1, 0, 49, messages))
    (insert,) = python.inserts
    store.insert_columns(f"{table}_python", insert.column_names, insert.columns)

    decoder = BatchDecoder(store_decodes=True)
    prepared = decoder.prepare(Batch("t", 1, 0, 49, messages))
    assert prepared.unchecked, "the batch should take the store-decoded path"
    BatchWriter(store, OffsetLedger(store, "g", "test"), decoder).write(prepared)
    assert prepared.inserts[0].avro is not None, "the store's check refused good events"
    assert rows(store, table) == rows(store, f"{table}_python")


def test_a_bad_message_sends_its_family_group_to_python_with_exact_reasons(store: Store) -> None:
    good = [Msg(i, sealed(sample_record("tool_span", seq=i))) for i in range(5)]
    bad = sealed(sample_record("tool_span", seq=99)) + b"\x00"  # trailing byte
    messages = [*good[:2], Msg(2, bad), *[Msg(m.offset + 1, m.value) for m in good[2:]]]
    decoder = BatchDecoder(store_decodes=True)
    prepared = decoder.prepare(Batch("t", 0, 0, 5, messages))
    BatchWriter(store, OffsetLedger(store, "g", "test"), decoder).write(prepared)
    assert prepared.events == {"tool_span": 5} and prepared.dead_letters == 1
    assert store.query("SELECT kafka_offset, reason FROM dead_letters") == [(2, "trailing_bytes")]
    assert store.query("SELECT count() FROM tool_spans")[0][0] == 5


def _spans(n: int, prefix: str) -> list[bytes]:
    return [
        sealed(sample_record("tool_span", task_id=f"{prefix}-{i // 10}", seq=i % 10))
        for i in range(n)
    ]


def _write_store_decoded(store: Store, values: list[bytes], first: int = 0) -> PreparedBatch:
    decoder = BatchDecoder(store_decodes=True)
    messages = [Msg(first + i, v) for i, v in enumerate(values)]
    prepared = decoder.prepare(Batch("t", 0, first, first + len(values) - 1, messages))
    assert prepared.unchecked, "the batch should take the store-decoded path"
    BatchWriter(store, OffsetLedger(store, "g", "test"), decoder).write(prepared)
    return prepared


def _task_run_events(store: Store) -> int:
    return int(store.query("SELECT sum(events) FROM task_runs_state")[0][0])


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_bad_value_anywhere_in_a_large_block_stores_nothing_of_it_then_each_good_event_once(
    store: Store, where: str
) -> None:
    # The store's check runs inside the insert: a row failing it must leave nothing of
    # the block stored (not even in the views), or the codec's insert of the good rows
    # under the same token would be dropped (rows lost) or stored beside it (twice).
    n = 5000
    values = _spans(n, f"bad-{where}")
    at = {"first": 0, "middle": n // 2, "last": n - 1}[where]
    bad = sample_record("tool_span", task_id="bad-row", seq=0)
    bad["side_effect"] = "teleport"  # not a side-effect class: the codec refuses it
    values[at] = sealed(bad)
    prepared = _write_store_decoded(store, values)
    assert [i.avro for i in prepared.inserts if i.table == "tool_spans"] == [None]
    assert prepared.events == {"tool_span": n - 1} and prepared.dead_letters == 1
    assert store.query("SELECT kafka_offset, reason FROM dead_letters") == [(at, "invalid_record")]
    assert store.query("SELECT count(), uniqExact(event_id) FROM tool_spans") == [(n - 1, n - 1)]
    assert _task_run_events(store) == n - 1


def test_an_event_twice_in_one_block_is_stored_once_and_counted_as_a_copy(store: Store) -> None:
    values = _spans(3000, "twice")
    values.insert(2000, values[17])  # resent within the same batch, at a later offset
    prepared = _write_store_decoded(store, values)
    assert prepared.duplicates == 1 and prepared.events == {"tool_span": 3000}
    assert store.query("SELECT count(), uniqExact(event_id) FROM tool_spans") == [(3000, 3000)]
    repeated = str(EventCodec().decode(values[17])["event_id"])
    assert store.query(  # the first of the two is kept
        "SELECT kafka_offset FROM tool_spans WHERE event_id = {e:UUID}", {"e": repeated}
    ) == [(17,)]
    assert _task_run_events(store) == 3000


def test_a_copy_of_a_stored_event_in_a_later_block_is_dropped(store: Store) -> None:
    first = _spans(3000, "stored")
    assert _write_store_decoded(store, first).events == {"tool_span": 3000}
    later = _spans(2000, "later")
    later.insert(1000, first[2999])  # resent by a restarted producer, after the first batch
    prepared = _write_store_decoded(store, later, first=3000)
    assert prepared.duplicates == 1 and prepared.events == {"tool_span": 2000}
    assert store.query("SELECT count(), uniqExact(event_id) FROM tool_spans") == [(5000, 5000)]
    assert _task_run_events(store) == 5000


def test_a_retried_batch_does_not_insert_its_stored_store_decoded_group_again(
    store: Store,
) -> None:
    # The family insert succeeded, the ledger's 'after' failed: the retry skips the
    # stored group (its check would refuse it for its own rows) and completes.
    values = _spans(3000, "retry")
    decoder = BatchDecoder(store_decodes=True)
    writer = BatchWriter(store, OffsetLedger(store, "g", "test"), decoder)
    prepared = decoder.prepare(Batch("t", 0, 0, 2999, [Msg(i, v) for i, v in enumerate(values)]))
    real = store.insert_columns
    calls = {"ledger": 0}

    def failing_after(table: str, *args: Any, **kwargs: Any) -> None:
        if table == "ingest_ledger":
            calls["ledger"] += 1
            if calls["ledger"] == 2:
                raise StoreUnavailable("injected: the 'after' row failed", store.location)
        real(table, *args, **kwargs)

    store.insert_columns = failing_after  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        writer.write(prepared)
    writer.write(prepared)
    store.insert_columns = real  # type: ignore[method-assign]
    assert [i.avro is not None for i in prepared.inserts] == [True]
    assert prepared.duplicates == 0 and prepared.events == {"tool_span": 3000}
    assert store.query("SELECT count() FROM tool_spans")[0][0] == 3000
    assert _task_run_events(store) == 3000


def test_a_block_whose_task_list_misses_a_row_stores_nothing(store: Store) -> None:
    # The copy lookup reads the block's tasks from the list made from the envelopes; a
    # row whose task is not on it would escape the lookup, so the store refuses the block.
    first = _spans(40, "listed")
    assert _write_store_decoded(store, first).events == {"tool_span": 40}
    decoder = BatchDecoder(store_decodes=True)
    later = [Msg(100 + i, v) for i, v in enumerate([*_spans(20, "other"), first[5]])]
    prepared = decoder.prepare(Batch("t", 0, 100, 120, later))
    (group,) = prepared.unchecked
    listed_only = decoder.prepare(Batch("t", 0, 100, 119, later[:20])).unchecked[0].block
    assert group.block.rows == 21 and listed_only.rows == 20
    # The resent copy's task ("listed-0") is missing from the list of the first 20 rows.
    with pytest.raises(StoreError):
        store.insert_from_file(
            "tool_spans", group.block.insert_sql, group.block.data, rows=21,
            more={"tasks": listed_only.tasks},
        )  # fmt: skip
    # With its own list the store finds the copy and refuses the block too; the writer
    # then stores the 20 new events once and drops the copy.
    with pytest.raises(StoreError):
        store.insert_from_file(
            "tool_spans", group.block.insert_sql, group.block.data, rows=21,
            more={"tasks": group.block.tasks},
        )  # fmt: skip
    assert store.query("SELECT count() FROM tool_spans")[0][0] == 40
    BatchWriter(store, OffsetLedger(store, "g", "test"), decoder).write(prepared)
    assert prepared.duplicates == 1 and prepared.events == {"tool_span": 20}
    assert store.query("SELECT count(), uniqExact(event_id) FROM tool_spans") == [(60, 60)]
