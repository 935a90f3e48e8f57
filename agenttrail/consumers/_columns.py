"""Turn decoded records into column-oriented data for one family's table.

A table's columns are derived from the family's newest Avro schema: every field in
schema order, a nested record flattened into ``<field>_<subfield>`` columns plus
``has_<field>``, then ``kafka_partition`` and ``kafka_offset``. ``ingested_at`` and
``first_seen`` are filled by the store's column defaults. The migrations create the
same columns; an integration test compares the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agenttrail.events import SchemaEntry
from agenttrail.store import KAFKA_COLUMNS

Getter = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class TableLayout:
    """The columns of one family's table and how to read each from a record.

    Attributes:
        event_type: the family.
        columns: column names in insert order (Kafka columns last).
        getters: for each non-Kafka column, a function of the decoded record.
    """

    event_type: str
    columns: tuple[str, ...]
    getters: tuple[Getter, ...]

    def to_columns(
        self, records: Sequence[dict[str, Any]], partition: int, offsets: Sequence[int]
    ) -> list[list[Any]]:
        """Column-oriented values of ``records`` (one list per column, in ``columns`` order)."""
        data: list[list[Any]] = [[get(r) for r in records] for get in self.getters]
        data.append([partition] * len(records))
        data.append(list(offsets))
        return data


def _record_schema(field_type: Any) -> dict[str, Any] | None:
    # A nested record appears as itself or as the non-null branch of a union.
    branches = field_type if isinstance(field_type, list) else [field_type]
    for branch in branches:
        if isinstance(branch, dict) and branch.get("type") == "record":
            return branch
    return None


def _is_array(field_type: Any) -> bool:
    return isinstance(field_type, dict) and field_type.get("type") == "array"


def _plain(name: str) -> Getter:
    return lambda r: r[name]


def _present(name: str) -> Getter:
    return lambda r: r[name] is not None


def _nested(name: str, sub: str, empty: Any) -> Getter:
    def get(r: dict[str, Any]) -> Any:
        inner = r[name]
        return empty if inner is None else inner[sub]

    return get


def layout_for(entry: SchemaEntry) -> TableLayout:
    """The table layout of a family, from its (newest) schema entry."""
    names: list[str] = []
    getters: list[Getter] = []
    for f in entry.schema["fields"]:
        name = f["name"]
        nested = _record_schema(f["type"])
        if nested is None:
            names.append(name)
            getters.append(_plain(name))
            continue
        names.append(f"has_{name}")
        getters.append(_present(name))
        for sub in nested["fields"]:
            names.append(f"{name}_{sub['name']}")
            getters.append(_nested(name, sub["name"], [] if _is_array(sub["type"]) else None))
    return TableLayout(
        event_type=entry.event_type,
        columns=(*names, *KAFKA_COLUMNS),
        getters=tuple(getters),
    )


DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "topic",
    "kafka_partition",
    "kafka_offset",
    "message_key",
    "reason",
    "error",
    "raw",
    "raw_size",
    "kafka_timestamp",
)
"""Columns of ``dead_letters`` that the consumer fills (``first_seen`` defaults to now)."""


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be stored as an event.

    Attributes:
        offset: its offset in the partition.
        key: its Kafka key (raw bytes), if any.
        raw: its value, exactly as received.
        reason: machine-readable reason (``DecodeError.reason`` or ``invalid_record``).
        error: the error message, saying what is wrong.
        timestamp_ms: the Kafka timestamp, if any.
    """

    offset: int
    key: bytes | None
    raw: bytes
    reason: str
    error: str
    timestamp_ms: int | None


def dead_letter_columns(
    topic: str, partition: int, letters: Sequence[DeadLetter]
) -> list[list[Any]]:
    """Column-oriented rows for ``dead_letters`` in ``DEAD_LETTER_COLUMNS`` order."""
    return [
        [topic] * len(letters),
        [partition] * len(letters),
        [d.offset for d in letters],
        [d.key for d in letters],
        [d.reason for d in letters],
        [d.error for d in letters],
        [d.raw for d in letters],
        [len(d.raw) for d in letters],
        [
            None
            if d.timestamp_ms is None or d.timestamp_ms < 0
            else datetime.fromtimestamp(d.timestamp_ms / 1000, UTC)
            for d in letters
        ],
    ]
