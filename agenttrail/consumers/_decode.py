"""Decode and validate one batch, routing each message to its family's columns or to
the dead letters. ``prepare`` is pure computation; ``settle`` asks the store to check
the groups it is to decode itself. A batch is prepared and settled once, and its
insert retried any number of times with the same rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agenttrail.consumers._avro import AvroBlock, AvroBlockEncoder, supports
from agenttrail.consumers._batch import Batch
from agenttrail.consumers._columns import (
    DEAD_LETTER_COLUMNS,
    DeadLetter,
    TableLayout,
    dead_letter_columns,
    layout_for,
)
from agenttrail.consumers._framing import framed_blocks
from agenttrail.consumers._ranges import Range, column_ranges, out_of_range_rows
from agenttrail.consumers._validate import InvalidRecord, validate_record
from agenttrail.events import HEADER_SIZE, DecodeError, EventCodec, SchemaEntry
from agenttrail.store import DEAD_LETTERS_TABLE, FAMILY_TABLES, Store, StoreError


@dataclass(frozen=True)
class TableInsert:
    """Rows for one table, and the token that makes their insert idempotent.

    The rows are ``columns`` (column-oriented values), or ``avro`` (an Avro container
    that the store decodes, its fields named like ``column_names``).
    """

    table: str
    column_names: tuple[str, ...]
    columns: list[list[Any]]
    rows: int
    dedup_token: str
    avro: bytes | None = None


@dataclass(frozen=True)
class StoreDecodedGroup:
    """A family's events of one batch, to be decoded by the store once checked there."""

    family: str
    table: str
    block: AvroBlock
    messages: Sequence[Any]
    column_names: tuple[str, ...]


@dataclass
class PreparedBatch:
    """A batch decoded (or framed for the store to decode), ready to insert.

    Attributes:
        batch: the raw batch (its range names the ledger rows and tokens).
        inserts: one per table that receives rows, families first, dead letters last;
            complete once :attr:`unchecked` is empty.
        unchecked: groups whose Avro block the store must check before they become
            inserts (see :meth:`BatchDecoder.settle`).
        events: events per family.
        dead_letters: messages routed to ``dead_letters``.
        duplicates: events dropped at write time as copies of stored events.
        letters: the dead letters themselves.
        attempted: an insert of this batch was started before (a retry after a store
            failure): some of its rows may be stored already.
    """

    batch: Batch
    inserts: list[TableInsert] = field(default_factory=list)
    unchecked: list[StoreDecodedGroup] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    duplicates: int = 0
    letters: list[DeadLetter] = field(default_factory=list)
    attempted: bool = False
    decoded: dict[str, list[tuple[dict[str, Any], Any]]] = field(default_factory=dict, repr=False)


class Decoder(Protocol):
    """Turns raw batches into inserts. Two implementations pass one conformance suite
    (``tests/integration/test_decoder_conformance.py``): the same rows and the same
    dead-letter reasons for the same messages.

    * :class:`PythonDecoder` decodes every event with the codec; it works with any
      store and is what a ClickHouse server gets.
    * :class:`StoreDecoder` hands flat families to the in-process engine as Avro,
      checked there first; anything failing a check is decoded by the codec.
    """

    def layout(self, family: str) -> TableLayout:
        """The table layout of a family."""
        ...

    def prepare(self, batch: Batch) -> PreparedBatch:
        """Decode (or frame) ``batch``. Pure computation; never raises for bad input."""
        ...

    def settle(self, prepared: PreparedBatch, store: Store) -> None:
        """Finish what :meth:`prepare` left to the store. Idempotent; may query the store."""
        ...

    def columns_insert(self, prepared: PreparedBatch, family: str, token: str) -> TableInsert:
        """One family's rows of ``prepared`` as columns (to isolate refused rows)."""
        ...


class BatchDecoder:
    """Decodes batches with one codec. Thread-safe (holds no mutable state).

    Args:
        codec: the event codec; its registry's newest schemas define the table layouts.
        store_decodes: hand flat families to the store as Avro (see ``_avro``) instead of
            decoding them here; each block is checked by the store before insert.
        column_types: table → column → ClickHouse type, as the store reports them; every
            integer is checked against its column's range (from the Avro types when
            not given). A value outside makes its message a dead letter.
    """

    def __init__(
        self,
        codec: EventCodec | None = None,
        store_decodes: bool = False,
        column_types: Mapping[str, Mapping[str, str]] | None = None,
    ):
        self.codec = codec or EventCodec()
        registry = self.codec.registry
        self._layouts: dict[str, TableLayout] = {
            family: layout_for(registry.latest(family))
            for family in registry.event_types
            if family in FAMILY_TABLES
        }
        types = column_types or {}
        self._ranges: dict[str, dict[str, Range]] = {
            family: column_ranges(registry.latest(family), types.get(FAMILY_TABLES[family]))
            for family in self._layouts
        }
        self._encoders: dict[int, AvroBlockEncoder] = {}
        if store_decodes:
            for family in self._layouts:
                entry = registry.latest(family)
                if supports(entry):
                    self._encoders[entry.schema_id] = AvroBlockEncoder(entry, self._ranges[family])

    def layout(self, family: str) -> TableLayout:
        """The table layout of a family."""
        return self._layouts[family]

    @property
    def store_encoders(self) -> dict[int, AvroBlockEncoder]:
        """Schema id → encoder of the messages handed to the store (fetcher processes
        frame these, see ``_framing``)."""
        return dict(self._encoders)

    def prepare(self, batch: Batch) -> PreparedBatch:
        """Decode, validate and columnise ``batch``. Never raises for bad input.

        Each message becomes a row of its family's table or, when it cannot be decoded
        or breaks the contract, a dead letter carrying its raw bytes and the reason.
        With ``store_decodes``, messages of flat families framed with the newest schema
        are only framed here; :meth:`settle` finishes them.
        """
        prepared = PreparedBatch(batch=batch)
        limit = self.codec.max_payload_bytes
        grouped: dict[int, list[Any]] = defaultdict(list)
        rest: list[Any] = []
        # Framed by a fetcher process already (``_framing``): only the rest is looked at.
        pre = framed_blocks(batch, self._encoders)
        for m in batch.messages if pre is None else pre.unframed:
            raw = m.value
            if self._encoders and raw and HEADER_SIZE <= len(raw) <= limit and raw[0] == 0:
                schema_id = int.from_bytes(raw[1:HEADER_SIZE], "big")
                if schema_id in self._encoders:
                    grouped[schema_id].append(m)
                    continue
            rest.append(m)
        if pre is not None and set(grouped) & set(pre.blocks):
            # Framed there and here (cannot happen with one spec): frame it all here.
            return self.prepare(replace(batch, messages=list(batch.messages)))
        for schema_id in sorted(set(grouped) | set(pre.blocks if pre else ())):
            encoder = self._encoders[schema_id]
            if pre is not None and schema_id in pre.blocks:
                block, messages = pre.blocks[schema_id]
            else:
                messages = grouped[schema_id]
                block = encoder.block(
                    batch.partition, [m.offset for m in messages], [m.value for m in messages]
                )
            family = encoder.entry.event_type
            prepared.unchecked.append(
                StoreDecodedGroup(
                    family, FAMILY_TABLES[family], block, messages, encoder.column_names
                )
            )
        self._decode_into(prepared, rest)
        if not prepared.unchecked:
            self._finish(prepared, {})
        return prepared

    def settle(self, prepared: PreparedBatch, store: Store) -> None:
        """Check the store-decoded groups in the store; decode failing ones here instead.

        Idempotent; a no-op when nothing is unchecked. Blocks on one query per group
        (the checks and the copy lookup together).
        A group whose check query fails for any reason is decoded by the codec, so a
        store error here never loses or misroutes an event.
        """
        if not prepared.unchecked:
            return
        passed: dict[str, StoreDecodedGroup] = {}
        failed: list[Any] = []
        for group in prepared.unchecked:
            ok = False
            # A family with rows decoded here already (an older schema version) is
            # decoded here entirely, so that it has one insert.
            if store.can_query_files and group.family not in prepared.decoded:
                try:
                    table = f"{store.database}.{group.table}"
                    sql = group.block.check_sql.replace("{table}", table)
                    ((rows, bad, copies),) = store.query_file(sql, group.block.check_data)
                    # A group with resent copies is decoded here, where they are dropped.
                    ok = rows == group.block.rows and bad == 0 and copies == 0
                except StoreError:
                    ok = False
            if ok:
                passed[group.family] = group
            else:
                failed.extend(group.messages)
        prepared.unchecked = []
        failed.sort(key=lambda m: m.offset)
        self._decode_into(prepared, failed)
        self._finish(prepared, passed)

    def columns_insert(self, prepared: PreparedBatch, family: str, token: str) -> TableInsert:
        """One family's rows of a prepared batch, decoded here into columns (for a
        store-decoded insert the store refused, so that its rows can be isolated).
        Pure computation; ``prepared`` is not changed."""
        scratch = PreparedBatch(batch=prepared.batch)
        self._decode_into(scratch, list(prepared.batch.messages))
        rows = scratch.decoded.get(family, [])
        layout = self._layouts[family]
        columns = layout.to_columns(
            [r for r, _ in rows], prepared.batch.partition, [m.offset for _, m in rows]
        )
        return TableInsert(FAMILY_TABLES[family], layout.columns, columns, len(rows), token)

    def _decode_into(self, prepared: PreparedBatch, messages: list[Any]) -> None:
        decode = self.codec.decode_entry
        for m in messages:
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
            except (DecodeError, InvalidRecord) as exc:
                prepared.letters.append(_letter(m, raw, exc.reason, exc))
                continue
            prepared.decoded.setdefault(family, []).append((record, m))

    def _finish(self, prepared: PreparedBatch, passed: dict[str, StoreDecodedGroup]) -> None:
        batch = prepared.batch
        base = batch.range_token
        decoded, prepared.decoded = prepared.decoded, {}
        inserts: list[TableInsert] = []
        for family in sorted(set(decoded) | set(passed)):
            table = FAMILY_TABLES[family]
            token = f"{base}:{table}"
            group = passed.get(family)
            if group is not None:  # settle() guarantees the family has no decoded rows
                inserts.append(
                    TableInsert(table, group.column_names, [], group.block.rows, token,
                                avro=group.block.insert_data)
                )  # fmt: skip
                prepared.events[family] = group.block.rows
                continue
            rows = decoded[family]
            layout = self._layouts[family]
            records = [r for r, _ in rows]
            offsets = [m.offset for _, m in rows]
            columns = layout.to_columns(records, batch.partition, offsets)
            bad = out_of_range_rows(columns, layout.columns, self._ranges[family])
            if bad:
                for i, why in sorted(bad.items()):
                    m = rows[i][1]
                    raw = m.value if m.value is not None else b""
                    prepared.letters.append(_letter(m, raw, "out_of_range", ValueError(why)))
                rows = [row for i, row in enumerate(rows) if i not in bad]
                if not rows:
                    continue
                records = [r for r, _ in rows]
                offsets = [m.offset for _, m in rows]
                columns = layout.to_columns(records, batch.partition, offsets)
            inserts.append(
                TableInsert(
                    table=table,
                    column_names=layout.columns,
                    columns=columns,
                    rows=len(records),
                    dedup_token=token,
                )
            )
            prepared.events[family] = len(records)
        letters = sorted(prepared.letters, key=lambda d: d.offset)
        if letters:
            inserts.append(
                TableInsert(
                    table=DEAD_LETTERS_TABLE,
                    column_names=DEAD_LETTER_COLUMNS,
                    columns=dead_letter_columns(batch.topic, batch.partition, letters),
                    rows=len(letters),
                    dedup_token=f"{base}:{DEAD_LETTERS_TABLE}",
                )
            )
        prepared.inserts = inserts
        prepared.dead_letters = len(letters)


class PythonDecoder(BatchDecoder):
    """The :class:`Decoder` for any store: every event decoded by the codec in Python.

    Args:
        codec: the event codec (the packaged registry by default).
        column_types: table → column → ClickHouse type (see :class:`BatchDecoder`).
    """

    def __init__(
        self,
        codec: EventCodec | None = None,
        column_types: Mapping[str, Mapping[str, str]] | None = None,
    ):
        super().__init__(codec, store_decodes=False, column_types=column_types)


class StoreDecoder(BatchDecoder):
    """The :class:`Decoder` for the in-process engine: flat families framed as Avro for
    the engine to decode, each block checked by a query first (see ``_avro``).

    Args:
        codec: the event codec (the packaged registry by default).
        column_types: table → column → ClickHouse type (see :class:`BatchDecoder`).
    """

    def __init__(
        self,
        codec: EventCodec | None = None,
        column_types: Mapping[str, Mapping[str, str]] | None = None,
    ):
        super().__init__(codec, store_decodes=True, column_types=column_types)


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


__all__ = [
    "BatchDecoder",
    "Decoder",
    "PreparedBatch",
    "PythonDecoder",
    "SchemaEntry",
    "StoreDecoder",
    "TableInsert",
]
