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

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agenttrail.consumers._errors import ConsumerError
from agenttrail.consumers._incarnation import LEGACY_INCARNATION
from agenttrail.store import LEDGER_TABLE, Store

CLAIMS_TABLE = "ingest_claims"
"""Who claimed which partition when (see ``queries/migrations/0011_ingest_claims.sql``)."""

NO_CLAIM = datetime(1970, 1, 1, tzinfo=UTC)
"""``claimed_at`` of rows written without a claim (before fencing existed)."""

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
    "claimed_at",
)


class PartitionFenced(ConsumerError):
    """Another consumer claimed the partition after this one did: this one must not
    write it again (it lost the partition in a rebalance, or was frozen past its
    session timeout). Nothing of the batch was inserted."""


@dataclass(frozen=True)
class Claim:
    """This consumer's claim of a partition: its id and the store's time of it."""

    claim: str
    claimed_at: datetime


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

        Rows of the newest claim win (a zombie's late rows never outrank its
        successor's), then the newest range, then 'after' over 'before'. Rows of other
        incarnations of the topic are ignored: their offsets name other messages.

        Raises:
            StoreUnavailable: the store failed the query.
        """
        if not partitions:
            return {}
        rows = self.store.query(
            "SELECT kafka_partition, "
            "argMax(first_offset, (claimed_at, last_offset, state)), "
            "argMax(last_offset, (claimed_at, last_offset, state)), "
            "toString(argMax(state, (claimed_at, last_offset, state))) "
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

    def claim(self, topic: str, incarnation: str, partitions: list[int]) -> dict[int, Claim]:
        """Claim ``partitions`` for this consumer (call it when they are assigned, BEFORE
        reading the ledger). Blocks on one insert and one query.

        Raises:
            StoreUnavailable: the store failed.
        """
        if not partitions:
            return {}
        ids = {p: f"{self.consumer}/{uuid.uuid4().hex}" for p in partitions}
        n = len(partitions)
        self.store.insert_columns(
            CLAIMS_TABLE,
            ("consumer_group", "topic", "incarnation", "kafka_partition", "claim", "consumer"),
            [[self.group] * n, [topic] * n, [incarnation] * n, list(ids), list(ids.values()),
             [self.consumer] * n],
        )  # fmt: skip
        rows = self.store.query(
            f"SELECT kafka_partition, claimed_at FROM {self.store.database}.{CLAIMS_TABLE} "
            "WHERE consumer_group = {g:String} AND topic = {t:String} "
            "AND incarnation = {i:String} AND claim IN {c:Array(String)}",
            {"g": self.group, "t": topic, "i": incarnation, "c": list(ids.values())},
        )
        at = {int(p): _utc(ts) for p, ts in rows}
        return {p: Claim(ids[p], at.get(p, NO_CLAIM)) for p in partitions}

    def fenced(self, topic: str, incarnation: str, claims: dict[int, str]) -> set[int]:
        """Partitions (of ``claims``: partition → claim id) whose newest claim is another
        consumer's. Blocks on one query.

        Raises:
            StoreUnavailable: the store failed.
        """
        if not claims:
            return set()
        rows = self.store.query(
            "SELECT kafka_partition, argMax(claim, (claimed_at, claim)) "
            f"FROM {self.store.database}.{CLAIMS_TABLE} "
            "WHERE consumer_group = {g:String} AND topic = {t:String} "
            "AND incarnation = {i:String} AND kafka_partition IN {ps:Array(Int32)} "
            "GROUP BY kafka_partition",
            {"g": self.group, "t": topic, "i": incarnation, "ps": list(claims)},
        )
        return {int(p) for p, newest in rows if newest != claims.get(int(p))}

    def mark_many(
        self, rows: list[tuple[str, str, int, int, int, State, int, int, datetime]]
    ) -> None:
        """Append several ledger rows (topic, incarnation, partition, first, last, state,
        events, dead letters, claimed_at) in one insert. Blocks until stored.

        Raises:
            StoreUnavailable: the store failed the insert.
        """
        if not rows:
            return
        columns: list[list[Any]] = [[self.group] * len(rows)]
        columns += [list(c) for c in zip(*rows, strict=True)]
        columns.insert(-1, [self.consumer] * len(rows))
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
        claimed_at: datetime = NO_CLAIM,
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
                [claimed_at],
            ],
        )


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return NO_CLAIM
