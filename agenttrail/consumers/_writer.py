"""The insert step: ledger 'before', every table insert with its token, ledger 'after'.

Idempotent by construction: running :meth:`BatchWriter.write` twice for the same
prepared batch (a crash after the insert and before the offset commit, or a retry
after a store failure) stores its rows once, because ClickHouse drops an insert whose
``insert_deduplication_token`` it has already seen in the table's deduplication window.

An insert the store refuses for good (:class:`StoreRejected`) is split in halves until
the refused rows stand alone; those become dead letters with the server's reason
(``store_rejected``), the rest is stored. The halves' tokens are derived from the
insert's token and their row range, and the same data splits the same way again, so a
crash in the middle of isolating is redone without duplicates.

A store-decoded insert is checked by the store within the insert (``_avro``): if the
store refuses it for any reason (a row fails its check, a resent copy, a store error),
nothing of it is stored, and its group is decoded here instead (same token), its
copies dropped and its bad messages dead-lettered, then inserted (and isolated) as
above. The check runs where the insert runs: after the ledger's 'before' row and the
fencing check.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agenttrail.consumers._columns import DEAD_LETTER_COLUMNS, DeadLetter, dead_letter_columns
from agenttrail.consumers._copies import CopyFilter
from agenttrail.consumers._decode import Decoder, PreparedBatch, PythonDecoder, TableInsert
from agenttrail.consumers._ledger import NO_CLAIM, OffsetLedger, PartitionFenced, State
from agenttrail.store import DEAD_LETTERS_TABLE, FAMILY_TABLES, Store, StoreError, StoreRejected


class BatchWriter:
    """Writes prepared batches into one store. Not thread-safe; one per pipeline.

    Args:
        store: the migrated store.
        ledger: the offset ledger of the consumer group.
    """

    def __init__(self, store: Store, ledger: OffsetLedger, decoder: Decoder | None = None):
        self.store = store
        self.ledger = ledger
        self.decoder = decoder or PythonDecoder()
        self.copies = CopyFilter(store, self.decoder)

    def write_many(self, batches: list[PreparedBatch]) -> list[PreparedBatch]:
        """Store several batches (of different partitions) with one ledger insert per
        state instead of two per batch. Same guarantees as :meth:`write` for each batch.

        Returns:
            The batches NOT written because another consumer claimed their partition
            after the batch's own claim (see :class:`PartitionFenced`).

        Raises:
            StoreUnavailable: any step failed; retry each batch (alone or again together).
        """
        for prepared in batches:
            self.decoder.settle(prepared, self.store)
        self.ledger.mark_many([_ledger_row(p, "before") for p in batches])
        # After 'before', before any insert: a consumer that lost the partition learns
        # it here, before it writes (see migration 0011 for why this order holds).
        fenced = self._fenced(batches)
        live = [p for p in batches if id(p) not in fenced]
        for prepared in live:
            own_rows_possible = prepared.attempted or prepared.batch.redo
            prepared.duplicates += self.copies.drop_copies(prepared, own_rows_possible)
            prepared.attempted = True
            self._insert(prepared, own_rows_possible)
        self.ledger.mark_many([_ledger_row(p, "after") for p in live])
        return [p for p in batches if id(p) in fenced]

    def _fenced(self, batches: list[PreparedBatch]) -> set[int]:
        groups: dict[tuple[str, str], dict[int, str]] = {}
        for p in batches:
            b = p.batch
            if b.claim:
                groups.setdefault((b.topic, b.incarnation), {})[b.partition] = b.claim
        lost: set[tuple[str, str, int]] = set()
        for (topic, incarnation), claims in groups.items():
            lost |= {
                (topic, incarnation, q) for q in self.ledger.fenced(topic, incarnation, claims)
            }
        return {
            id(p)
            for p in batches
            if p.batch.claim and (p.batch.topic, p.batch.incarnation, p.batch.partition) in lost
        }

    def write(self, prepared: PreparedBatch) -> None:
        """Store one batch and mark it done in the ledger. Blocks until stored.

        Raises:
            StoreUnavailable: any step failed. Some tables may hold the batch already;
                retrying the same prepared batch completes it without duplicates.
            PartitionFenced: another consumer claimed the partition; nothing inserted.
        """
        if self.write_many([prepared]):
            raise PartitionFenced(
                f"Partition {prepared.batch.partition} of {prepared.batch.topic} was claimed "
                "by another consumer; this batch was not written."
            )

    def _insert(self, prepared: PreparedBatch, own_rows_possible: bool) -> None:
        refused: list[DeadLetter] = []
        families = [i for i in prepared.inserts if i.table != DEAD_LETTERS_TABLE]
        for planned in families:
            insert: TableInsert | None = planned
            if planned.avro is not None:
                insert = self._insert_checked(prepared, planned, own_rows_possible)
            if insert is None:
                continue
            try:
                self._insert_one(insert)
            except StoreRejected as exc:
                refused += self._isolate(prepared, insert, exc)
        # Last, once every family insert is settled (a group decoded here adds letters).
        for insert in [i for i in prepared.inserts if i.table == DEAD_LETTERS_TABLE]:
            try:
                self._insert_one(insert)
            except StoreRejected as exc:
                refused += self._isolate(prepared, insert, exc)
        if refused:
            b = prepared.batch
            self.store.insert_columns(
                DEAD_LETTERS_TABLE,
                DEAD_LETTER_COLUMNS,
                dead_letter_columns(b.topic, b.partition, refused),
                dedup_token=f"{b.range_token}:{DEAD_LETTERS_TABLE}:refused",
            )
            prepared.dead_letters += len(refused)

    def _insert_checked(
        self, prepared: PreparedBatch, insert: TableInsert, own_rows_possible: bool
    ) -> TableInsert | None:
        """Insert a store-decoded group, checked by the store within the insert; if the
        store refuses it, return its group decoded here (copies dropped) to insert
        instead, or None when nothing is left to insert."""
        group = insert.avro
        assert group is not None
        if insert.dedup_token in prepared.stored:
            return None
        if store_block(self.store, insert):
            prepared.stored.add(insert.dedup_token)
            return None
        if self.decoder.fall_back(prepared, insert) is None:
            return None
        prepared.duplicates += self.copies.drop_copies(
            prepared, own_rows_possible, tables={insert.table}
        )
        return next((i for i in prepared.inserts if i.table == insert.table), None)

    def _insert_one(self, insert: TableInsert) -> None:
        assert insert.avro is None, "store-decoded inserts go through _insert_checked"
        self.store.insert_columns(
            insert.table, insert.column_names, insert.columns, dedup_token=insert.dedup_token
        )

    def _isolate(
        self, prepared: PreparedBatch, insert: TableInsert, exc: StoreRejected
    ) -> list[DeadLetter]:
        """Store what the store accepts of a refused insert; return the refused rows.

        Raises:
            StoreRejected: the dead letters themselves were refused (a store bug).
            StoreUnavailable: the store failed meanwhile; retry the whole batch.
        """
        if insert.table == DEAD_LETTERS_TABLE:
            raise exc
        family = next(f for f, t in FAMILY_TABLES.items() if t == insert.table)
        messages = {m.offset: m for m in prepared.batch.messages}
        offsets = insert.columns[-1]  # kafka_offset is the last column of every family
        refused: list[tuple[int, str]] = []
        self._split(insert, 0, insert.rows, refused, exc)
        letters = []
        for row, reason in refused:
            m = messages[offsets[row]]
            letters.append(_refused_letter(m, reason))
        prepared.events[family] = prepared.events.get(family, 0) - len(letters)
        return letters

    def _split(
        self,
        insert: TableInsert,
        lo: int,
        hi: int,
        refused: list[tuple[int, str]],
        exc: StoreRejected | None,
    ) -> None:
        if exc is None:
            part = TableInsert(
                insert.table,
                insert.column_names,
                [c[lo:hi] for c in insert.columns],
                hi - lo,
                f"{insert.dedup_token}:rows{lo}-{hi}",
            )
            try:
                self._insert_one(part)
                return
            except StoreRejected as err:
                exc = err
        if hi - lo == 1:
            refused.append((lo, f"{exc.name or exc.code}: {exc.reason}"))
            return
        mid = (lo + hi) // 2
        self._split(insert, lo, mid, refused, None)
        self._split(insert, mid, hi, refused, None)


def store_block(store: Store, insert: TableInsert) -> bool:
    """Insert a store-decoded group, checked by the store within the insert; False when
    it must be decoded by the codec instead: refused before the store was asked (see
    ``AvroBlock.refused``), or by the store (a row failed its check, a copy, a store
    error), in which case nothing of it was stored (one block, all or nothing)."""
    assert insert.avro is not None
    block = insert.avro.block
    if block.refused is not None:
        return False
    try:
        store.insert_from_file(
            insert.table, block.insert_sql, block.data, rows=block.rows,
            dedup_token=insert.dedup_token, more={"tasks": block.tasks},
        )  # fmt: skip
    except StoreError:
        return False
    return True


LedgerRow = tuple[str, str, int, int, int, State, int, int, datetime]


def _ledger_row(p: PreparedBatch, state: State) -> LedgerRow:
    # 'before' counts a store-decoded group's events as framed; a group the store then
    # refuses may end with fewer events and some dead letters, which 'after' counts.
    b = p.batch
    return (b.topic, b.incarnation, b.partition, b.first_offset, b.last_offset, state,
            sum(p.events.values()), p.dead_letters, b.claimed_at or NO_CLAIM)  # fmt: skip


def _refused_letter(message: Any, reason: str) -> DeadLetter:
    timestamp = getattr(message, "timestamp", None)
    return DeadLetter(
        offset=message.offset,
        key=message.key,
        raw=message.value if message.value is not None else b"",
        reason="store_rejected",
        error=f"The store refused this event for good ({reason}).",
        timestamp_ms=timestamp if isinstance(timestamp, int) else None,
    )
