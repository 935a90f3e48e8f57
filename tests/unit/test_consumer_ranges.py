"""Integer values are held to their column's range (issue 8 item 7)."""

from __future__ import annotations

import pytest

from agenttrail.consumers._ranges import (
    avro_column_ranges,
    column_ranges,
    integer_range,
    out_of_range_rows,
)
from agenttrail.events import default_registry

TYPES = {
    "Int8": (-128, 127),
    "Int16": (-32768, 32767),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt8": (0, 255),
    "UInt16": (0, 65535),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
}


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_every_integer_type_holds_its_bounds_and_not_one_past(kind: str) -> None:
    lo, hi = TYPES[kind]
    assert integer_range(kind) == (lo, hi)
    assert integer_range(f"Nullable({kind})") == (lo, hi)
    values = [lo, hi, hi + 1, lo - 1, None, 0]
    bad = out_of_range_rows([values], ("c",), {"c": (lo, hi)})
    assert sorted(bad) == [2, 3]
    assert str(hi + 1) in bad[2] and f"{lo}..{hi}" in bad[2]


def test_non_integer_types_have_no_range() -> None:
    for kind in ("String", "Float64", "DateTime64(6, 'UTC')", "Bool", "Enum8('a' = 1)"):
        assert integer_range(kind) is None


def test_the_store_types_narrow_the_avro_types() -> None:
    entry = default_registry().latest("tool_span")
    avro = avro_column_ranges(entry)
    assert (avro["attempt"] == TYPES["Int32"] and avro["seq"] == TYPES["Int64"]) or avro["seq"]
    narrowed = column_ranges(entry, {"attempt": "UInt16", "kafka_offset": "Int64"})
    assert narrowed["attempt"] == TYPES["UInt16"]
    assert "kafka_offset" not in narrowed


def test_rows_within_range_cost_no_scan_and_report_nothing() -> None:
    assert out_of_range_rows([[1, 2, 3], ["a", "b", "c"]], ("n", "s"), {"n": (0, 3)}) == {}
