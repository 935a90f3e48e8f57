"""Between a family table's row and the Avro record it was stored from.

The consumer flattens an optional nested record field ``f`` into ``has_f`` and
``f_<sub>`` columns and keeps every other field as a column of the same name.
:func:`row_to_record` undoes that, so that the seal of a stored or exported row can be
recomputed in Python with the very code that sealed it (``canonical_hash``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agenttrail.events import SchemaEntry, SchemaRegistry, canonical_hash


def _nested(field_type: Any) -> dict[str, Any] | None:
    branches = field_type if isinstance(field_type, list) else [field_type]
    for branch in branches:
        if isinstance(branch, dict) and branch.get("type") == "record":
            return branch
    return None


def record_to_row(entry: SchemaEntry, record: Mapping[str, Any]) -> dict[str, Any]:
    """The table columns of one record (without the Kafka columns)."""
    row: dict[str, Any] = {}
    for f in entry.schema["fields"]:
        name = f["name"]
        nested = _nested(f["type"])
        if nested is None:
            row[name] = record.get(name)
            continue
        inner = record.get(name)
        row[f"has_{name}"] = inner is not None
        for sub in nested["fields"]:
            is_array = isinstance(sub["type"], dict) and sub["type"].get("type") == "array"
            default: Any = [] if is_array else None
            row[f"{name}_{sub['name']}"] = default if inner is None else inner[sub["name"]]
    return row


def _micros(value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta: timedelta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, str):
        parsed: datetime = datetime.fromisoformat(value)
        return _micros(parsed)
    return int(value)


def _logical(avro_type: Any) -> str | None:
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        return str(logical) if logical is not None else None
    return None


def _convert(avro_type: Any, value: Any) -> Any:
    """A column value (from the engine or an export) as fastavro expects it."""
    if isinstance(avro_type, list):
        if value is None:
            return None
        other = next(b for b in avro_type if b != "null")
        return _convert(other, value)
    if _logical(avro_type) == "timestamp-micros":
        return _micros(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    kind = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    if kind == "array":
        return [_convert(avro_type["items"], v) for v in value]
    if kind in ("long", "int") and not isinstance(value, bool):
        return int(value)
    if kind in ("double", "float"):
        return float(value)
    if kind == "boolean":
        return bool(value)
    return value


def row_to_record(entry: SchemaEntry, row: Mapping[str, Any]) -> dict[str, Any]:
    """The Avro record (writer schema ``entry``) a family table's row was stored from.

    Raises:
        KeyError: the row lacks a column the writer schema needs.
    """
    record: dict[str, Any] = {}
    for f in entry.schema["fields"]:
        name = f["name"]
        nested = _nested(f["type"])
        if nested is None:
            record[name] = _convert(f["type"], row[name])
            continue
        if not row[f"has_{name}"]:
            record[name] = None
            continue
        record[name] = {
            sub["name"]: _convert(sub["type"], row[f"{name}_{sub['name']}"])
            for sub in nested["fields"]
        }
    return record


def expected_hash(registry: SchemaRegistry, event_type: str, row: Mapping[str, Any]) -> str:
    """The hash a stored row should carry, or ``''`` when it cannot be rebuilt."""
    version = int(row["schema_version"])
    entry = next(
        (e for e in registry.entries if e.event_type == event_type and e.version == version),
        None,
    )
    if entry is None:
        return ""
    try:
        return canonical_hash(entry, row_to_record(entry, row))
    except (KeyError, ValueError, TypeError, StopIteration):
        return ""
    except Exception:  # EncodeError and fastavro's many types: the row cannot be rebuilt
        return ""


__all__ = ["expected_hash", "record_to_row", "row_to_record"]
