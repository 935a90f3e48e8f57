"""Every integer value checked against its column's range before the insert.

fastavro reads an Avro ``int`` of any size (2^40 included), and ClickHouse wraps an
out-of-range integer silently on some paths and refuses the whole insert on others.
Either way one bad value must not become a wrong number or a stalled partition: the
message carrying it becomes a dead letter (reason ``out_of_range``), the rest flows.

The ranges come from the columns' ClickHouse types as the store reports them (so a
``UInt16`` column is held to 0..65535 although its Avro field is an ``int``); without
the store's types, from the Avro types (``int`` → Int32, ``long`` → Int64).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agenttrail.events import SchemaEntry

Range = tuple[int, int]

_INT_TYPE = re.compile(r"^(?:Nullable\()?(U?)Int(8|16|32|64|128|256)\)?$")


def integer_range(clickhouse_type: str) -> Range | None:
    """The value range of an integer ClickHouse type (``Nullable`` allowed), else None."""
    m = _INT_TYPE.match(clickhouse_type.strip())
    if m is None:
        return None
    bits = int(m.group(2))
    if m.group(1):
        return (0, (1 << bits) - 1)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _avro_int_kind(field_type: Any) -> str | None:
    branches = field_type if isinstance(field_type, list) else [field_type]
    for b in branches:
        kind = b.get("type") if isinstance(b, dict) and "logicalType" not in b else b
        if kind in ("int", "long"):
            return str(kind)
    return None


def avro_column_ranges(entry: SchemaEntry) -> dict[str, Range]:
    """Ranges of the integer columns of a family, from its Avro types alone."""
    by_kind = {"int": integer_range("Int32"), "long": integer_range("Int64")}
    out: dict[str, Range] = {}
    for f in entry.schema["fields"]:
        kind = _avro_int_kind(f["type"])
        if kind is not None:
            rng = by_kind[kind]
            assert rng is not None
            out[f["name"]] = rng
            continue
        branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
        for b in branches:
            if isinstance(b, dict) and b.get("type") == "record":
                for sub in b["fields"]:
                    sub_kind = _avro_int_kind(sub["type"])
                    if sub_kind is not None:
                        rng = by_kind[sub_kind]
                        assert rng is not None
                        out[f"{f['name']}_{sub['name']}"] = rng
    return out


def column_ranges(
    entry: SchemaEntry, column_types: Mapping[str, str] | None = None
) -> dict[str, Range]:
    """Ranges of the integer columns of a family's table: the store's types where
    known (they may be narrower than the Avro type), else the Avro types."""
    ranges = avro_column_ranges(entry)
    for column, ch_type in (column_types or {}).items():
        rng = integer_range(ch_type)
        if rng is not None:
            ranges[column] = rng
    ranges.pop("kafka_partition", None)
    ranges.pop("kafka_offset", None)
    return ranges


def out_of_range_rows(
    columns: list[list[Any]], names: tuple[str, ...], ranges: Mapping[str, Range]
) -> dict[int, str]:
    """Rows (by index) holding a value outside its column's range, with the reason.

    Cheap when every value fits: one ``min``/``max`` per integer column.
    """
    bad: dict[int, str] = {}
    for name, values in zip(names, columns, strict=False):
        rng = ranges.get(name)
        if rng is None or not values:
            continue
        lo, hi = rng
        present = [v for v in values if v is not None] if None in values else values
        if not present or (lo <= min(present) and max(present) <= hi):
            continue
        for i, v in enumerate(values):
            if v is not None and not lo <= v <= hi and i not in bad:
                bad[i] = f"{name} is {v}; its column holds {lo}..{hi}"
    return bad
