"""The insert step: ledger 'before', every table insert with its token, ledger 'after'.

Idempotent by construction: running :meth:`BatchWriter.write` twice for the same
prepared batch (a crash after the insert and before the offset commit, or a retry
after a store failure) stores its rows once, because ClickHouse drops an insert whose
``insert_deduplication_token`` it has already seen in the table's deduplication window.
"""

from __future__ import annotations

from agenttrail.consumers._decode import BatchDecoder, PreparedBatch
from agenttrail.consumers._ledger import OffsetLedger
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
            events, prepared.dead_letters,
        )  # fmt: skip
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
        self.ledger.mark(
            b.topic, b.partition, b.first_offset, b.last_offset, "after",
            events, prepared.dead_letters,
        )  # fmt: skip
