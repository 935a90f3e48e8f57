"""Decode and validate one batch, routing each message to its family's columns or to
the dead letters. ``prepare`` is pure computation; ``settle`` decides which groups the
store decodes itself (each checked within its own insert, see ``_avro``), and
``fall_back`` decodes here a group the store refused. A batch is prepared and settled
once, and its insert retried any number of times with the same rows.
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
from agenttrail.store import DEAD_LETTERS_TABLE, FAMILY_TABLES, Store


@dataclass(frozen=True)
class StoreDecodedGroup:
    """A family's events of one batch, to be decoded by the store once checked there."""

    family: str
    table: str
    block: AvroBlock
    messages: Sequence[Any]
    column_names: tuple[str, ...]


@dataclass(frozen=True)
class TableInsert:
    """Rows for one table, and the token that makes their insert idempotent.

    The rows are ``columns`` (column-oriented values), or ``avro``: a family's group of
    Avro-framed events that the store checks and decodes within the insert
    (``AvroBlock.insert_sql``); if the store refuses it, :meth:`Decoder.fall_back`
    replaces it by the group decoded here.
    """

    table: str
    column_names: tuple[str, ...]
    columns: list[list[Any]]
    rows: int
    dedup_token: str
    avro: StoreDecodedGroup | None = None


@dataclass
class PreparedBatch:
    """A batch decoded (or framed for the store to decode), ready to insert.

    Attributes:
        batch: the raw batch (its range names the ledger rows and tokens).
        inserts: one per table that receives rows, families first, dead letters last;
            complete once :attr:`unchecked` is empty (a store-decoded insert the store
            refuses is replaced by the group decoded here, see ``fall_back``).
        unchecked: groups framed for the store to decode, not yet made inserts (see
            :meth:`BatchDecoder.settle`).
        events: events per family.
        dead_letters: messages routed to ``dead_letters``.
        duplicates: events dropped at write time as copies of stored events.
        letters: the dead letters themselves.
        attempted: an insert of this batch was started before (a retry after a store
            failure): some of its rows may be stored already.
        stored: tokens of the store-decoded inserts stored already (a retry skips them:
            their check would find their own rows and refuse them as copies).
    """

    batch: Batch
    inserts: list[TableInsert] = field(default_factory=list)
    unchecked: list[StoreDecodedGroup] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    duplicates: int = 0
    letters: list[DeadLetter] = field(default_factory=list)
    attempted: bool = False
    stored: set[str] = field(default_factory=set)
    decoded: dict[str, list[tuple[dict[str, Any], Any]]] = field(default_factory=dict, repr=False)


class Decoder(Protocol):
    """Turns raw batches into inserts. Two implementations pass one conformance suite
    (``tests/integration/test_decoder_conformance.py``): the same rows and the same
    dead-letter reasons for the same messages.

    * :class:`PythonDecoder` decodes every event with the codec; it works with any
      store and is what a ClickHouse server gets.
    * :class:`StoreDecoder` hands flat families to the in-process engine as Avro,
      checked there within the insert; a group failing a check is decoded by the codec.
    """

    def layout(self, family: str) -> TableLayout:
        """The table layout of a family."""
        ...

    def prepare(self, batch: Batch) -> PreparedBatch:
        """Decode (or frame) ``batch``. Pure computation; never raises for bad input."""
        ...

    def settle(self, prepared: PreparedBatch, store: Store) -> None:
        """Finish what :meth:`prepare` left to the store. Idempotent; pure computation."""
        ...

    def fall_back(self, prepared: PreparedBatch, insert: TableInsert) -> TableInsert | None:
        """Decode here the store-decoded ``insert`` of ``prepared`` that the store refused;
        return what replaces it (None: no rows left). Pure computation."""
        ...


class BatchDecoder:
    """Decodes batches with one codec. Thread-safe (holds no mutable state).

    Args:
        codec: the event codec; its registry's newest schemas define the table layouts.
        store_decodes: hand flat families to the store as Avro (see ``_avro``) instead of
            decoding them here; each block is checked by the store within its insert.
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
        """Make the store-decoded groups inserts the store checks within the insert
        (``AvroBlock.insert_sql``); decode the others here. Idempotent; a no-op when
        nothing is unchecked. Pure computation (the store is asked what it can do).

        A group is decoded here when the store cannot read local files (a server), or
        when its family has rows decoded here already (an older schema version), so
        that the family has one insert.
        """
        if not prepared.unchecked:
            return
        passed: dict[str, StoreDecodedGroup] = {}
        failed: list[Any] = []
        for group in prepared.unchecked:
            if store.can_query_files and group.family not in prepared.decoded:
                passed[group.family] = group
            else:
                failed.extend(group.messages)
        prepared.unchecked = []
        failed.sort(key=lambda m: m.offset)
        self._decode_into(prepared, failed)
        self._finish(prepared, passed)

    def fall_back(self, prepared: PreparedBatch, insert: TableInsert) -> TableInsert | None:
        """Replace the store-decoded ``insert`` of ``prepared`` (the store refused it: a
        row failed its check, a copy, a repeated event id, or a store error) by its group
        decoded here; its bad messages become dead letters of the batch (the dead-letter
        insert is remade with them). Return the new insert, or None if no row is left.
        Pure computation.
        """
        group = insert.avro
        if group is None:
            return insert
        scratch = PreparedBatch(batch=prepared.batch)
        self._decode_into(scratch, sorted(group.messages, key=lambda m: m.offset))
        rows = scratch.decoded.get(group.family, [])
        letters = scratch.letters
        made = self._rows_insert(prepared.batch, group.family, rows, letters)
        at = prepared.inserts.index(insert)
        if made is None:
            del prepared.inserts[at]
            prepared.events.pop(group.family, None)
        else:
            prepared.inserts[at] = made
            prepared.events[group.family] = made.rows
        if letters:
            prepared.letters.extend(letters)
            self._remake_letters(prepared)
        return made

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
            group = passed.get(family)
            if group is not None:  # settle() guarantees the family has no decoded rows
                inserts.append(
                    TableInsert(table, group.column_names, [], group.block.rows,
                                f"{base}:{table}", avro=group)
                )  # fmt: skip
                prepared.events[family] = group.block.rows
                continue
            made = self._rows_insert(batch, family, decoded[family], prepared.letters)
            if made is not None:
                inserts.append(made)
                prepared.events[family] = made.rows
        prepared.inserts = inserts
        self._remake_letters(prepared)

    def _rows_insert(
        self, batch: Batch, family: str, rows: list[tuple[dict[str, Any], Any]],
        letters: list[DeadLetter],
    ) -> TableInsert | None:  # fmt: skip
        """The columns insert of a family's decoded rows; rows with an integer outside
        its column's range become ``letters``. None when no row is left."""
        layout = self._layouts[family]
        records = [r for r, _ in rows]
        offsets = [m.offset for _, m in rows]
        columns = layout.to_columns(records, batch.partition, offsets)
        bad = out_of_range_rows(columns, layout.columns, self._ranges[family])
        if bad:
            for i, why in sorted(bad.items()):
                m = rows[i][1]
                raw = m.value if m.value is not None else b""
                letters.append(_letter(m, raw, "out_of_range", ValueError(why)))
            rows = [row for i, row in enumerate(rows) if i not in bad]
            records = [r for r, _ in rows]
            offsets = [m.offset for _, m in rows]
            columns = layout.to_columns(records, batch.partition, offsets)
        if not rows:
            return None
        table = FAMILY_TABLES[family]
        return TableInsert(table, layout.columns, columns, len(records),
                           f"{batch.range_token}:{table}")  # fmt: skip

    def _remake_letters(self, prepared: PreparedBatch) -> None:
        """(Re)make the batch's dead-letter insert, last, from ``prepared.letters``."""
        batch = prepared.batch
        inserts = [i for i in prepared.inserts if i.table != DEAD_LETTERS_TABLE]
        letters = sorted(prepared.letters, key=lambda d: d.offset)
        if letters:
            inserts.append(
                TableInsert(
                    table=DEAD_LETTERS_TABLE,
                    column_names=DEAD_LETTER_COLUMNS,
                    columns=dead_letter_columns(batch.topic, batch.partition, letters),
                    rows=len(letters),
                    dedup_token=f"{batch.range_token}:{DEAD_LETTERS_TABLE}",
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
    the engine to decode, each block checked within its insert (see ``_avro``).

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
