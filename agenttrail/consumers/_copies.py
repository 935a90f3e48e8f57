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
A batch retried after a store failure that stored some of its tables, or redone after
a crash (its range recorded 'before' in the ledger), may find its own earlier attempt's
rows: those stored at the very position (partition, offset) of the message being written
are not copies. They are kept in the insert, so the retry re-sends the identical insert
and its deduplication token drops it, and they count as events of the batch (dropping
them would shrink the insert under the same token and count the batch's own events as
copies). Only a retry or a redo looks at positions: on a first attempt no own row can
exist, and a position is reused by other messages after the embedded broker restarted.
"""

from __future__ import annotations

from typing import Any

from agenttrail.consumers._decode import Decoder, PreparedBatch, TableInsert
from agenttrail.store import FAMILY_TABLES, Store

_KEY = ("tenant", "task_id", "seq", "event_id")
_POSITION = ("kafka_partition", "kafka_offset")
Key = tuple[str, str, int, str]
Position = tuple[int, int]
_FAMILY_OF = {table: family for family, table in FAMILY_TABLES.items()}


class CopyFilter:
    """Drops resent copies from prepared batches. Not thread-safe; one per writer.

    Args:
        store: the store holding the family tables.
        decoder: decodes a store-decoded group here when it holds copies.
    """

    def __init__(self, store: Store, decoder: Decoder):
        self.store = store
        self.decoder = decoder

    def drop_copies(
        self, prepared: PreparedBatch, own_rows_possible: bool, tables: set[str] | None = None
    ) -> int:
        """Remove copies from ``prepared``'s decoded family inserts (of ``tables`` only,
        if given); return how many. Blocks on one query for the whole batch.
        Store-decoded inserts are checked for copies by the store within their insert
        (a group with copies is decoded here and filtered then).

        Args:
            own_rows_possible: an earlier attempt of this batch may have stored rows
                (a retry, or a redo of a range the ledger recorded 'before'): rows
                stored at a message's own position are its own, not copies.

        Raises:
            StoreUnavailable: the store failed the lookup (retry the batch).
        """
        candidates = [
            (i, insert)
            for i, insert in enumerate(prepared.inserts)
            if insert.table in _FAMILY_OF and insert.avro is None and insert.rows
            and (tables is None or insert.table in tables)
        ]  # fmt: skip
        if not candidates:
            return 0
        keys = {i: _keys(insert) for i, insert in candidates}
        stored = self._stored({insert.table: [k for k, _ in keys[i]] for i, insert in candidates})
        dropped = 0
        for i, insert in candidates:
            at = stored.get(insert.table, {})
            seen: set[Key] = set()
            keep: list[int] = []
            for row, (key, position) in enumerate(keys[i]):
                own = own_rows_possible and position in at.get(key, ())
                if key in seen or (key in at and not own):
                    continue
                seen.add(key)
                keep.append(row)
            n = insert.rows - len(keep)
            if not n:
                continue
            dropped += n
            family = _FAMILY_OF[insert.table]
            prepared.events[family] = prepared.events.get(family, 0) - n
            columns: list[list[Any]] = [[col[r] for r in keep] for col in insert.columns]
            prepared.inserts[i] = TableInsert(
                insert.table, insert.column_names, columns, len(keep), insert.dedup_token
            )
        prepared.inserts = [t for t in prepared.inserts if t.rows or t.table not in _FAMILY_OF]
        return dropped

    def _stored(self, keys: dict[str, list[Key]]) -> dict[str, dict[Key, set[Position]]]:
        """Table → stored key → the positions it is stored at. One query for all tables."""
        # (tenant, task_id, seq) is every table's sort key: index lookups; the event id is
        # compared here, so that only a true copy counts.
        parts, params = [], {}
        for n, (table, ks) in enumerate(sorted(keys.items())):
            parts.append(
                f"SELECT '{table}', tenant, task_id, seq, toString(event_id), "
                "kafka_partition, kafka_offset "
                f"FROM {self.store.database}.{table} WHERE (tenant, task_id, seq) IN "
                f"{{k{n}:Array(Tuple(String, String, Int64))}}"
            )
            params[f"k{n}"] = sorted({k[:3] for k in ks})
        out: dict[str, dict[Key, set[Position]]] = {}
        for table, a, b, c, d, p, o in self.store.query(" UNION ALL ".join(parts), params):
            key = (str(a), str(b), int(c), str(d))
            out.setdefault(str(table), {}).setdefault(key, set()).add((int(p), int(o)))
        return out


def _keys(insert: TableInsert) -> list[tuple[Key, Position]]:
    """Each row's copy key and its Kafka position."""
    at = [insert.column_names.index(c) for c in (*_KEY, *_POSITION)]
    return [
        ((str(a), str(b), int(c), str(d)), (int(p), int(o)))
        for a, b, c, d, p, o in zip(*(insert.columns[i] for i in at), strict=True)
    ]
