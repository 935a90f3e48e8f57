"""Sending one spool's records in order, and moving its cursor over acknowledged ones.

Used by the spooling exporter, one per spool (its own and each adopted one). Records
are read from memory while sending keeps up with appending, and from disk after an
outage or a rewind; either way they are the spool's bytes. Records the destination
acknowledged are never sent again by this process: after a rewind, an acknowledged
record ahead of the cursor is skipped (counted as acked), not re-sent.
"""

from __future__ import annotations

import collections
import threading
import time

from agenttrail.producer._exporter import OutRecord
from agenttrail.producer._spool import Spool, SpooledRecord, SpoolPosition

MAX_TAIL = 50_000
"""Appended records kept in memory for sending; beyond that they are read back from disk."""
CURSOR_EVERY_S = 0.25
"""How often, at most, the cursor is written while records are still in flight."""


class Flight:
    """One record handed to the destination; ``state`` is None, True (acked) or the error.

    ``earlier`` marks a record an earlier process had acknowledged (found in the ack
    log): it is passed over, not sent and not counted as delivered again.
    """

    __slots__ = ("earlier", "out", "record", "state")

    def __init__(self, record: SpooledRecord | None, out: OutRecord):
        self.record = record
        self.out = out
        self.state: bool | BaseException | None = None
        self.earlier = False


class SpoolReplayer:
    """Reads, tracks and acknowledges the records of one spool. Used from one thread,
    except :meth:`remember`, which the appending thread calls under ``lock``.

    Args:
        spool: the spool; its cursor is the first record not yet acknowledged.
        lock: serialises access to the spool with the appending thread.
    """

    def __init__(self, spool: Spool, lock: threading.Lock):
        self.spool = spool
        self.lock = lock
        self.read_pos: SpoolPosition = spool.cursor
        self.inflight: collections.deque[Flight] = collections.deque()
        self._tail: collections.deque[SpooledRecord] = collections.deque()
        self._acked_ahead: set[SpoolPosition] = set()  # acked here, then rewound
        self._acked_earlier: set[SpoolPosition] = set(spool.acked_ahead)
        self._acked_to: SpoolPosition | None = None  # end of the acknowledged prefix
        self._acked_unwritten = 0  # acknowledged records the cursor does not pass yet
        self._cursor_moved_at = float("-inf")

    def remember(self, records: list[SpooledRecord]) -> None:
        """Keep just-appended records in memory so sending need not read them back."""
        if len(self._tail) + len(records) > MAX_TAIL:
            self._tail.clear()  # they are on disk; sending reads them from there
            return
        self._tail.extend(records)

    def next_batch(self, limit: int) -> list[Flight]:
        """The next records to send (at most ``limit``), oldest first, now in flight.

        Records known to be acknowledged already are put in flight as acked, unsent.
        """
        with self.lock:
            tail = self._tail
            while tail and tail[0].position < self.read_pos:
                tail.popleft()
            if tail and tail[0].position == self.read_pos:
                batch = [tail.popleft() for _ in range(min(limit, len(tail)))]
            else:
                batch = self.spool.read_from(self.read_pos, limit)
        if not batch:
            return []
        self.read_pos = batch[-1].next_position
        flights = []
        for rec in batch:
            flight = Flight(rec, OutRecord(rec.key, rec.value))
            if rec.position in self._acked_ahead:
                self._acked_ahead.discard(rec.position)
                flight.state = True
            elif self._acked_earlier and rec.position in self._acked_earlier:
                self._acked_earlier.discard(rec.position)
                flight.state = True
                flight.earlier = True
            self.inflight.append(flight)
            flights.append(flight)
        return flights

    def acked(self, flight: Flight) -> None:
        """The destination acknowledged ``flight`` (any thread): log it, then mark it.

        Once this returns the record is never sent again, even by a process that
        replays this spool after a SIGKILL.
        """
        record = flight.record
        if record is not None:
            self.spool.log_acked([record.position])
        flight.state = True

    def unsend(self, flights: list[Flight]) -> None:
        """The destination did not take ``flights`` (the tail of the last batch)."""
        if not flights:
            return
        first = flights[0].record
        assert first is not None
        for _ in flights:
            self.inflight.pop()
        self.read_pos = first.position

    def settle(self, *, final: bool = False) -> int:
        """Take the acknowledged prefix out of flight; return how many this process
        delivered (records an earlier process had acknowledged are passed, not counted).

        The spool's cursor (a file write, fsynced under the ``always`` policy) moves
        over them at most every :data:`CURSOR_EVERY_S` while records are still in
        flight, and at once when none is: a busy sender would otherwise write and
        fsync the cursor on every cycle, holding the lock appends need. The cursor is
        only a compaction point: what it has not passed yet is in the ack log, which a
        crash does not take (see :meth:`Spool.log_acked`).
        """
        inflight = self.inflight
        count = passed = 0
        while inflight and inflight[0].state is True:
            flight = inflight.popleft()
            record = flight.record
            assert record is not None
            self._acked_to = record.next_position
            passed += 1
            if not flight.earlier:
                count += 1
        self._acked_unwritten += passed
        if self._acked_unwritten and self._acked_to is not None:
            now = time.monotonic()
            if final or not inflight or now - self._cursor_moved_at >= CURSOR_EVERY_S:
                with self.lock:
                    self.spool.ack_to(self._acked_to, self._acked_unwritten)
                self._acked_unwritten = 0
                self._cursor_moved_at = now
        return count

    def rewind(self) -> None:
        """Forget what is in flight (the destination was reset): send again from the
        first unacknowledged record, skipping the ones acknowledged since."""
        for f in self.inflight:
            if f.state is True and f.record is not None:
                self._acked_ahead.add(f.record.position)
        if self.inflight and self.inflight[0].record is not None:
            self.read_pos = self.inflight[0].record.position
        self.inflight.clear()

    @property
    def drained(self) -> bool:
        """Nothing left to send or to wait for."""
        return not self.inflight and self.spool.pending == 0

    @property
    def caught_up(self) -> bool:
        """Everything in the spool was handed over (some may still await their ack).

        A drained spool may have moved on to a fresh segment (see :meth:`Spool.ack_to`),
        so its end lies past where reading stopped: nothing pending means caught up.
        """
        with self.lock:
            return self.read_pos >= self.spool.end or (
                not self.inflight and self.spool.pending == 0
            )
