"""How the pipeline is doing: the store's side (counts, rate, dead letters, size) and the
broker's side (partitions, consumer lag, the oldest event not yet consumed).

Both are read-only. The store figures come from the tables themselves (so they agree
with any count taken from the store); the broker figures from the broker and the
consumer group's committed offsets.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agenttrail.store import DEAD_LETTERS_TABLE, FAMILY_TABLES, Store


@dataclass(frozen=True)
class StoreStatus:
    """The store's side of the pipeline.

    Attributes:
        events: rows per family table.
        per_minute: events stored (by ``ingested_at``) per minute, for the last
            ``minutes`` minutes, oldest first, as ``(minute start, count)``; minutes
            without events are included with 0.
        dead_letters: dead letters per reason.
        bytes_on_disk: size of the active parts of the store's database.
        rows_on_disk: rows of those parts (every table, views' targets included).
    """

    location: str
    events: dict[str, int]
    per_minute: list[tuple[datetime, int]]
    dead_letters: dict[str, int]
    bytes_on_disk: int
    rows_on_disk: int

    @property
    def events_total(self) -> int:
        return sum(self.events.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (minutes as ISO 8601)."""
        return {
            "location": self.location,
            "events": dict(self.events),
            "events_total": self.events_total,
            "per_minute": [[m.isoformat(), n] for m, n in self.per_minute],
            "dead_letters": dict(self.dead_letters),
            "bytes_on_disk": self.bytes_on_disk,
            "rows_on_disk": self.rows_on_disk,
        }


def store_status(store: Store, minutes: int = 10) -> StoreStatus:
    """Count the store's events, recent rate, dead letters and size. Blocks on a few queries.

    Raises:
        StoreUnavailable: the store failed a query (e.g. not migrated).
    """
    db = store.database
    events: dict[str, int] = {}
    recent = []
    for family, table in FAMILY_TABLES.items():
        events[str(family)] = int(store.query(f"SELECT count() FROM {db}.{table}")[0][0])
        recent.append(
            f"SELECT toStartOfMinute(ingested_at) AS m FROM {db}.{table} "
            "WHERE ingested_at >= toStartOfMinute(now64(6)) - toIntervalMinute({n:UInt32} - 1)"
        )
    rows = store.query(
        f"SELECT m, count() FROM ({' UNION ALL '.join(recent)}) GROUP BY m ORDER BY m",
        {"n": minutes},
    )
    counted = {_naive(r[0]): int(r[1]) for r in rows}
    now_minute = _naive(store.query("SELECT toStartOfMinute(now64(6))")[0][0])
    per_minute = [
        (m, counted.get(m, 0))
        for m in (now_minute - timedelta(minutes=k) for k in range(minutes - 1, -1, -1))
    ]
    dead = {
        str(r[0]): int(r[1])
        for r in store.query(
            f"SELECT reason, count() FROM {db}.{DEAD_LETTERS_TABLE} GROUP BY reason ORDER BY reason"
        )
    }
    size = store.query(
        "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts "
        "WHERE database = {db:String} AND active",
        {"db": db},
    )[0]
    return StoreStatus(
        location=store.location,
        events=events,
        per_minute=per_minute,
        dead_letters=dead,
        bytes_on_disk=int(size[0] or 0),
        rows_on_disk=int(size[1] or 0),
    )


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None, second=0, microsecond=0)


@dataclass(frozen=True)
class PartitionStatus:
    """One partition of the events topic.

    Attributes:
        committed: the consumer group's committed offset (None: nothing committed).
        high_water: the offset after the newest message (from a fetch, which is exact
            even where a broker's ListOffsets answer is not).
        lag: messages after ``committed`` not yet consumed; None when the partition did
            not answer a fetch in time (unknown, never guessed as 0).
        oldest_unconsumed_age_s: age of the first message not yet consumed (None: none).
    """

    partition: int
    committed: int | None
    high_water: int | None
    lag: int | None
    oldest_unconsumed_age_s: float | None


@dataclass(frozen=True)
class BrokerStatus:
    """The broker's side: topics, partitions, the group's lag."""

    bootstrap: str
    topic: str
    group: str
    topics: dict[str, int]
    partitions: list[PartitionStatus] = field(default_factory=list)

    @property
    def lag(self) -> int | None:
        """Total lag; None when some partition's lag is unknown."""
        lags = [p.lag for p in self.partitions]
        return None if any(x is None for x in lags) else sum(x for x in lags if x is not None)

    @property
    def oldest_unconsumed_age_s(self) -> float | None:
        ages = [p.oldest_unconsumed_age_s for p in self.partitions]
        known = [a for a in ages if a is not None]
        return max(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "topic": self.topic,
            "group": self.group,
            "topics": dict(self.topics),
            "lag": self.lag,
            "oldest_unconsumed_age_s": self.oldest_unconsumed_age_s,
            "partitions": [vars(p) for p in self.partitions],
        }


class BrokerStatusError(Exception):
    """The broker did not answer; the message names it and what to check."""


def broker_status(bootstrap: str, topic: str, group: str, timeout_s: float = 10.0) -> BrokerStatus:
    """Ask the broker for its topics, the group's committed offsets and what is unconsumed.

    For each partition, the message at the committed offset is fetched: its timestamp is
    the oldest unconsumed event's, and the fetch's high watermark gives the lag. Blocks
    up to about ``timeout_s``.

    Raises:
        BrokerStatusError: no broker answered at ``bootstrap``.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        probe = KafkaConsumer(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000) + 1000
        )
    except KafkaError as exc:
        raise BrokerStatusError(
            f"No Kafka broker answered at {bootstrap} ({type(exc).__name__}). Check "
            "--bootstrap, or that `agenttrail up` is running."
        ) from None
    try:
        topics = {
            name: len(probe.partitions_for_topic(name) or ())
            for name in sorted(probe.topics())
            if not name.startswith("__")
        }
    finally:
        probe.close()
    tps = [TopicPartition(topic, p) for p in range(topics.get(topic, 0))]
    firsts: dict[int, float] = {}
    highs: dict[int, int] = {}
    # Manual assignment with the group's id: reads its committed offsets without joining
    # the group (no rebalance of the real consumers) and commits nothing.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=group)
    committed: dict[int, int] = {}
    try:
        if tps:
            consumer.assign(tps)
            for tp in tps:
                with contextlib.suppress(KafkaError):
                    offset = consumer.committed(tp)
                    if offset is not None and offset >= 0:
                        committed[tp.partition] = int(offset)
            for tp in tps:
                consumer.seek(tp, committed.get(tp.partition, 0))
            deadline = time.monotonic() + min(timeout_s, 3.0)
            while time.monotonic() < deadline and len(firsts) < len(tps):
                got = consumer.poll(timeout_ms=200, max_records=len(tps) * 10)
                for tp, records in got.items():
                    if records and tp.partition not in firsts:
                        firsts[tp.partition] = records[0].timestamp / 1000.0
                        consumer.pause(tp)
                for tp in tps:
                    high = consumer.highwater(tp)
                    if high is not None:
                        highs[tp.partition] = int(high)
    finally:
        consumer.close()
    now = time.time()
    parts = []
    for tp in tps:
        p = tp.partition
        start = committed.get(p, 0)
        high = highs.get(p)
        lag = max(high - start, 0) if high is not None else None
        parts.append(
            PartitionStatus(
                partition=p,
                committed=committed.get(p),
                high_water=high,
                lag=lag,
                oldest_unconsumed_age_s=round(now - firsts[p], 3) if p in firsts else None,
            )
        )
    return BrokerStatus(bootstrap, topic, group, topics, parts)
