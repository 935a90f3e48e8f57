"""Reproduce an event's seal in ClickHouse SQL: its canonical Avro bytes, then SHA-256.

An event's ``hash`` is the SHA-256 of its Avro body with ``hash`` set to the empty
string (``agenttrail.events.seal``). Avro's binary encoding is simple enough to write
as SQL over a family's table columns — zig-zag varints, length-prefixed strings, 8-byte
little-endian doubles, union branch indexes, single-block arrays —, so that ``verify``
recomputes every hash inside the engine instead of shipping every row to Python.
:func:`seal_sql` renders it from the writer's schema; tests compare it with
``canonical_hash`` on every family and at every varint length, so the two can never
silently disagree.

Each integer to encode becomes a column of a subquery (its value, then its zig-zag
form one subquery further out) that the varint bytes then refer to: a column, unlike
an alias, is never expanded back into its expression, so the statement stays small
and the engine computes each value once.

Columns follow the consumer's table layout: a field is a column of the same name; a
nested record field ``f`` is ``has_f`` plus ``f_<sub>`` columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agenttrail.events import SchemaEntry


class UnsupportedSchema(Exception):
    """A schema uses an Avro type this renderer does not reproduce (maps, enums, fixed…)."""


_MAX_VARINT_BYTES = 10


@dataclass
class _Bindings:
    """Columns computed in two subqueries: integer values, then their zig-zag forms."""

    prefix: str
    values: list[str] = field(default_factory=list)
    zigzags: list[str] = field(default_factory=list)

    def bind_long(self, signed: str) -> str:
        n = len(self.values)
        v, z = f"__{self.prefix}v{n}", f"__{self.prefix}z{n}"
        self.values.append(f"toInt64({signed}) AS {v}")
        self.zigzags.append(f"{_zigzag(v)} AS {z}")
        return z


def _varint_of(z: str) -> str:
    """SQL: the varint bytes of the UInt64 name or expression ``z``.

    All ten possible bytes are computed branch-free (each with its continuation bit set
    when higher bits remain), then cut to the encoded length.
    """
    groups = []
    for i in range(_MAX_VARINT_BYTES):
        shifted = f"bitShiftRight({z}, {7 * i})" if i else z
        more = f"if({z} >= {1 << (7 * (i + 1))}, 128, 0)" if i < _MAX_VARINT_BYTES - 1 else "0"
        groups.append(f"bitOr(bitAnd({shifted}, 127), {more})")
    length = " + ".join(f"({z} >= {1 << (7 * n)})" for n in range(1, _MAX_VARINT_BYTES))
    return f"substring(char({', '.join(groups)}), 1, 1 + {length})"


def _zigzag(v: str) -> str:
    return (
        f"if({v} >= 0, bitShiftLeft(toUInt64({v}), 1), bitShiftLeft(toUInt64(-({v} + 1)), 1) + 1)"
    )


class _Renderer:
    def __init__(self, bindings: _Bindings | None):
        self.b = bindings  # None inside array lambdas: nothing can be bound there

    def long(self, signed: str) -> str:
        if self.b is None:
            # Inside a lambda: small values only (array lengths of items), kept inline.
            return _varint_of(f"toUInt64({_zigzag(f'toInt64({signed})')})")
        return _varint_of(self.b.bind_long(signed))

    def string(self, expr: str) -> str:
        text = f"toString({expr})"
        return f"concat({self.long(f'length({text})')}, {text})"

    def value(self, avro_type: Any, expr: str) -> str:
        if isinstance(avro_type, list):
            return self.union(avro_type, expr)
        if isinstance(avro_type, dict):
            kind = avro_type.get("type")
            if kind == "array":
                return self.array(avro_type["items"], expr)
            logical = avro_type.get("logicalType")
            if logical is not None and logical not in ("timestamp-micros", "uuid"):
                raise UnsupportedSchema(f"logical type {logical!r}")
            if isinstance(kind, str):
                return self.primitive(kind, expr, logical)
            raise UnsupportedSchema(f"Avro type {kind!r}")
        return self.primitive(str(avro_type), expr, None)

    def primitive(self, kind: str, expr: str, logical: str | None) -> str:
        if kind == "null":
            return "''"
        if kind in ("string", "bytes"):
            return self.string(expr)
        if kind in ("long", "int"):
            if logical == "timestamp-micros":
                return self.long(f"toUnixTimestamp64Micro({expr})")
            return self.long(expr)
        if kind == "double":
            # reinterpretAsString drops trailing zero bytes; pad them back to 8.
            return f"rightPad(reinterpretAsString(toFloat64({expr})), 8, char(0))"
        if kind == "float":
            return f"rightPad(reinterpretAsString(toFloat32({expr})), 4, char(0))"
        if kind == "boolean":
            return f"if({expr}, char(1), char(0))"
        raise UnsupportedSchema(f"Avro type {kind!r}")

    def union(self, branches: list[Any], expr: str) -> str:
        if len(branches) != 2 or "null" not in branches:
            raise UnsupportedSchema(f"union {branches!r} (only [null, T] and [T, null])")
        null_index = branches.index("null")
        other = branches[1 - null_index]
        inner = self.value(other, f"assumeNotNull({expr})")
        return (
            f"if(isNull({expr}), {_index(null_index)}, concat({_index(1 - null_index)}, {inner}))"
        )

    def array(self, items: Any, expr: str) -> str:
        # Integers and string lengths are zig-zagged in a pass of their own, so that the
        # varint bytes refer to a lambda argument instead of repeating the expression.
        if items in ("long", "int"):
            zigzags = f"arrayMap(x -> {_zigzag('toInt64(x)')}, {expr})"
            mapped = f"arrayMap(x -> {_varint_of('x')}, {zigzags})"
        elif items in ("string", "bytes"):
            texts = f"arrayMap(x -> toString(x), {expr})"
            lengths = f"arrayMap(x -> {_zigzag('toInt64(length(x))')}, {texts})"
            mapped = f"arrayMap((x, z) -> concat({_varint_of('z')}, x), {texts}, {lengths})"
        else:
            mapped = f"arrayMap(x -> {_Renderer(None).value(items, 'x')}, {expr})"
        return (
            f"if(empty({expr}), char(0), concat({self.long(f'length({expr})')}, "
            f"arrayStringConcat({mapped}), char(0)))"
        )


def _index(value: int) -> str:
    """SQL literal of the Avro encoding of a union branch index."""
    if value * 2 >= 128:
        raise UnsupportedSchema(f"union index {value} is too large")
    return f"char({value * 2})"


def _nested_record(field_type: Any) -> tuple[int, dict[str, Any]] | None:
    """(null branch index, record) when the field is an optional nested record."""
    if isinstance(field_type, list) and len(field_type) == 2 and "null" in field_type:
        null_index = field_type.index("null")
        other = field_type[1 - null_index]
        if isinstance(other, dict) and other.get("type") == "record":
            return null_index, other
    if isinstance(field_type, dict) and field_type.get("type") == "record":
        raise UnsupportedSchema("a required nested record (only optional ones are flattened)")
    return None


@dataclass(frozen=True)
class SealSql:
    """SQL that recomputes one schema version's seal over a family table's rows.

    Attributes:
        values: ``expr AS name`` columns of the first subquery over the table.
        zigzags: ``expr AS name`` columns of the second, over the first.
        digest: the hex SHA-256 expression over the second.
    """

    values: tuple[str, ...]
    zigzags: tuple[str, ...]
    digest: str


def seal_sql(entry: SchemaEntry, columns: frozenset[str], prefix: str = "a") -> SealSql:
    """The SQL seal of ``entry`` (the writer's schema) over a table with ``columns``.

    Raises:
        UnsupportedSchema: a field type or a missing column prevents reproducing the bytes.
    """
    bindings = _Bindings(prefix)
    r = _Renderer(bindings)
    parts: list[str] = []
    for f in entry.schema["fields"]:
        name = f["name"]
        if name == "hash":
            parts.append("char(0)")  # hash is sealed as the empty string
            continue
        nested = _nested_record(f["type"])
        if nested is None:
            if name not in columns:
                raise UnsupportedSchema(f"field {name!r} has no column")
            parts.append(r.value(f["type"], f"`{name}`"))
            continue
        null_index, record = nested
        subs: list[str] = []
        for sub in record["fields"]:
            column = f"{name}_{sub['name']}"
            if column not in columns:
                raise UnsupportedSchema(f"field {name}.{sub['name']} has no column {column!r}")
            subs.append(r.value(sub["type"], f"`{column}`"))
        parts.append(
            f"if(`has_{name}`, concat({_index(1 - null_index)}, {', '.join(subs)}), "
            f"{_index(null_index)})"
        )
    digest = f"lower(hex(SHA256(concat({', '.join(parts)}))))"
    return SealSql(tuple(bindings.values), tuple(bindings.zigzags), digest)


def family_seal_sql(entries: list[SchemaEntry], columns: frozenset[str]) -> SealSql:
    """The seal of every version of one family, chosen per row by ``schema_version``.

    A row whose version is unknown (or cannot be rebuilt from the columns) yields
    ``''``, which never equals a real hash, so it is reported, never passed.
    """
    values: list[str] = []
    zigzags: list[str] = []
    branches: list[str] = []
    for entry in sorted(entries, key=lambda e: e.version):
        try:
            sql = seal_sql(entry, columns, prefix=f"v{entry.version}_")
        except UnsupportedSchema:
            continue
        values.extend(sql.values)
        zigzags.extend(sql.zigzags)
        branches.append(f"schema_version = {entry.version}, {sql.digest}")
    if not branches:
        return SealSql((), (), "''")
    return SealSql(tuple(values), tuple(zigzags), f"multiIf({', '.join(branches)}, '')")


def hash_select(entries: list[SchemaEntry], columns: frozenset[str], source: str) -> str:
    """SQL: ``SELECT *, <seal> AS expected_hash FROM (<source> with the bindings)``.

    ``source`` is a ``FROM``-able table or subquery (with its own ``WHERE``).
    """
    sql = family_seal_sql(entries, columns)
    values = "".join(f", {b}" for b in sql.values)
    zigzags = "".join(f", {b}" for b in sql.zigzags)
    return (
        f"SELECT *, {sql.digest} AS expected_hash FROM "
        f"(SELECT *{zigzags} FROM (SELECT *{values} FROM {source}))"
    )


__all__ = ["SealSql", "UnsupportedSchema", "family_seal_sql", "hash_select", "seal_sql"]
