"""The offset ledger: exactly-once state kept in the store itself.

Before a batch [first, last] of a partition is inserted, a 'before' row is appended;
after every insert of the batch succeeded, an 'after' row. Both are plain appends (the
store is an event log). The newest row of a partition tells a consumer that (re)gains
the partition where to resume and whether a batch must be redone with the same range.
This is the state-store pattern of ClickHouse's own Kafka Connect sink.

Every row names the topic incarnation its offsets belong to (see ``_incarnation``);
reading asks for one incarnation only, so positions of a broker that forgot its
messages are never applied to the broker that replaced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agenttrail.consumers._incarnation import LEGACY_INCARNATION
from agenttrail.store import LEDGER_TABLE, Store

State = Literal["before", "after"]

_COLUMNS = (
    "consumer_group",
    "topic",
    "incarnation",
    "kafka_partition",
    "first_offset",
    "last_offset",
    "state",
    "events",
    "dead_letters",
    "consumer",
)


@dataclass(frozen=True)
class LedgerEntry:
    """The newest ledger row of a partition."""

    partition: int
    first_offset: int
    last_offset: int
    state: State

    @property
    def resume_at(self) -> int:
        """Offset to read next: the batch's start when it must be redone, else after it."""
        return self.first_offset if self.state == "before" else self.last_offset + 1


class OffsetLedger:
    """Reads and appends ledger rows of one consumer group.

    Args:
        store: the store (migrated).
        group: the consumer group; each group has its own ledger rows.
        consumer: a name of this consumer process, recorded for forensics.
    """

    def __init__(self, store: Store, group: str, consumer: str):
        self.store = store
        self.group = group
        self.consumer = consumer

    def latest(
        self, topic: str, partitions: list[int], incarnation: str = LEGACY_INCARNATION
    ) -> dict[int, LedgerEntry]:
        """The newest row of each partition that has one in ``incarnation``. Blocks on
        one query.

        Among rows of the newest range 'after' wins over 'before'. Rows of other
        incarnations of the topic are ignored: their offsets name other messages.

        Raises:
            StoreUnavailable: the store failed the query.
        """
        if not partitions:
            return {}
        rows = self.store.query(
            "SELECT kafka_partition, "
            "argMax(first_offset, (last_offset, state)), max(last_offset), "
            "toString(argMax(state, (last_offset, state))) "
            f"FROM {self.store.database}.{LEDGER_TABLE} "
            "WHERE consumer_group = {g:String} AND topic = {t:String} "
            "AND incarnation = {i:String} "
            "AND kafka_partition IN {ps:Array(Int32)} GROUP BY kafka_partition",
            {"g": self.group, "t": topic, "i": incarnation, "ps": partitions},
        )
        return {
            int(p): LedgerEntry(
                int(p), int(first), int(last), "after" if s == "after" else "before"
            )
            for p, first, last, s in rows
        }

    def mark_many(self, rows: list[tuple[str, str, int, int, int, State, int, int]]) -> None:
        """Append several ledger rows (topic, incarnation, partition, first, last, state,
        events, dead letters) in one insert. Blocks until stored.

        Raises:
            StoreUnavailable: the store failed the insert.
        """
        if not rows:
            return
        columns: list[list[Any]] = [[self.group] * len(rows)]
        columns += [list(c) for c in zip(*rows, strict=True)]
        columns.append([self.consumer] * len(rows))
        self.store.insert_columns(LEDGER_TABLE, _COLUMNS, columns)

    def mark(
        self,
        topic: str,
        partition: int,
        first_offset: int,
        last_offset: int,
        state: State,
        events: int = 0,
        dead_letters: int = 0,
        *,
        incarnation: str = LEGACY_INCARNATION,
    ) -> None:
        """Append one ledger row. Blocks until stored.

        Raises:
            StoreUnavailable: the store failed the insert.
        """
        self.store.insert_columns(
            LEDGER_TABLE,
            _COLUMNS,
            [
                [self.group],
                [topic],
                [incarnation],
                [partition],
                [first_offset],
                [last_offset],
                [state],
                [events],
                [dead_letters],
                [self.consumer],
            ],
        )
