"""The two decoders agree (issue 8 item 2): the store-side one (the in-process engine
reads the producer's Avro, checked by a query first) and the Python one (what a
ClickHouse server gets), fed the same generated good and bad messages, store the same
rows and dead-letter the same messages with the same reasons.

Ground truth is each side's stored rows read back from the engine, compared column by
column, and the (offset, reason) of each side's dead letters. Every generated batch is
written by the store side first (so its copy lookup finds nothing) into its own
partition number, then by the Python side into the next one; rows are inserted as each
decoder prepared them, without the writer's copy filter (the second side's rows are
copies of the first's by design).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail.consumers import Batch, Decoder, PythonDecoder, StoreDecoder
from agenttrail.consumers._decode import PreparedBatch, TableInsert
from agenttrail.consumers._writer import store_block
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.events import default_registry
from agenttrail.store import FAMILY_TABLES, Store
from tests.integration.test_consumer_rejects import encode_wide
from tests.strategies import model_event_strategy

STORE_DECODED = ("tool_span", "llm_call", "agent_message", "guard_event")
KINDS = ("good", "generated", "truncated", "trailing", "magic", "schema_id", "empty", "wide")
_partitions = itertools.count(0, 2)


@dataclass
class Msg:
    offset: int
    value: bytes | None
    key: bytes | None = b"task"
    timestamp: int = 1_700_000_000_000


def _message(family: str, kind: str, seq: int, generated: dict[str, Any]) -> bytes:
    task = f"conformance-{uuid.uuid4().hex[:12]}"  # no copies across examples
    if kind == "generated":
        record = {**generated, "task_id": task, "event_id": str(uuid.uuid4())}
        return sealed(record)
    record = sample_record(family, task_id=task, seq=seq)
    good = sealed(record)
    if kind == "good":
        return good
    if kind == "truncated":
        return good[:-1]
    if kind == "trailing":
        return good + b"\x00"
    if kind == "magic":
        return b"\x01" + good[1:]
    if kind == "schema_id":
        return good[:1] + (999_999).to_bytes(4, "big") + good[5:]
    if kind == "empty":
        return b""
    assert kind == "wide"
    return encode_wide(family, record | {"step": 2**40})  # past the Int32 column


def _write(store: Store, decoder: Decoder, prepared: PreparedBatch) -> None:
    # What the writer does, without its copy filter: a store-decoded insert the store
    # refuses is decoded by the codec and inserted as columns under the same token.
    token = f"conformance:{prepared.batch.partition}"
    for planned in [i for i in prepared.inserts if i.table != "dead_letters"]:
        insert: TableInsert | None = planned
        if planned.avro is not None:
            if store_block(store, replace(planned, dedup_token=token + planned.table)):
                continue
            insert = decoder.fall_back(prepared, planned)
        if insert is not None:
            store.insert_columns(insert.table, insert.column_names, insert.columns,
                                 dedup_token=token + insert.table)  # fmt: skip
    for insert in [i for i in prepared.inserts if i.table == "dead_letters"]:
        store.insert_columns(insert.table, insert.column_names, insert.columns,
                             dedup_token=token + insert.table)  # fmt: skip


def _rows(store: Store, table: str, partition: int) -> list[tuple[Any, ...]]:
    return store.query(
        f"SELECT * EXCEPT (kafka_partition, ingested_at) FROM {table} "
        "WHERE kafka_partition = {p:Int32} ORDER BY kafka_offset",
        {"p": partition},
    )


def _letters(store: Store, partition: int) -> list[tuple[Any, ...]]:
    return store.query(
        "SELECT kafka_offset, reason, raw FROM dead_letters "
        "WHERE topic = 'conformance' AND kafka_partition = {p:Int32} ORDER BY kafka_offset",
        {"p": partition},
    )


def _decoders(store: Store) -> tuple[Decoder, Decoder]:
    types = {t: store.table_columns(t) for t in FAMILY_TABLES.values()}
    return StoreDecoder(column_types=types), PythonDecoder(column_types=types)


def _both(store: Store, family: str, values: list[bytes]) -> tuple[PreparedBatch, PreparedBatch]:
    """Prepare, settle and store ``values`` with each decoder; compare what they stored."""
    in_store, in_python = _decoders(store)
    part = next(_partitions)
    results = []
    for offset_partition, decoder in ((part, in_store), (part + 1, in_python)):
        messages = [Msg(i, v) for i, v in enumerate(values)]
        prepared = decoder.prepare(Batch("conformance", offset_partition, 0, len(values) - 1,
                                         messages))  # fmt: skip
        decoder.settle(prepared, store)
        _write(store, decoder, prepared)
        results.append(prepared)
    by_store, by_python = results
    table = FAMILY_TABLES[family]
    assert _rows(store, table, part) == _rows(store, table, part + 1)
    assert _letters(store, part) == _letters(store, part + 1)
    assert by_store.events == by_python.events
    assert by_store.dead_letters == by_python.dead_letters
    return by_store, by_python


@pytest.mark.parametrize("family", STORE_DECODED)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_both_decoders_store_the_same_rows_and_dead_letter_the_same_reasons(
    store: Store, family: str, data: st.DataObject
) -> None:
    entry = default_registry().latest(family)
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=8), label="kinds")
    values = []
    for seq, kind in enumerate(kinds):
        generated = data.draw(model_event_strategy(entry), label="generated")
        values.append(_message(family, kind, seq, generated))
    _both(store, family, values)


@pytest.mark.parametrize("family", STORE_DECODED)
def test_an_all_good_batch_takes_the_store_path_and_still_agrees(store: Store, family: str) -> None:
    # Without this the suite could pass with the store side always falling back to Python.
    values = [_message(family, "good", seq, {}) for seq in range(5)]
    by_store, by_python = _both(store, family, values)
    assert any(i.avro is not None for i in by_store.inserts)
    assert all(i.avro is None for i in by_python.inserts)
    assert by_store.events == {family: 5} and not by_store.letters


@pytest.mark.parametrize("family", ["tool_span", "llm_call"])
def test_trailing_bytes_that_spell_the_rows_offset_are_still_caught_by_the_store_check(
    store: Store, family: str
) -> None:
    # The last message of a block ending in the byte zigzag(offset): with the offset as
    # the check value the engine read it as checked and stored the event the codec
    # refuses (found by the generated suite above, at offset 0 with a trailing 0x00).
    good = [_message(family, "good", seq, {}) for seq in range(5)]
    values = [*good[:4], good[4] + bytes([4 << 1])]  # offset 4: zigzag(4) == b"\x08"
    by_store, _ = _both(store, family, values)
    assert [d.offset for d in by_store.letters] == [4]
    assert by_store.events == {family: 4}
