"""Decode and validate one batch, routing each message to its family's columns or to
the dead letters. Pure computation: no I/O, so a batch can be prepared once and its
insert retried any number of times.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from agenttrail.consumers._batch import Batch
from agenttrail.consumers._columns import (
    DEAD_LETTER_COLUMNS,
    DeadLetter,
    TableLayout,
    dead_letter_columns,
    layout_for,
)
from agenttrail.consumers._validate import InvalidRecord, validate_record
from agenttrail.events import DecodeError, EventCodec, SchemaEntry
from agenttrail.store import DEAD_LETTERS_TABLE, FAMILY_TABLES


@dataclass(frozen=True)
class TableInsert:
    """Column-oriented rows for one table, and the token that makes their insert idempotent."""

    table: str
    column_names: tuple[str, ...]
    columns: list[list[Any]]
    rows: int
    dedup_token: str


@dataclass
class PreparedBatch:
    """A batch decoded and validated, ready to insert.

    Attributes:
        batch: the raw batch (its range names the ledger rows and tokens).
        inserts: one per table that receives rows, families first, dead letters last.
        events: events per family.
        dead_letters: messages routed to ``dead_letters``.
    """

    batch: Batch
    inserts: list[TableInsert] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0


class BatchDecoder:
    """Decodes batches with one codec. Thread-safe (holds no mutable state).

    Args:
        codec: the event codec; its registry's newest schemas define the table layouts.
    """

    def __init__(self, codec: EventCodec | None = None):
        self.codec = codec or EventCodec()
        self._layouts: dict[str, TableLayout] = {
            family: layout_for(self.codec.registry.latest(family))
            for family in self.codec.registry.event_types
            if family in FAMILY_TABLES
        }

    def layout(self, family: str) -> TableLayout:
        """The table layout of a family."""
        return self._layouts[family]

    def prepare(self, batch: Batch) -> PreparedBatch:
        """Decode, validate and columnise ``batch``. Never raises for bad input.

        Each message becomes a row of its family's table or, when it cannot be decoded
        or breaks the contract, a dead letter carrying its raw bytes and the reason.
        """
        by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
        offsets: dict[str, list[int]] = defaultdict(list)
        letters: list[DeadLetter] = []
        decode = self.codec.decode_entry
        for m in batch.messages:
            raw = m.value if m.value is not None else b""
            try:
                entry, record = decode(raw)
                family = entry.event_type
                if family not in self._layouts:
                    raise InvalidRecord(
                        f"Event family {family!r} has no table in this agenttrail version; "
                        "upgrade the consumer."
                    )
                validate_record(entry, record)
            except DecodeError as exc:
                letters.append(_letter(m, raw, exc.reason, exc))
                continue
            except InvalidRecord as exc:
                letters.append(_letter(m, raw, exc.reason, exc))
                continue
            by_family[family].append(record)
            offsets[family].append(m.offset)
        prepared = PreparedBatch(batch=batch)
        base = batch.range_token
        for family in sorted(by_family):
            records = by_family[family]
            layout = self._layouts[family]
            table = FAMILY_TABLES[family]
            prepared.inserts.append(
                TableInsert(
                    table=table,
                    column_names=layout.columns,
                    columns=layout.to_columns(records, batch.partition, offsets[family]),
                    rows=len(records),
                    dedup_token=f"{base}:{table}",
                )
            )
            prepared.events[family] = len(records)
        if letters:
            prepared.inserts.append(
                TableInsert(
                    table=DEAD_LETTERS_TABLE,
                    column_names=DEAD_LETTER_COLUMNS,
                    columns=dead_letter_columns(batch.topic, batch.partition, letters),
                    rows=len(letters),
                    dedup_token=f"{base}:{DEAD_LETTERS_TABLE}",
                )
            )
            prepared.dead_letters = len(letters)
        return prepared


def _letter(message: Any, raw: bytes, reason: str, exc: Exception) -> DeadLetter:
    timestamp = getattr(message, "timestamp", None)
    return DeadLetter(
        offset=message.offset,
        key=message.key,
        raw=raw,
        reason=reason,
        error=str(exc),
        timestamp_ms=timestamp if isinstance(timestamp, int) else None,
    )


__all__ = ["BatchDecoder", "PreparedBatch", "SchemaEntry", "TableInsert"]
