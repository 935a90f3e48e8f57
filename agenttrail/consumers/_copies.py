"""Copies an at-least-once producer resent never reach the tables (issue 9, item 5).

A producer that was killed before the broker's acknowledgement arrived, or whose spool
is replayed by the next process, sends some events again: byte-identical, same
``event_id``, same ``(task_id, seq)``, but at new offsets, so the deduplication tokens
(which name offsets) do not catch them. Before a batch is inserted, every event whose
``(tenant, task_id, seq, event_id)`` is already stored in its family's table — or
appears earlier in the same batch — is dropped and counted
(``IngestStats.duplicates_dropped``). The lookup is an index range read: the tables
are ordered by ``(tenant, task_id, seq)``.

Only true copies are dropped: an event with the same ``(tenant, task_id, seq)`` but
another ``event_id`` (two emitters on one task id) is stored, and ``agenttrail verify``
reports the conflict. Why this holds: a task's events share one Kafka key, hence one
partition, and a partition's batches are written one after another by its one owner
(fenced, see ``_ledger``), so the check of a batch sees every earlier batch's rows.
A batch redone after a crash finds its own first attempt's rows and drops them, which
is what its deduplication tokens would have done.
"""

from __future__ import annotations

from typing import Any

from agenttrail.consumers._decode import BatchDecoder, PreparedBatch, TableInsert
from agenttrail.store import FAMILY_TABLES, Store

_KEY = ("tenant", "task_id", "seq", "event_id")
_FAMILY_OF = {table: family for family, table in FAMILY_TABLES.items()}


class CopyFilter:
    """Drops resent copies from prepared batches. Not thread-safe; one per writer.

    Args:
        store: the store holding the family tables.
        decoder: decodes a store-decoded group here when it holds copies.
    """

    def __init__(self, store: Store, decoder: BatchDecoder):
        self.store = store
        self.decoder = decoder

    def drop_copies(self, prepared: PreparedBatch) -> int:
        """Remove copies from ``prepared``'s family inserts; return how many. Blocks on
        one query per family insert.

        Raises:
            StoreUnavailable: the store failed a lookup (retry the batch).
        """
        dropped = 0
        kept: list[TableInsert] = []
        for insert in prepared.inserts:
            family = _FAMILY_OF.get(insert.table)
            if family is None or insert.rows == 0:
                kept.append(insert)
                continue
            if insert.avro is not None:
                if not self._avro_has_copies(insert):
                    kept.append(insert)
                    continue
                insert = self.decoder.columns_insert(prepared, family, insert.dedup_token)
            filtered, n = self._filter(insert)
            dropped += n
            if n:
                prepared.events[family] = prepared.events.get(family, 0) - n
            if filtered.rows:
                kept.append(filtered)
        prepared.inserts = kept
        return dropped

    def _avro_has_copies(self, insert: TableInsert) -> bool:
        assert insert.avro is not None
        db, table = self.store.database, insert.table
        sql = (
            "SELECT (SELECT count() FROM {data} WHERE (tenant, task_id, seq, toString(event_id)) "
            f"IN (SELECT tenant, task_id, seq, toString(event_id) FROM {db}.{table} "
            "WHERE (tenant, task_id) IN (SELECT tenant, task_id FROM {data}))), "
            "(SELECT count() - uniqExact(tenant, task_id, seq, event_id) FROM {data})"
        )
        ((stored, repeated),) = self.store.query_file(sql, insert.avro)
        return bool(stored or repeated)

    def _filter(self, insert: TableInsert) -> tuple[TableInsert, int]:
        at = [insert.column_names.index(c) for c in _KEY]
        keys = [
            (str(a), str(b), int(c), str(d))
            for a, b, c, d in zip(*(insert.columns[i] for i in at), strict=True)
        ]
        stored = self._stored(insert.table, keys)
        seen: set[tuple[str, str, int, str]] = set()
        keep: list[int] = []
        for row, key in enumerate(keys):
            if key in stored or key in seen:
                continue
            seen.add(key)
            keep.append(row)
        if len(keep) == len(keys):
            return insert, 0
        columns: list[list[Any]] = [[col[r] for r in keep] for col in insert.columns]
        filtered = TableInsert(
            insert.table, insert.column_names, columns, len(keep), insert.dedup_token
        )
        return filtered, len(keys) - len(keep)

    def _stored(
        self, table: str, keys: list[tuple[str, str, int, str]]
    ) -> set[tuple[str, str, int, str]]:
        # (tenant, task_id, seq) is the table's sort key: an index lookup; the event id
        # is compared here, so that only a true copy counts.
        rows = self.store.query(
            f"SELECT tenant, task_id, seq, toString(event_id) FROM {self.store.database}.{table} "
            "WHERE (tenant, task_id, seq) IN {k:Array(Tuple(String, String, Int64))}",
            {"k": sorted({k[:3] for k in keys})},
        )
        return {(str(a), str(b), int(c), str(d)) for a, b, c, d in rows}
