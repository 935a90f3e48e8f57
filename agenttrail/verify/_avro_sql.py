"""Reproduce an event's seal in ClickHouse SQL: its canonical Avro bytes, then SHA-256.

An event's ``hash`` is the SHA-256 of its Avro body with ``hash`` set to the empty
string (``agenttrail.events.seal``). Avro's binary encoding is simple enough to write
as a SQL expression over a family's table columns — zig-zag varints, length-prefixed
strings, 8-byte little-endian doubles, union branch indexes, single-block arrays —, so
that ``verify`` recomputes every hash inside the engine instead of shipping every row
to Python. :func:`hash_expression` renders that expression from the writer's schema;
a unit test compares it with ``canonical_hash`` on generated records, so the two can
never silently disagree.

Columns follow the consumer's table layout: a field is a column of the same name; a
nested record field ``f`` is ``has_f`` plus ``f_<sub>`` columns.
"""

from __future__ import annotations

from typing import Any

from agenttrail.events import SchemaEntry


class UnsupportedSchema(Exception):
    """A schema uses an Avro type this renderer does not reproduce (maps, enums, fixed…)."""


_MAX_VARINT_BYTES = 10


def varint(unsigned: str) -> str:
    """SQL: the Avro varint bytes of a UInt64 expression (7 bits a byte, low first)."""
    z = f"toUInt64({unsigned})"
    # Number of bytes: one, plus one for each further group of 7 bits in use.
    n = f"(1 + arrayCount(i -> bitShiftRight({z}, 7 * i) != 0, range(1, {_MAX_VARINT_BYTES})))"
    return (
        f"arrayStringConcat(arrayMap(i -> char(bitOr(bitAnd(bitShiftRight({z}, 7 * i), 127), "
        f"if(i + 1 < {n}, 128, 0))), range({n})))"
    )


def zigzag_long(signed: str) -> str:
    """SQL: an Avro ``long``/``int`` (zig-zag, then varint) of a signed integer expression."""
    v = f"toInt64({signed})"
    z = f"if({v} >= 0, bitShiftLeft(toUInt64({v}), 1), bitShiftLeft(toUInt64(-({v} + 1)), 1) + 1)"
    return varint(z)


def _small_long(value: int) -> str:
    """SQL literal of the Avro encoding of a small non-negative constant (a union index)."""
    z = value * 2
    if z >= 128:
        raise UnsupportedSchema(f"union index {value} is too large")
    return f"char({z})"


def avro_string(expr: str) -> str:
    """SQL: an Avro ``string``/``bytes`` (byte length, then the bytes)."""
    s = f"toString({expr})"
    return f"concat({zigzag_long(f'length({s})')}, {s})"


def _value(avro_type: Any, expr: str, *, non_null: bool = False) -> str:
    """SQL for one Avro value of ``avro_type`` held in column expression ``expr``."""
    if isinstance(avro_type, list):
        return _union(avro_type, expr)
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "array":
            return _array(avro_type["items"], expr)
        if kind in ("string", "bytes", "long", "int", "double", "boolean", "float"):
            logical = avro_type.get("logicalType")
            if logical is not None and logical not in ("timestamp-micros", "uuid"):
                raise UnsupportedSchema(f"logical type {logical!r}")
            return _primitive(kind, expr, logical)
        raise UnsupportedSchema(f"Avro type {kind!r}")
    return _primitive(avro_type, expr, None)


def _primitive(kind: str, expr: str, logical: str | None) -> str:
    if kind == "null":
        return "''"
    if kind in ("string", "bytes"):
        return avro_string(expr)
    if kind in ("long", "int"):
        if logical == "timestamp-micros":
            return zigzag_long(f"toUnixTimestamp64Micro({expr})")
        return zigzag_long(expr)
    if kind == "double":
        # reinterpretAsString drops trailing zero bytes; pad them back to 8.
        return f"rightPad(reinterpretAsString(toFloat64({expr})), 8, char(0))"
    if kind == "float":
        return f"rightPad(reinterpretAsString(toFloat32({expr})), 4, char(0))"
    if kind == "boolean":
        return f"if({expr}, char(1), char(0))"
    raise UnsupportedSchema(f"Avro type {kind!r}")


def _union(branches: list[Any], expr: str) -> str:
    if len(branches) != 2 or "null" not in branches:
        raise UnsupportedSchema(f"union {branches!r} (only [null, T] and [T, null])")
    null_index = branches.index("null")
    other_index = 1 - null_index
    other = branches[other_index]
    inner = _value(other, f"assumeNotNull({expr})")
    return (
        f"if(isNull({expr}), {_small_long(null_index)}, "
        f"concat({_small_long(other_index)}, {inner}))"
    )


def _array(items: Any, expr: str) -> str:
    item = _value(items, "x")
    return (
        f"if(empty({expr}), char(0), concat({zigzag_long(f'length({expr})')}, "
        f"arrayStringConcat(arrayMap(x -> {item}, {expr})), char(0)))"
    )


def _nested_record(field_type: Any) -> tuple[int, int, dict[str, Any]] | None:
    """(null branch index, record branch index, record) when the field is [null, record]."""
    if isinstance(field_type, list) and len(field_type) == 2 and "null" in field_type:
        null_index = field_type.index("null")
        other = field_type[1 - null_index]
        if isinstance(other, dict) and other.get("type") == "record":
            return null_index, 1 - null_index, other
    if isinstance(field_type, dict) and field_type.get("type") == "record":
        raise UnsupportedSchema("a required nested record (only optional ones are flattened)")
    return None


def body_expression(entry: SchemaEntry, columns: frozenset[str]) -> str:
    """SQL: the canonical Avro body (``hash`` empty) of a row of ``entry``'s family table.

    Args:
        entry: the writer's schema (the row's ``schema_version``).
        columns: the table's columns; a writer field without a column cannot be rebuilt.

    Raises:
        UnsupportedSchema: a field type or a missing column prevents reproducing the bytes.
    """
    parts: list[str] = []
    for f in entry.schema["fields"]:
        name = f["name"]
        if name == "hash":
            parts.append("char(0)")
            continue
        nested = _nested_record(f["type"])
        if nested is None:
            if name not in columns:
                raise UnsupportedSchema(f"field {name!r} has no column")
            parts.append(_value(f["type"], f"`{name}`"))
            continue
        null_index, record_index, record = nested
        subs: list[str] = []
        for sub in record["fields"]:
            column = f"{name}_{sub['name']}"
            if column not in columns:
                raise UnsupportedSchema(f"field {name}.{sub['name']} has no column {column!r}")
            subs.append(_value(sub["type"], f"`{column}`"))
        parts.append(
            f"if(`has_{name}`, concat({_small_long(record_index)}, {', '.join(subs)}), "
            f"{_small_long(null_index)})"
        )
    return f"concat({', '.join(parts)})"


def hash_expression(entries: list[SchemaEntry], columns: frozenset[str]) -> str:
    """SQL: the hex SHA-256 each row of one family should carry, by its ``schema_version``.

    A row whose version is not among ``entries`` (or cannot be rebuilt) yields ``''``,
    which never equals a real hash, so it is reported as modified rather than passed.
    """
    branches: list[str] = []
    for entry in sorted(entries, key=lambda e: e.version):
        try:
            body = body_expression(entry, columns)
        except UnsupportedSchema:
            continue
        branches.append(f"schema_version = {entry.version}, lower(hex(SHA256({body})))")
    if not branches:
        return "''"
    return f"multiIf({', '.join(branches)}, '')"


__all__ = ["UnsupportedSchema", "avro_string", "body_expression", "hash_expression", "varint"]
