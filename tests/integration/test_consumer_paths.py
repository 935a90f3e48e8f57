"""The store-decoded path and the Python-decoded path store identical rows.

A retried batch may take either path (the store's check can fail for a transient
reason), so exactly-once requires that both give each table the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agenttrail.consumers import Batch, BatchDecoder, BatchWriter, OffsetLedger
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.store import FAMILY_TABLES, Store

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
