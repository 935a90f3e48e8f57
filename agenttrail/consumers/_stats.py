"""Counters of the ingest pipeline, safe to read from another thread (a status line)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backlog:
    """What the assigned partitions hold that is not stored yet, and the broker's high
    watermarks it was counted against (partition -> offset after its last message, as
    this consumer last heard it; a mark only rises).

    ``messages == 0`` says everything up to those marks is stored: a reader that knows
    how many messages a partition really holds compares them, since a mark heard before
    the last messages were produced is low.
    """

    messages: int
    highwater: dict[int, int]


@dataclass(frozen=True)
class IngestSnapshot:
    """A consistent copy of the counters at one moment.

    Attributes:
        events: events stored, per family.
        dead_letters: messages stored in ``dead_letters``.
        batches: batches stored and committed.
        lag: messages in the assigned partitions not yet stored; None until every
            assigned partition's high watermark and position are known.
        highwater: the high watermark per partition that ``lag`` was counted against
            (empty while ``lag`` is None).
        partitions: partitions currently assigned to this consumer.
        store_failures: failed insert attempts (each retried; nothing is dropped).
        retrying: whether inserts are currently backing off because the store fails.
        last_error: the most recent store error, if any.
        last_batch_at: wall-clock time of the last stored batch (epoch seconds), or None.
        fenced: batches not written because another consumer had claimed their
            partition (this consumer had lost it; the new owner stores those events).
        duplicates_dropped: events not stored because the same event (by tenant, task
            and seq) is stored already: copies an at-least-once producer resent.
        broker_failures: failed fetches (each retried; positions only move with
            records accepted, so nothing is skipped).
        last_broker_error: the most recent fetch error, if any.
    """

    events: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    batches: int = 0
    lag: int | None = None
    highwater: dict[int, int] = field(default_factory=dict)
    partitions: tuple[int, ...] = ()
    store_failures: int = 0
    retrying: bool = False
    last_error: str | None = None
    last_batch_at: float | None = None
    fenced: int = 0
    duplicates_dropped: int = 0
    broker_failures: int = 0
    last_broker_error: str | None = None

    @property
    def events_total(self) -> int:
        """Events stored across all families."""
        return sum(self.events.values())

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return {
            "events": dict(self.events),
            "events_total": self.events_total,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "lag": self.lag,
            "highwater": {str(p): h for p, h in sorted(self.highwater.items())},
            "partitions": list(self.partitions),
            "store_failures": self.store_failures,
            "retrying": self.retrying,
            "last_error": self.last_error,
            "last_batch_at": self.last_batch_at,
            "fenced": self.fenced,
            "duplicates_dropped": self.duplicates_dropped,
            "broker_failures": self.broker_failures,
            "last_broker_error": self.last_broker_error,
        }


class IngestStats:
    """Mutable counters updated by the pipeline thread; :meth:`snapshot` from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: Counter[str] = Counter()
        self._dead_letters = 0
        self._batches = 0
        self._lag: Backlog | None = None
        self._partitions: tuple[int, ...] = ()
        self._store_failures = 0
        self._retrying = False
        self._last_error: str | None = None
        self._last_batch_at: float | None = None
        self._fenced = 0
        self._duplicates_dropped = 0
        self._broker_failures = 0
        self._last_broker_error: str | None = None

    def broker_failed(self, error: str) -> None:
        """Count one failed fetch (it will be retried)."""
        with self._lock:
            self._broker_failures += 1
            self._last_broker_error = error

    def partition_fenced(self) -> None:
        """Count one batch not written because its partition was claimed by another."""
        with self._lock:
            self._fenced += 1

    def duplicates(self, dropped: int) -> None:
        """Count events dropped as copies of events already stored."""
        with self._lock:
            self._duplicates_dropped += dropped

    def batch_stored(
        self, events: dict[str, int], dead_letters: int, lag: Backlog | object | None = ...
    ) -> None:
        """Count one stored and committed batch (and, when given, the lag after it)."""
        with self._lock:
            if lag is not ...:
                self._lag = lag if isinstance(lag, Backlog) else None
            self._events.update(events)
            self._dead_letters += dead_letters
            self._batches += 1
            self._retrying = False
            self._last_batch_at = time.time()

    def store_failed(self, error: str) -> None:
        """Count one failed insert attempt (it will be retried)."""
        with self._lock:
            self._store_failures += 1
            self._retrying = True
            self._last_error = error

    def store_recovered(self) -> None:
        """The store answered again."""
        with self._lock:
            self._retrying = False

    def set_lag(self, lag: Backlog | None) -> None:
        """Record the lag computed after a poll."""
        with self._lock:
            self._lag = lag

    def set_partitions(self, partitions: tuple[int, ...]) -> None:
        """Record the current assignment."""
        with self._lock:
            self._partitions = partitions

    def snapshot(self) -> IngestSnapshot:
        """A consistent copy of every counter. Never blocks for long."""
        with self._lock:
            return IngestSnapshot(
                events=dict(self._events),
                dead_letters=self._dead_letters,
                batches=self._batches,
                lag=None if self._lag is None else self._lag.messages,
                highwater={} if self._lag is None else dict(self._lag.highwater),
                partitions=self._partitions,
                store_failures=self._store_failures,
                retrying=self._retrying,
                last_error=self._last_error,
                last_batch_at=self._last_batch_at,
                fenced=self._fenced,
                duplicates_dropped=self._duplicates_dropped,
                broker_failures=self._broker_failures,
                last_broker_error=self._last_broker_error,
            )
