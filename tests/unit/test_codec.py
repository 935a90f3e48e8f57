"""The event codec, hash sealing, ids and models, property-tested from the schemas."""

from __future__ import annotations

import hashlib
import itertools
import threading
import types
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agenttrail.events import (
    AgentMessage,
    BadMagicByte,
    Checkpoint,
    DecodeError,
    EncodeError,
    EventCodec,
    GuardEvent,
    LlmCall,
    MalformedBody,
    OversizePayload,
    SchemaEntry,
    StateTransition,
    ToolSpan,
    TrailingBytes,
    TruncatedPayload,
    UnknownSchemaId,
    _ids,
    canonical_hash,
    default_registry,
    frame,
    parse_event,
    seal,
    uuid7,
)
from tests.strategies import (
    LONG_MAX,
    LONG_MIN,
    TS_MAX,
    TS_MIN,
    different_value,
    event_strategy,
    model_event_strategy,
)

REGISTRY = default_registry()
FAMILIES = REGISTRY.event_types
CODEC = EventCodec()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MODELS = {
    "llm_call": LlmCall,
    "tool_span": ToolSpan,
    "state_transition": StateTransition,
    "agent_message": AgentMessage,
    "guard_event": GuardEvent,
    "checkpoint": Checkpoint,
}
# Few examples per family keep the unit suite at a few seconds.
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VERY_FEW = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def header(entry: SchemaEntry) -> bytes:
    """The Confluent header written out by hand: magic 0, then the id as 4 big-endian bytes."""
    return bytes([0]) + entry.schema_id.to_bytes(4, "big")


def avro_body(entry: SchemaEntry, record: Mapping[str, Any]) -> bytes:
    """The record's Avro body, encoded by fastavro directly (not through the codec)."""
    out = BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(entry.schema, named_schemas={}), record)
    return out.getvalue()


def as_decoded(record: Mapping[str, Any]) -> dict[str, Any]:
    """What decoding should return: fastavro reads the uuid and timestamp-micros logical types."""
    expected = dict(record)
    expected["event_id"] = uuid.UUID(record["event_id"])
    expected["ts"] = EPOCH + timedelta(microseconds=record["ts"])
    return expected


def decode_or_refusal(payload: bytes) -> dict[str, Any] | DecodeError:
    """Decode; a DecodeError is returned, anything else raised propagates and fails the test."""
    try:
        record = CODEC.decode(payload)
    except DecodeError as exc:
        return exc
    assert isinstance(record, dict)
    return record


def draw_payload(data: st.DataObject, family: str) -> tuple[SchemaEntry, dict[str, Any], bytes]:
    entry = REGISTRY.latest(family)
    record = data.draw(event_strategy(entry), label="record")
    return entry, record, seal(entry, record, "")


# --- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@FEW
@given(data=st.data())
def test_encode_decode_round_trips_every_family(family: str, data: st.DataObject) -> None:
    entry = REGISTRY.latest(family)
    record = data.draw(event_strategy(entry), label="record")

    payload = CODEC.encode(record)

    assert payload == header(entry) + avro_body(entry, record)
    assert CODEC.decode(payload) == as_decoded(record)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", LONG_MAX),
        ("seq", LONG_MIN),
        ("ts", TS_MIN),
        ("ts", TS_MAX),
        ("latency_ms", -0.0),
        ("latency_ms", -1.7976931348623157e308),
        ("tool", "ツール 🛠️ \u0000 \U0010fffd"),
        ("parent_span_id", None),
        ("tool_call_id", "toolu_01A09q90qw90lq917835lq9 ツ"),
    ],
)
def test_extreme_values_round_trip(field: str, value: Any) -> None:
    record = _tool_span_record()
    record[field] = value
    decoded = CODEC.decode(CODEC.encode(record))
    assert decoded == as_decoded(record)
    assert repr(decoded[field]) == repr(as_decoded(record)[field])  # -0.0 keeps its sign


TOOL_SPAN = REGISTRY.latest("tool_span")
"""The newest tool_span version: what the SDK writes and the codec reads with."""
NEWEST = f"tool_span v{TOOL_SPAN.version}"


def _tool_span_record() -> dict[str, Any]:
    """A tool span of the newest version: the fields every version has, and the fields
    later versions added at their defaults."""
    record = _tool_span_fields()
    for f in TOOL_SPAN.schema["fields"]:
        record.setdefault(f["name"], f.get("default"))
    return record


def _tool_span_fields() -> dict[str, Any]:
    return {
        "event_id": "0190a3b4-0000-7000-8000-000000000001",
        "event_type": "tool_span",
        "schema_version": TOOL_SPAN.version,
        "tenant": "acme",
        "task_id": "task-1",
        "task_type": "refund",
        "agent_name": "support",
        "agent_version": "2.0.0",
        "trace_id": "a" * 32,
        "span_id": "b" * 16,
        "parent_span_id": "c" * 16,
        "step": 1,
        "seq": 3,
        "ts": 1_700_000_000_000_000,
        "producer_id": "p-1",
        "producer_seq": 9,
        "tool": "refund",
        "tool_version": "1",
        "args_json": "{}",
        "args_hash": "d" * 64,
        "idempotency_key": None,
        "attempt": 1,
        "side_effect": "write",
        "declared": True,
        "result_summary": None,
        "result_size": 0,
        "latency_ms": 3.25,
        "success": True,
        "error_type": None,
        "error_detail": None,
        "redactions": [],
        "prev_hash": "",
        "hash": "",
    }


# --- sealing --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@FEW
@given(data=st.data())
def test_seal_sets_the_hash_that_canonical_hash_reproduces(
    family: str, data: st.DataObject
) -> None:
    entry = REGISTRY.latest(family)
    record = data.draw(event_strategy(entry), label="record")
    prev = data.draw(st.sampled_from(["", hashlib.sha256(b"previous").hexdigest()]), label="prev")

    framed = seal(entry, record, prev)

    expected = hashlib.sha256(avro_body(entry, {**record, "hash": ""})).hexdigest()
    assert record["prev_hash"] == prev
    assert record["hash"] == expected
    assert canonical_hash(entry, record) == expected
    assert framed == header(entry) + avro_body(entry, record)  # the spliced fast path
    assert CODEC.decode(framed)["hash"] == expected


@pytest.mark.parametrize("family", FAMILIES)
@VERY_FEW
@given(data=st.data())
def test_changing_any_field_changes_the_hash(family: str, data: st.DataObject) -> None:
    entry, record, _ = draw_payload(data, family)
    sealed_hash = record["hash"]

    for field in entry.schema["fields"]:
        name = field["name"]
        if name == "hash":
            continue
        changed = {**record, name: different_value(field["type"], record[name])}
        assert avro_body(entry, changed) != avro_body(entry, record), name
        assert canonical_hash(entry, changed) != sealed_hash, f"changing {name} kept the hash"
    # The hash field itself is not part of the canonical bytes.
    assert canonical_hash(entry, {**record, "hash": "f" * 64}) == sealed_hash


# --- fuzzed and mutated bytes ---------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@VERY_FEW
@given(data=st.data())
def test_every_truncation_is_refused_as_truncated(family: str, data: st.DataObject) -> None:
    _, _, payload = draw_payload(data, family)
    for cut in range(len(payload)):
        with pytest.raises(TruncatedPayload):
            CODEC.decode(payload[:cut])


@pytest.mark.parametrize("family", FAMILIES)
@FEW
@given(data=st.data(), extra=st.binary(min_size=1, max_size=32))
def test_appended_bytes_are_refused_as_trailing(
    family: str, data: st.DataObject, extra: bytes
) -> None:
    _, _, payload = draw_payload(data, family)
    with pytest.raises(TrailingBytes, match=f"^{len(extra)} bytes left over"):
        CODEC.decode(payload + extra)


@pytest.mark.parametrize("family", FAMILIES)
@FEW
@given(data=st.data())
def test_flipped_bytes_decode_or_raise_decode_error_only(family: str, data: st.DataObject) -> None:
    _, _, payload = draw_payload(data, family)
    mutated = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(payload) - 1), label="position")
        mutated[at] ^= data.draw(st.integers(1, 255), label="mask")

    outcome = decode_or_refusal(bytes(mutated))

    if mutated[0] != 0:
        assert isinstance(outcome, BadMagicByte)


@pytest.mark.parametrize("family", FAMILIES)
@FEW
@given(data=st.data(), tail=st.binary(max_size=200))
def test_random_bytes_after_a_valid_prefix_decode_or_raise_decode_error_only(
    family: str, data: st.DataObject, tail: bytes
) -> None:
    _, _, payload = draw_payload(data, family)
    keep = data.draw(st.integers(5, len(payload)), label="kept prefix")
    decode_or_refusal(payload[:keep] + tail)


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300), schema_id=st.sampled_from([1, 2, 3, 4, 5]))
def test_random_body_after_a_valid_header_raises_decode_error_only(
    body: bytes, schema_id: int
) -> None:
    decode_or_refusal(frame(schema_id, body))


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=64))
def test_arbitrary_bytes_raise_decode_error_only(payload: bytes) -> None:
    outcome = decode_or_refusal(payload)
    if len(payload) < 5:
        assert isinstance(outcome, TruncatedPayload)
    elif payload[0] != 0:
        assert isinstance(outcome, BadMagicByte)


# --- each refusal, by its own type ----------------------------------------------------------


@pytest.fixture
def payload() -> bytes:
    entry = REGISTRY.latest("tool_span")
    return seal(entry, _tool_span_record(), "")


def test_wrong_magic_byte_is_bad_magic_byte(payload: bytes) -> None:
    with pytest.raises(BadMagicByte, match="First byte is 0x01") as caught:
        CODEC.decode(b"\x01" + payload[1:])
    assert caught.value.reason == "bad_magic_byte"


def test_unregistered_schema_id_is_unknown_schema_id(payload: bytes) -> None:
    with pytest.raises(UnknownSchemaId, match="Schema id 4242 is not in the registry"):
        CODEC.decode(b"\x00" + (4242).to_bytes(4, "big") + payload[5:])


def test_body_cut_short_is_truncated(payload: bytes) -> None:
    with pytest.raises(TruncatedPayload, match=f"{NEWEST} body ends early"):
        CODEC.decode(payload[:-1])


def test_header_cut_short_is_truncated(payload: bytes) -> None:
    with pytest.raises(TruncatedPayload, match="3 bytes is shorter than the 5-byte"):
        CODEC.decode(payload[:3])


def test_truncation_inside_a_varint_is_truncated_not_malformed() -> None:
    # seq = 300 encodes as the two-byte zig-zag varint d8 04; cutting after d8 leaves
    # the varint unfinished.
    record = _tool_span_record()
    record["seq"] = 300
    payload = seal(REGISTRY.latest("tool_span"), record, "")
    cut = payload.index(bytes([0xD8, 0x04])) + 1
    with pytest.raises(TruncatedPayload):
        CODEC.decode(payload[:cut])


def test_bytes_after_the_record_are_trailing(payload: bytes) -> None:
    with pytest.raises(TrailingBytes, match=r"^1 bytes left over after a complete tool_span"):
        CODEC.decode(payload + b"\x00")


def test_payload_over_the_limit_is_oversize(payload: bytes) -> None:
    assert EventCodec(max_payload_bytes=len(payload)).decode(payload)["tool"] == "refund"
    with pytest.raises(OversizePayload, match=f"Payload of {len(payload)} bytes exceeds"):
        EventCodec(max_payload_bytes=len(payload) - 1).decode(payload)


def test_invalid_union_index_is_malformed() -> None:
    # parent_span_id = None and = "" encode alike up to the union branch index
    # (0x00 for null, 0x02 for string); index 2 (zig-zag 0x04) does not exist.
    entry = REGISTRY.latest("tool_span")
    as_null = avro_body(entry, {**_tool_span_record(), "parent_span_id": None})
    as_text = avro_body(entry, {**_tool_span_record(), "parent_span_id": ""})
    at = next(i for i, (a, b) in enumerate(zip(as_null, as_text, strict=False)) if a != b)
    assert (as_null[at], as_text[at]) == (0x00, 0x02)
    broken = frame(entry.schema_id, as_null[:at] + b"\x04" + as_null[at + 1 :])
    with pytest.raises(MalformedBody, match=f"{NEWEST} body is not a valid record"):
        CODEC.decode(broken)


def test_decode_error_reasons_are_distinct() -> None:
    kinds = [BadMagicByte, UnknownSchemaId, TruncatedPayload, TrailingBytes, OversizePayload]
    reasons = [k.reason for k in [*kinds, MalformedBody]]
    assert len(set(reasons)) == 6
    assert all(issubclass(k, DecodeError) for k in [*kinds, MalformedBody])


def test_encoding_a_record_missing_a_field_is_an_encode_error() -> None:
    record = _tool_span_record()
    del record["tool"]
    with pytest.raises(EncodeError, match=NEWEST):
        CODEC.encode(record)


# --- ids ------------------------------------------------------------------------------------


def test_uuid7_has_version_7_and_the_rfc_variant() -> None:
    for text in (uuid7() for _ in range(200)):
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # canonical lowercase 8-4-4-4-12 text


def test_uuid7_carries_the_current_millisecond() -> None:
    before = datetime.now(UTC)
    ms = uuid.UUID(uuid7()).int >> 80
    after = datetime.now(UTC)
    # Earlier ids of this process may have pushed the clock up by a few counter overflows.
    assert int(before.timestamp() * 1000) - 1 <= ms <= int(after.timestamp() * 1000) + 50


def test_uuid7_is_strictly_increasing_within_the_process() -> None:
    ids = [uuid7() for _ in range(20_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    numeric = [uuid.UUID(i).int for i in ids]
    assert all(a < b for a, b in itertools.pairwise(numeric))


def test_uuid7_counter_overflow_borrows_the_next_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen_ms = 1_700_000_000_000
    monkeypatch.setattr(_ids, "_last_ms", 0)
    monkeypatch.setattr(_ids, "_counter", 0)
    monkeypatch.setattr(_ids, "time", types.SimpleNamespace(time_ns=lambda: frozen_ms * 10**6))

    ids = [uuid.UUID(uuid7()).int for _ in range(4098)]

    fields = [(i >> 80, (i >> 64) & 0xFFF) for i in ids]
    assert fields[0] == (frozen_ms, 0)
    assert fields[4095] == (frozen_ms, 0xFFF)
    assert fields[4096] == (frozen_ms + 1, 0)
    assert fields[4097] == (frozen_ms + 1, 1)
    assert all(a < b for a, b in itertools.pairwise(ids))


def test_uuid7_is_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def make(bucket: list[str]) -> None:
        bucket.extend(uuid7() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for bucket in results:
        assert bucket == sorted(bucket)
    assert len({i for bucket in results for i in bucket}) == 8000


# --- models ---------------------------------------------------------------------------------


def test_models_have_exactly_the_schema_fields() -> None:
    for family in FAMILIES:
        assert set(MODELS[family].model_fields) == set(REGISTRY.latest(family).field_names)


@pytest.mark.parametrize("family", FAMILIES)
@FEW
@given(data=st.data())
def test_parse_event_of_a_decoded_record_and_to_record_round_trip(
    family: str, data: st.DataObject
) -> None:
    entry = REGISTRY.latest(family)
    record = data.draw(model_event_strategy(entry), label="record")
    seal(entry, record, "")
    decoded = CODEC.decode(CODEC.encode(record))

    event = parse_event(decoded)

    assert type(event) is MODELS[family]
    assert event.event_id == record["event_id"]
    assert event.ts == EPOCH + timedelta(microseconds=record["ts"])
    assert event.hash == record["hash"]
    assert parse_event(dict(record)) == event  # hand-built input: ts as micros, id as text
    assert event.to_record() == record
    assert CODEC.decode(CODEC.encode(event.to_record())) == decoded
    assert canonical_hash(entry, event.to_record()) == record["hash"]


def test_parse_event_names_the_invalid_field() -> None:
    record = {**_tool_span_record(), "attempt": 0}
    with pytest.raises(ValidationError, match="attempt"):
        parse_event(record)
