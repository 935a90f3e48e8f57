"""Hypothesis strategies built from Avro schemas, and value mutations for hash tests.

``record_strategy(schema)`` draws records that the schema can encode: unicode text
(astral code points included), None for optional fields, ints over the whole int/long
range, finite floats (0, -0.0, negatives, extremes; never NaN), timestamps within what
a ``datetime`` can hold. ``different_value`` returns a value of the same Avro type that
differs from the given one, so that a test can change any field.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from agenttrail.events import SideEffect, to_micros

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
# fastavro decodes timestamp-micros into a datetime: only years 1..9999 can be read back.
TS_MIN = to_micros(datetime(1, 1, 1, tzinfo=UTC))
TS_MAX = to_micros(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))

AvroType = Any  # a type in Avro JSON form: "string", {"type": ...}, [union branches]


def _kind(avro_type: AvroType) -> str:
    if isinstance(avro_type, list):
        return "union"
    if isinstance(avro_type, dict):
        return str(avro_type["type"])
    return str(avro_type)


def _logical(avro_type: AvroType) -> str | None:
    return avro_type.get("logicalType") if isinstance(avro_type, dict) else None


def type_strategy(avro_type: AvroType, named: dict[str, AvroType] | None = None) -> Any:
    """A strategy for values of one Avro type (JSON form).

    Named types (records, enums, fixed) are remembered in ``named`` when defined and
    resolved when referenced by name later in the same schema.
    """
    named = {} if named is None else named
    kind = _kind(avro_type)
    logical = _logical(avro_type)
    if kind in named and not isinstance(avro_type, dict):
        return type_strategy(named[kind], named)
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "int":
        return st.integers(INT_MIN, INT_MAX)
    if kind == "long":
        if logical == "timestamp-micros":
            return st.integers(TS_MIN, TS_MAX)
        return st.integers(LONG_MIN, LONG_MAX)
    if kind == "float":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if kind == "double":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "string":
        if logical == "uuid":
            return st.uuids().map(str)
        return st.text(max_size=40)
    if kind == "bytes":
        return st.binary(max_size=40)
    if kind == "union":
        return st.one_of([type_strategy(branch, named) for branch in avro_type])
    if kind == "array":
        return st.lists(type_strategy(avro_type["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=8), type_strategy(avro_type["values"], named), max_size=3
        )
    if kind == "enum":
        named[avro_type["name"]] = avro_type
        return st.sampled_from(avro_type["symbols"])
    if kind == "fixed":
        named[avro_type["name"]] = avro_type
        return st.binary(min_size=avro_type["size"], max_size=avro_type["size"])
    if kind == "record":
        named[avro_type["name"]] = avro_type
        return st.fixed_dictionaries(
            {f["name"]: type_strategy(f["type"], named) for f in avro_type["fields"]}
        )
    raise ValueError(f"No strategy for Avro type {avro_type!r}")


def record_strategy(
    schema: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Records of a record schema; ``overrides`` replaces the strategy of top-level fields."""
    named: dict[str, AvroType] = {str(schema["name"]): schema}
    fields = {}
    for f in schema["fields"]:
        if overrides and f["name"] in overrides:
            fields[f["name"]] = overrides[f["name"]]
        else:
            fields[f["name"]] = type_strategy(f["type"], named)
    return st.fixed_dictionaries(fields)


def event_strategy(entry: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Codec-valid events of a registry entry: ``event_type`` names the family."""
    return record_strategy(
        entry.schema,
        {"event_type": st.just(entry.event_type), "schema_version": st.just(entry.version)},
    )


_NON_NEGATIVE = st.integers(0, LONG_MAX)
_NON_NEGATIVE_INT = st.integers(0, INT_MAX)
_NON_NEGATIVE_FLOAT = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
_MODEL_CONSTRAINTS: dict[str, Any] = {
    # Fields the pydantic models constrain beyond their Avro type.
    "step": _NON_NEGATIVE_INT,
    "seq": _NON_NEGATIVE,
    "producer_seq": _NON_NEGATIVE,
    "message_count": _NON_NEGATIVE_INT,
    "input_tokens": _NON_NEGATIVE,
    "output_tokens": _NON_NEGATIVE,
    "cached_tokens": _NON_NEGATIVE,
    "latency_ms": _NON_NEGATIVE_FLOAT,
    "attempt": st.integers(1, INT_MAX),
    "side_effect": st.sampled_from([s.value for s in SideEffect]),
    "result_size": _NON_NEGATIVE,
    "direction": st.sampled_from(["sent", "received"]),
    "payload_size": _NON_NEGATIVE,
    "interval_s": _NON_NEGATIVE_FLOAT,
}


def model_event_strategy(entry: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Events that both the codec and the pydantic models accept."""
    overrides = {
        name: strategy for name, strategy in _MODEL_CONSTRAINTS.items() if name in entry.field_names
    }
    overrides |= {"event_type": st.just(entry.event_type), "schema_version": st.just(entry.version)}
    return record_strategy(entry.schema, overrides)


# --- mutations ---------------------------------------------------------------------------


def sample_value(avro_type: AvroType) -> Any:
    """A fixed, valid value of a type (the non-null side of an optional field)."""
    kind = _kind(avro_type)
    if kind == "union":
        branches = [b for b in avro_type if _kind(b) != "null"] or avro_type
        return sample_value(branches[0])
    if kind == "string":
        return "00000000-0000-7000-8000-000000000000" if _logical(avro_type) == "uuid" else "x"
    if kind == "record":
        return {f["name"]: sample_value(f["type"]) for f in avro_type["fields"]}
    simple = {"null": None, "boolean": True, "int": 1, "long": 1, "float": 1.0, "double": 1.0}
    if kind in simple:
        return simple[kind]
    if kind in ("bytes", "fixed"):
        return bytes(avro_type["size"]) if kind == "fixed" else b"x"
    if kind in ("array", "map"):
        return [] if kind == "array" else {}
    if kind == "enum":
        return avro_type["symbols"][0]
    raise ValueError(f"No sample for Avro type {avro_type!r}")


def different_value(avro_type: AvroType, value: Any) -> Any:
    """A valid value of ``avro_type`` whose Avro encoding differs from that of ``value``."""
    kind = _kind(avro_type)
    if kind == "union":
        has_null = any(_kind(b) == "null" for b in avro_type)
        if value is None:
            return sample_value(avro_type)
        if has_null:
            return None
        return different_value(_branch_of(avro_type, value), value)
    if kind == "boolean":
        return not value
    if kind in ("int", "long"):
        return value ^ 1  # stays within range, also at either end
    if kind in ("float", "double"):
        return -value if value != 0 else 1.0  # -x differs in the sign bit, even for huge x
    if kind == "string":
        if _logical(avro_type) == "uuid":
            return str(uuid.UUID(int=uuid.UUID(value).int ^ 1))
        return value + "x"
    if kind == "bytes":
        return value + b"x"
    if kind == "array":
        return [*value, sample_value(avro_type["items"])]
    if kind == "map":
        return {**value, "\x00new": sample_value(avro_type["values"])}
    if kind == "enum":
        symbols = avro_type["symbols"]
        return symbols[(symbols.index(value) + 1) % len(symbols)]
    if kind == "record":
        first = avro_type["fields"][0]
        return {**value, first["name"]: different_value(first["type"], value[first["name"]])}
    raise ValueError(f"Cannot change a value of Avro type {avro_type!r}")


def _branch_of(union: list[AvroType], value: Any) -> AvroType:
    python_kinds = {
        bool: ("boolean",),
        int: ("int", "long"),
        float: ("float", "double"),
        str: ("string", "enum"),
        bytes: ("bytes", "fixed"),
        list: ("array",),
        dict: ("record", "map"),
    }
    wanted = python_kinds.get(type(value), ())
    for branch in union:
        if _kind(branch) in wanted:
            return branch
    raise ValueError(f"No branch of {union!r} holds {value!r}")
