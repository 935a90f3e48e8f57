"""The insert step: ledger 'before', every table insert with its token, ledger 'after'.

Idempotent by construction: running :meth:`BatchWriter.write` twice for the same
prepared batch (a crash after the insert and before the offset commit, or a retry
after a store failure) stores its rows once, because ClickHouse drops an insert whose
``insert_deduplication_token`` it has already seen in the table's deduplication window.
"""

from __future__ import annotations

from agenttrail.consumers._decode import BatchDecoder, PreparedBatch
from agenttrail.consumers._ledger import OffsetLedger, State
from agenttrail.store import Store


class BatchWriter:
    """Writes prepared batches into one store. Not thread-safe; one per pipeline.

    Args:
        store: the migrated store.
        ledger: the offset ledger of the consumer group.
    """

    def __init__(self, store: Store, ledger: OffsetLedger, decoder: BatchDecoder | None = None):
        self.store = store
        self.ledger = ledger
        self.decoder = decoder or BatchDecoder()

    def write_many(self, batches: list[PreparedBatch]) -> None:
        """Store several batches (of different partitions) with one ledger insert per
        state instead of two per batch. Same guarantees as :meth:`write` for each batch.

        Raises:
            StoreUnavailable: any step failed; retry each batch (alone or again together).
        """
        for prepared in batches:
            self.decoder.settle(prepared, self.store)
        self.ledger.mark_many([_ledger_row(p, "before") for p in batches])
        for prepared in batches:
            self._insert(prepared)
        self.ledger.mark_many([_ledger_row(p, "after") for p in batches])

    def write(self, prepared: PreparedBatch) -> None:
        """Store one batch and mark it done in the ledger. Blocks until stored.

        Raises:
            StoreUnavailable: any step failed. Some tables may hold the batch already;
                retrying the same prepared batch completes it without duplicates.
        """
        self.decoder.settle(prepared, self.store)
        b = prepared.batch
        events = sum(prepared.events.values())
        self.ledger.mark(
            b.topic, b.partition, b.first_offset, b.last_offset, "before",
            events, prepared.dead_letters, incarnation=b.incarnation,
        )  # fmt: skip
        self._insert(prepared)
        self.ledger.mark(
            b.topic, b.partition, b.first_offset, b.last_offset, "after",
            events, prepared.dead_letters, incarnation=b.incarnation,
        )  # fmt: skip

    def _insert(self, prepared: PreparedBatch) -> None:
        for insert in prepared.inserts:
            if insert.avro is not None:
                self.store.insert_avro(
                    insert.table, insert.column_names, insert.avro, dedup_token=insert.dedup_token
                )
            else:
                self.store.insert_columns(
                    insert.table,
                    insert.column_names,
                    insert.columns,
                    dedup_token=insert.dedup_token,
                )


def _ledger_row(p: PreparedBatch, state: State) -> tuple[str, str, int, int, int, State, int, int]:
    b = p.batch
    return (b.topic, b.incarnation, b.partition, b.first_offset, b.last_offset, state,
            sum(p.events.values()), p.dead_letters)  # fmt: skip
