"""Framing in the fetcher children (``_framing``, ``_fetch_child.pack``): the same batches,
blocks, rows and dead letters as record by record in the consumer."""

from __future__ import annotations

import runpy
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agenttrail.consumers._avro as _avro
import agenttrail.consumers._fetch_child as fetch_child_module
from agenttrail.consumers import Batch, PartitionBuffer, StoreDecoder
from agenttrail.consumers._avro import zigzag
from agenttrail.consumers._framing import (
    Chunk,
    ChunkList,
    FetchedRecord,
    first_offset,
    frame_row,
    spec_for,
)
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.events import EventCodec, default_registry, seal

_CHILD: dict[str, Any] = runpy.run_path(
    str(Path(fetch_child_module.__file__)), run_name="agenttrail_fetch_child_under_test"
)
pack = _CHILD["pack"]
Rec = namedtuple("Rec", "offset key value timestamp")
LIMIT = 8192


def old_tool_span(seq: int) -> bytes:
    record = sample_record("tool_span", seq=seq)
    v1 = default_registry().by_id(2)
    assert v1.version == 1
    record["schema_version"] = 1
    return seal(v1, {k: v for k, v in record.items() if k in v1.field_names}, "")


def value_of(kind: str, seq: int) -> bytes | None:
    """A message of each kind a topic may carry."""
    if kind == "tool":
        return sealed(sample_record("tool_span", seq=seq, text_bytes=seq % 300))
    if kind == "llm":
        return sealed(sample_record("llm_call", seq=seq))
    if kind == "state":
        return sealed(sample_record("state_transition", seq=seq))
    if kind == "old":
        return old_tool_span(seq)
    if kind == "oversize":
        return sealed(sample_record("llm_call", seq=seq, text_bytes=9000))
    if kind == "malformed":
        return b"\x00\x00\x00\x00\x07\xff"
    if kind == "magic":
        return b"\x01" + (sealed(sample_record("tool_span", seq=seq)))[1:]
    return None  # a tombstone


KINDS = ["tool", "tool", "tool", "llm", "state", "old", "oversize", "malformed", "magic", "none"]


def decoder() -> StoreDecoder:
    return StoreDecoder(EventCodec(max_payload_bytes=LIMIT))


def records(kinds: list[str], start: int, gaps: list[int]) -> list[Rec]:
    out, offset = [], start
    for n, kind in enumerate(kinds):
        offset += 1 + gaps[n % len(gaps)]
        key = None if n % 7 == 3 else f"task-{n % 5}".encode()
        out.append(Rec(offset, key, value_of(kind, n), 1_700_000_000_000 + n))
    return out


def chunks_of(partition: int, recs: list[Rec], sizes: list[int], spec: Any) -> list[ChunkList]:
    """The records as a fetcher child ships them, cut into chunks of the given sizes."""
    kinds = {b"\x00" + s.to_bytes(4, "big"): k for k, s in enumerate(spec.schema_ids)}
    out, i, n = [], 0, 0
    while i < len(recs):
        size = max(1, sizes[n % len(sizes)])
        part = recs[i : i + size]
        fields = [(r.offset, r.timestamp, r.key, r.value) for r in part]
        wire = pack(partition, fields, kinds, spec.max_payload_bytes, spec.nonce)
        out.append(ChunkList([Chunk(partition, wire, spec)]))
        i, n = i + size, n + 1
    return out


def as_tuples(messages: Any) -> list[tuple[Any, ...]]:
    return [(m.offset, m.key, m.value, m.timestamp) for m in messages]


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=60),
    gaps=st.lists(st.sampled_from([0, 0, 0, 1, 3]), min_size=1, max_size=5),
    sizes=st.lists(st.integers(1, 25), min_size=1, max_size=6),
    batch_size=st.integers(1, 30),
    batch_bytes=st.sampled_from([0, 700, 3000, 20000]),
    position=st.integers(0, 40),
)
def test_chunks_make_the_same_batches_as_records(
    kinds: list[str],
    gaps: list[int],
    sizes: list[int],
    batch_size: int,
    batch_bytes: int,
    position: int,
) -> None:
    spec = spec_for(decoder().store_encoders, LIMIT)
    recs = records(kinds, 100, gaps)
    position += 100
    plain = PartitionBuffer("t", 3, position=position)
    framed = PartitionBuffer("t", 3, position=position)
    for recs_chunk in chunks_of(3, recs, sizes, spec):
        plain.add([FetchedRecord(*r) for c in recs_chunk for r in c.records(0, len(c))])
        framed.add(recs_chunk)
        assert len(plain) == len(framed) and plain.buffered_bytes == framed.buffered_bytes
        assert plain.position == framed.position
        while plain.ready(batch_size, 10**9, None, batch_bytes):
            a, b = plain.take(batch_size, batch_bytes), framed.take(batch_size, batch_bytes)
            assert a is not None and b is not None
            assert (a.first_offset, a.last_offset) == (b.first_offset, b.last_offset)
            assert as_tuples(a.messages) == as_tuples(b.messages)
    a, b = plain.take(batch_size, batch_bytes), framed.take(batch_size, batch_bytes)
    while a is not None:
        assert b is not None and a.range_token == b.range_token
        assert as_tuples(a.messages) == as_tuples(b.messages)
        a, b = plain.take(batch_size, batch_bytes), framed.take(batch_size, batch_bytes)
    assert b is None and len(framed) == 0 and framed.buffered_bytes == 0


def test_a_redone_range_is_cut_exactly_from_chunks() -> None:
    spec = spec_for(decoder().store_encoders, LIMIT)
    recs = records(["tool"] * 30, 0, [0])  # offsets 1..30
    buffer = PartitionBuffer("t", 0)
    buffer.force_range(5, 17)
    for chunk in chunks_of(0, recs, [4, 9], spec):
        buffer.add(chunk)
    batch = buffer.take(1000)
    assert batch is not None and batch.redo
    assert [m.offset for m in batch.messages] == list(range(5, 18))
    assert batch.range_token == "t:0:5-17"
    rest = buffer.take(1000)
    assert rest is not None and (rest.first_offset, rest.last_offset) == (18, 30)


def test_the_first_offset_past_a_position_is_found_in_chunks() -> None:
    spec = spec_for(decoder().store_encoders, LIMIT)
    recs = records(["tool"] * 10, 0, [0, 2])
    chunks = ChunkList(c for cl in chunks_of(0, recs, [3], spec) for c in cl)
    for expected in range(0, 40):
        want = next((r.offset for r in recs if r.offset >= expected), None)
        assert first_offset(chunks, expected) == want


def prepared_pair(kinds: list[str]) -> tuple[Any, Any, Any]:
    """The same batch prepared from records and from child-framed chunks."""
    dec = decoder()
    spec = spec_for(dec.store_encoders, LIMIT)
    recs = records(kinds, 0, [0])
    buffer = PartitionBuffer("t", 1)
    for chunk in chunks_of(1, recs, [7], spec):
        buffer.add(chunk)
    framed = buffer.take(10_000)
    assert framed is not None
    plain = Batch(
        "t", 1, framed.first_offset, framed.last_offset, [FetchedRecord(*r) for r in recs]
    )
    return dec, dec.prepare(plain), dec.prepare(framed)


def test_framed_blocks_are_the_encoders_own_blocks_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dec, plain, framed = prepared_pair(KINDS * 4)
    flat = sorted(e.entry.event_type for e in dec.store_encoders.values())
    assert "tool_span" in flat and "state_transition" not in flat  # a nested record
    assert [g.family for g in framed.unchecked] == [
        f for f in flat if f in ("llm_call", "tool_span")
    ]
    assert [g.family for g in plain.unchecked] == [g.family for g in framed.unchecked]
    for a, b in zip(plain.unchecked, framed.unchecked, strict=True):
        assert b.block.rows == a.block.rows == len(a.messages)
        assert as_tuples(a.messages) == as_tuples(b.messages)
        # The encoder draws a nonce per block; draw the framed block's one and compare.
        nonce = b.block.nonce
        monkeypatch.setattr(_avro.os, "urandom", lambda n, v=nonce: v.to_bytes(n, "big"))
        schema_id = int.from_bytes(a.messages[0].value[1:5], "big")
        own = dec.store_encoders[schema_id].block(
            1, [m.offset for m in a.messages], [m.value for m in a.messages]
        )
        monkeypatch.undo()
        assert b.block == own
    # What is decoded here (the old schema) and the dead letters are the same either way.
    assert plain.decoded.keys() == framed.decoded.keys() == {"tool_span", "state_transition"}
    for family in plain.decoded:
        assert [(r, tuple(m)) for r, m in plain.decoded[family]] == [
            (r, tuple(m)) for r, m in framed.decoded[family]
        ]
    letters = [(d.offset, d.key, d.raw, d.reason, d.timestamp_ms) for d in framed.letters]
    assert letters == [(d.offset, d.key, d.raw, d.reason, d.timestamp_ms) for d in plain.letters]
    # A malformed body under the newest header is framed; the store's check refuses it
    # and the codec names it then (at its insert, an integration test's business).
    bad = {"oversize", "magic", "none"}
    assert len(letters) == 4 * sum(k in bad for k in KINDS)


def test_the_encoders_own_blocks_can_be_assembled_from_child_framed_rows() -> None:
    from agenttrail.consumers._framing import compatible

    encoders = decoder().store_encoders
    assert encoders, "the store decoder frames flat families"
    assert all(compatible(e) for e in encoders.values())
    assert spec_for(encoders, LIMIT).schema_ids == tuple(sorted(encoders))


def test_an_unframed_chunk_gives_back_every_record_as_it_came() -> None:
    spec = spec_for({}, 0)  # a Python decoder: the children frame nothing
    recs = records(KINDS * 2, 10, [0, 1])
    (chunks,) = chunks_of(4, recs, [len(recs)], spec)
    (chunk,) = chunks
    assert not chunk.framed
    assert as_tuples(chunk.records(0, len(chunk))) == [tuple(r) for r in recs]


def avro_string(value: bytes) -> bytes:
    return zigzag(len(value)) + value


OPENING = 37 + 10 + 1
"""Bytes of an envelope before its tenant: the event id, "tool_span" and the version."""


@settings(max_examples=200, deadline=None)
@given(
    partition=st.integers(0, 2**31 - 1),
    first=st.one_of(
        st.integers(0, 2**20),
        st.integers(2**13 - 40, 2**14 + 40),
        st.integers(2**62 - 10**6, 2**62),
    ),
    steps=st.lists(st.sampled_from([1, 1, 1, 2, 8191, 8192, 8193]), min_size=1, max_size=40),
    nonce=st.one_of(st.integers(0, 2**14), st.integers(0, 2**56 - 1)),
    bodies=st.lists(st.binary(max_size=20), min_size=1, max_size=5),
    tasks=st.lists(st.text(max_size=70), min_size=2, max_size=4),
)
def test_every_framed_row_is_the_store_row_of_its_message_at_any_offset_and_nonce(
    partition: int, first: int, steps: list[int], nonce: int, bodies: list[bytes],
    tasks: list[str],
) -> None:  # fmt: skip
    # Offsets and nonces across the 7-bit groups where the table-driven varints switch
    # from one lookup to a low part and a kept high part.
    spec = spec_for(decoder().store_encoders, LIMIT)._replace(nonce=nonce)
    header = b"\x00" + spec.schema_ids[0].to_bytes(4, "big")
    offsets, offset = [], first
    for step in steps:
        offsets.append(offset)
        offset += step
    # Each body opens with the envelope (event id, event type, schema version, tenant,
    # task id; strings past 63 bytes take two-byte lengths), then anything.
    ids = [f"{n:036d}".encode() for n in range(len(offsets))]
    envelopes = [
        avro_string(ids[n]) + avro_string(b"tool_span") + zigzag(2)
        + avro_string(tasks[0].encode()) + avro_string(tasks[n % len(tasks)].encode())
        for n in range(len(offsets))
    ]  # fmt: skip
    values = [header + envelopes[n] + bodies[n % len(bodies)] for n in range(len(offsets))]
    kinds = {header: 0}
    fields = [(o, 0, None, v) for o, v in zip(offsets, values, strict=True)]
    wire = pack(partition, fields, kinds, LIMIT, nonce)
    chunk = Chunk(partition, wire, spec)
    for n, (o, v) in enumerate(zip(offsets, values, strict=True)):
        one = chunk.rows(0, n, n + 1)
        assert one.count == 1 and [bytes(r) for r in one.pieces] == [
            frame_row(partition, o, v, nonce)
        ]
        assert one.event_ids == [ids[n]] and one.tasks == {envelopes[n][OPENING:]}
        assert chunk.records(n, n + 1)[0].value == v
    assert chunk.rows(0, 0, len(offsets)).tasks == {e[OPENING:] for e in envelopes}


@settings(max_examples=300, deadline=None)
@given(
    event_id=st.binary(min_size=36, max_size=36),
    event_type=st.binary(max_size=200),
    version=st.integers(-(2**31), 2**31 - 1),
    tenant=st.binary(max_size=300),
    task=st.binary(max_size=300),
    tail=st.binary(max_size=30),
    cut=st.integers(0, 2000),
    noise=st.binary(max_size=80),
)
def test_the_envelope_is_read_exactly_or_not_at_all(
    event_id: bytes, event_type: bytes, version: int, tenant: bytes, task: bytes,
    tail: bytes, cut: int, noise: bytes,
) -> None:  # fmt: skip
    header = b"\x00\x00\x00\x00\x07"
    task_part = avro_string(tenant) + avro_string(task)
    opening = avro_string(event_id) + avro_string(event_type) + zigzag(version) + task_part
    value = header + opening + tail
    assert fetch_child_module.envelope(value) == (event_id, task_part)
    # Cut anywhere inside the envelope: never read, never raises.
    short = value[: 5 + min(cut, len(opening) - 1)]
    assert fetch_child_module.envelope(short) is None
    # Any bytes at all: an answer or None, and an answer lies within the value.
    found = fetch_child_module.envelope(header + noise)
    assert found is None or (found[0] in noise and found[1] in noise)


def test_an_event_id_of_another_length_or_a_negative_string_length_is_no_envelope() -> None:
    rest = avro_string(b"tool_span") + zigzag(2) + avro_string(b"acme") + avro_string(b"t-1")
    header = b"\x00\x00\x00\x00\x07"
    assert fetch_child_module.envelope(header + avro_string(b"0" * 36) + rest) is not None
    assert fetch_child_module.envelope(header + avro_string(b"0" * 35) + rest) is None
    assert fetch_child_module.envelope(header + avro_string(b"0" * 36) + zigzag(-3) + rest) is None
