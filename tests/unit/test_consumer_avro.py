"""The store-decoded path's Avro framing, checked with an independent Avro reader."""

from __future__ import annotations

import io

import fastavro
import pytest

from agenttrail.consumers._avro import AvroBlockEncoder, supports, zigzag
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.events import EventCodec, default_registry


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 2**31, 2**62, -(2**63)])
def test_zigzag_matches_avro_long_encoding(value: int) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, {"type": "long"}, value)
    assert zigzag(value) == buf.getvalue()


def test_block_is_a_container_of_wrapped_records_equal_to_the_decoded_events() -> None:
    entry = default_registry().latest("tool_span")
    encoder = AvroBlockEncoder(entry)
    records = [sample_record("tool_span", seq=i) for i in range(3)]
    payloads = [sealed(r) for r in records]
    offsets = [7, 9, 300]
    block = encoder.block(2, offsets, payloads)
    codec = EventCodec()
    rows = list(fastavro.reader(io.BytesIO(block.data)))
    assert [r["kafka_offset"] for r in rows] == offsets
    nonces = {r["agenttrail_check"] - r["kafka_offset"] for r in rows}
    assert nonces == {block.nonce}
    assert f"agenttrail_check = kafka_offset + {block.nonce}" in block.insert_sql
    assert {r["kafka_partition"] for r in rows} == {2}
    for row, payload in zip(rows, payloads, strict=True):
        expected = codec.decode(payload)
        for name in entry.field_names:
            got, want = row[name], expected[name]
            if name == "event_id":
                want = str(want)  # read as a plain string, converted by the insert
            if name == "ts":
                continue  # read as plain microseconds, converted by the insert
            assert got == want, name
    assert block.rows == 3
    assert block.insert_sql.startswith("INSERT INTO {table} (kafka_partition, kafka_offset, ")


def test_only_flat_families_are_decoded_by_the_store() -> None:
    registry = default_registry()
    assert not supports(registry.latest("state_transition"))
    for family in ("llm_call", "tool_span", "agent_message", "guard_event"):
        assert supports(registry.latest(family))
