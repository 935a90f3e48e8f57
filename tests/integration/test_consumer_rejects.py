"""Bad values and refusing stores (issue 8 items 3 and 7), against the real engine.

* every integer column, one past its range, through both decoders: a dead letter
  (reason ``out_of_range``) naming the column, never a stalled partition;
* a batch the store refuses for good (a constraint): split until the refused event
  stands alone, dead-lettered with the server's reason, the rest stored, the other
  partitions flowing;
* a store that fails transiently (too many parts) N times: everything stored once, and
  counted once (what a failed attempt stored of the batch is not taken for copies).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import fastavro
import pytest

from agenttrail.consumers import Batch, BatchDecoder, BatchWriter, OffsetLedger
from agenttrail.consumers._ranges import integer_range
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.embedded import EmbeddedBroker
from agenttrail.events import default_registry
from agenttrail.store import FAMILY_TABLES, Store
from tests.deadline import wait_until
from tests.integration.test_pipeline import (
    Produced,
    config,
    make_events,
    produce,
    running,
    send_raw,
    stored_ids,
    table_counts,
    wait_stored,
)

AVRO_LONG = (-(2**63), 2**63 - 1)


@dataclass
class Msg:
    offset: int
    value: bytes | None
    key: bytes | None = b"task"
    timestamp: int = 1_700_000_000_000


def _integer_fields(store: Store, family: str) -> list[tuple[str, str, tuple[int, int]]]:
    """(column, record path, range) of every integer column fed from a record field."""
    entry = default_registry().latest(family)
    top = {f["name"]: f for f in entry.schema["fields"]}
    out = []
    for column, kind in store.table_columns(FAMILY_TABLES[family]).items():
        rng = integer_range(kind)
        if rng is None or column.startswith("kafka_") or column == "schema_version":
            continue  # schema_version must equal the framing schema's: checked before
        if rng[1] >= AVRO_LONG[1]:
            continue  # an Avro long cannot carry a value past Int64 (fastavro refuses it)
        path = column if column in top else column.replace("_", ".", 1)
        out.append((column, path, rng))
    return out


def encode_wide(family: str, record: dict[str, Any]) -> bytes:
    """Frame ``record`` as the family's schema would, but with every ``int`` written as a
    ``long``: the same zig-zag varint on the wire, so values past 32 bits go through, as
    they do from a producer that does not check (fastavro reads them back unchecked)."""
    entry = default_registry().latest(family)
    wide = json.loads(json.dumps(entry.schema).replace('"int"', '"long"'))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(wide), record)
    return b"\x00" + entry.schema_id.to_bytes(4, "big") + buf.getvalue()


def _with(record: dict[str, Any], path: str, value: int) -> dict[str, Any]:
    if "." in path:
        outer, inner = path.split(".", 1)
        record[outer] = {**record[outer], inner: value}
    else:
        record[path] = value
    return record


@pytest.mark.parametrize("store_decodes", [False, True], ids=["python", "store"])
def test_every_integer_column_one_past_its_range_is_a_dead_letter(
    store: Store, store_decodes: bool
) -> None:
    types = {t: store.table_columns(t) for t in FAMILY_TABLES.values()}
    decoder = BatchDecoder(store_decodes=store_decodes, column_types=types)
    writer = BatchWriter(store, OffsetLedger(store, "g", "test"), decoder)
    expected_letters: dict[str, str] = {}
    expected_good: dict[str, int] = {}
    cases = 0
    for family in FAMILY_TABLES:
        for column, path, (lo, hi) in _integer_fields(store, family):
            for side, value in (("high", hi + 1), ("low", lo - 1)):
                if side == "low" and lo == 0:
                    value = -1
                task = f"{family}-{column}-{side}"
                good = [sample_record(family, task_id=task, seq=s) for s in (0, 2)]
                # seq 0 carries every optional part (a state transition's boundary).
                bad = sample_record(family, task_id=task, seq=0) | {"seq": 1}
                sealed(bad)  # fills the hash fields of a valid record first
                raw = encode_wide(family, _with(bad, path, value))
                messages = [Msg(0, sealed(good[0])), Msg(1, raw), Msg(2, sealed(good[1]))]
                topic = f"ranges-{task}"
                writer.write(decoder.prepare(Batch(topic, 0, 0, 2, messages)))
                expected_letters[topic] = column
                expected_good[FAMILY_TABLES[family]] = (
                    expected_good.get(FAMILY_TABLES[family], 0) + 2
                )
                cases += 1
    assert cases >= 16, "step of every family, attempt, message_count, boundary_max_steps"
    letters = store.query(
        "SELECT topic, kafka_offset, reason, error FROM dead_letters ORDER BY topic"
    )
    assert {t for t, _, _, _ in letters} == set(expected_letters)
    for topic, offset, reason, error in letters:
        assert offset == 1
        # One past the top is only a range problem; one below the bottom may break the
        # contract's own lower bound first (counts are >= 0): a dead letter either way.
        assert reason == "out_of_range" or (topic.endswith("-low") and reason == "invalid_record")
        if reason == "out_of_range":
            assert expected_letters[topic] in error
    for table, count in expected_good.items():
        assert store.query(f"SELECT count() FROM {table}")[0][0] == count


def test_a_poison_event_is_isolated_with_the_servers_reason_and_the_rest_flows(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    # A refusal no check of ours predicts: a constraint of the table itself.
    store.command("ALTER TABLE tool_spans ADD CONSTRAINT no_poison CHECK tool != 'poison-tool'")
    produced = Produced()
    events = make_events(tasks=1, per_task=40, prefix="p0")
    produce(broker.bootstrap, topic, events, produced, partition=0)
    poison = sample_record("tool_span", task_id="poison-task", seq=0) | {"tool": "poison-tool"}
    send_raw(broker.bootstrap, topic, [(sealed(poison), 0)])
    produce(broker.bootstrap, topic, make_events(1, 40, prefix="p0b"), produced, partition=0)
    produce(broker.bootstrap, topic, make_events(1, 40, prefix="p1"), produced, partition=1)
    with running(config(broker.bootstrap, topic, unique_group, batch_size=100), store) as stats:
        wait_stored(stats, produced.events, dead_letters=1)
        wait_until(lambda: stats.snapshot().lag == 0, what="lag 0")
        assert stats.snapshot().store_failures == 0, "a refusal is not an outage"
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes) and set(ids.values()) == {1}
    ((reason, error, offset),) = store.query("SELECT reason, error, kafka_offset FROM dead_letters")
    assert reason == "store_rejected" and offset == 40
    assert "VIOLATED_CONSTRAINT" in error and "no_poison" in error


@pytest.mark.parametrize("store_decodes", [False, True], ids=["python", "store"])
def test_a_store_failing_transiently_n_times_stores_everything_exactly_once(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store, store_decodes: bool
) -> None:
    produced = produce(broker.bootstrap, topic, make_events(tasks=4, per_task=10, prefix="a"))
    cfg = config(broker.bootstrap, topic, unique_group, store_decodes=store_decodes)
    with running(cfg, store) as stats:
        wait_stored(stats, produced.events)
        # Too many parts: the server's own back-pressure, error 252, an outage by class.
        store.command("SYSTEM STOP MERGES tool_spans")
        store.command("ALTER TABLE tool_spans MODIFY SETTING parts_to_throw_insert = 1")
        try:
            produce(broker.bootstrap, topic, make_events(4, 10, prefix="b"), produced)
            wait_until(lambda: stats.snapshot().store_failures >= 3, what="3 failed attempts")
            snap = stats.snapshot()
            assert snap.retrying and snap.last_error and "TOO_MANY_PARTS" in snap.last_error
            assert store.query("SELECT count() FROM dead_letters")[0][0] == 0
        finally:
            store.command("ALTER TABLE tool_spans RESET SETTING parts_to_throw_insert")
            store.command("SYSTEM START MERGES tool_spans")
        wait_stored(stats, produced.events)
        wait_until(lambda: not stats.snapshot().retrying, what="the consumer recovering")
        final = stats.snapshot()
    # A failed attempt may have stored the batch's other tables before tool_spans refused
    # it: the retry finds those rows at their own offsets, which makes them the batch's
    # own events (stored once by its token), never resent copies.
    assert final.events_total == produced.events and final.duplicates_dropped == 0
    assert sum(table_counts(store).values()) == produced.events
    assert set(stored_ids(store).values()) == {1}
    assert store.query("SELECT count() FROM dead_letters")[0][0] == 0
