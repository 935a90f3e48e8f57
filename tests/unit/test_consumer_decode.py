"""The decode → validate step: every message becomes a row of its family or a dead letter."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from agenttrail.consumers import Batch, BatchDecoder, layout_for
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.events import EventCodec, EventType, default_registry, seal
from agenttrail.store import FAMILY_TABLES

FAMILIES = [str(e) for e in EventType]


@dataclass
class Msg:
    offset: int
    value: bytes | None
    key: bytes | None = b"task"
    timestamp: int = 1_700_000_000_000


def good(family: str = "tool_span", seq: int = 0) -> bytes:
    return sealed(sample_record(family, seq=seq))


def invalid(**changes: Any) -> bytes:
    record = sample_record("tool_span")
    record.update(changes)
    return sealed(record)


def framed_with_other_family() -> bytes:
    record = sample_record("llm_call")
    record["event_type"] = "tool_span"
    return seal(default_registry().latest("llm_call"), record, "")


BAD: dict[str, bytes | None] = {
    "bad_magic_byte": b"\x01" + good()[1:],
    "unknown_schema_id": b"\x00" + (999).to_bytes(4, "big") + good()[5:],
    "truncated": good()[:200],
    "trailing_bytes": good() + b"\x00\x02",
    "oversize": sealed(sample_record("llm_call", text_bytes=9000)),
    "malformed_body": good().replace(b"acme", b"\xff\xfe\xfd\xfc", 1),
    "invalid_record": invalid(seq=-1),
}


def decoder() -> BatchDecoder:
    return BatchDecoder(EventCodec(max_payload_bytes=8192))


def test_each_kind_of_bad_input_is_a_dead_letter_with_its_reason_and_raw_bytes() -> None:
    messages = []
    offset = 0
    expected: dict[int, tuple[str, bytes]] = {}
    for reason, payload in BAD.items():
        messages.append(Msg(offset, good(seq=offset)))
        messages.append(Msg(offset + 1, payload))
        expected[offset + 1] = (reason, payload or b"")
        offset += 2
    messages.append(Msg(offset, None))  # a tombstone carries no event
    expected[offset] = ("truncated", b"")
    prepared = decoder().prepare(Batch("t", 2, 0, offset, messages))

    assert prepared.events == {"tool_span": len(BAD)}
    assert prepared.dead_letters == len(expected)
    dead = next(i for i in prepared.inserts if i.table == "dead_letters")
    cols = dict(zip(dead.column_names, dead.columns, strict=True))
    got = {
        off: (reason, raw)
        for off, reason, raw in zip(cols["kafka_offset"], cols["reason"], cols["raw"], strict=True)
    }
    assert got == expected
    assert set(cols["topic"]) == {"t"} and set(cols["kafka_partition"]) == {2}
    assert all(err for err in cols["error"])


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"seq": -1}, "seq is -1"),
        ({"attempt": 0}, "attempt is 0"),
        ({"side_effect": "delete_everything"}, "side_effect"),
        ({"latency_ms": float("nan")}, "finite"),
        ({"schema_version": 7}, "schema_version is 7"),
        ({"ts": datetime(2400, 1, 1, tzinfo=UTC)}, "outside"),
    ],
)
def test_records_breaking_the_contract_are_refused_with_the_field_named(
    changes: dict[str, Any], fragment: str
) -> None:
    prepared = decoder().prepare(Batch("t", 0, 0, 0, [Msg(0, invalid(**changes))]))
    (dead,) = prepared.inserts
    error = dead.columns[dead.column_names.index("error")][0]
    assert dead.columns[dead.column_names.index("reason")] == ["invalid_record"]
    assert fragment in error


def test_event_type_must_match_the_framing_schema() -> None:
    prepared = decoder().prepare(Batch("t", 0, 0, 0, [Msg(0, framed_with_other_family())]))
    (dead,) = prepared.inserts
    assert "framed with the llm_call schema" in dead.columns[dead.column_names.index("error")][0]


def test_rows_go_to_their_family_table_with_kafka_position_and_tokens() -> None:
    messages = [Msg(100 + i, good(family, seq=i)) for i, family in enumerate(FAMILIES * 2)]
    prepared = decoder().prepare(Batch("events", 1, 100, 109, messages))
    assert prepared.events == {family: 2 for family in FAMILIES}
    assert prepared.dead_letters == 0
    by_table = {i.table: i for i in prepared.inserts}
    assert set(by_table) == set(FAMILY_TABLES.values())
    for family, table in FAMILY_TABLES.items():
        insert = by_table[table]
        cols = dict(zip(insert.column_names, insert.columns, strict=True))
        assert insert.dedup_token == f"events:1:100-109:{table}"
        assert cols["kafka_partition"] == [1, 1]
        expected_offsets = [100 + i for i, f in enumerate(FAMILIES * 2) if f == family]
        assert cols["kafka_offset"] == expected_offsets
        assert all(isinstance(v, uuid.UUID) for v in cols["event_id"])


def test_nested_boundary_is_flattened_and_absent_boundary_is_null() -> None:
    layout = layout_for(default_registry().latest("state_transition"))
    first = EventCodec().decode(good("state_transition", seq=0))
    later = EventCodec().decode(good("state_transition", seq=5))
    cols = dict(zip(layout.columns, layout.to_columns([first, later], 0, [0, 1]), strict=True))
    assert cols["has_boundary"] == [True, False]
    assert cols["boundary_max_steps"] == [12, None]
    assert cols["boundary_declared_tools"] == [["create_invoice"], []]
    assert "boundary" not in cols


def test_layouts_cover_every_schema_field() -> None:
    for family in FAMILIES:
        entry = default_registry().latest(family)
        columns = set(layout_for(entry).columns)
        for name in entry.field_names:
            assert name in columns or f"has_{name}" in columns
        assert {"kafka_partition", "kafka_offset"} <= columns
