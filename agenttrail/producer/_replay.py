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
from agenttrail.producer._spool import Spool, SpoolPosition

MAX_TAIL = 50_000
"""Appended records kept in memory for sending; beyond that they are read back from disk."""
CURSOR_EVERY_S = 0.25
"""How often, at most, the cursor is written while records are still in flight."""


class Flight(OutRecord):
    """One spooled record on its way out: it is itself the record handed to the destination.

    ``state`` is None, True (acked) or the error. ``segment``/``offset``/``end`` are where
    it lies in its spool (``segment`` :data:`HELD` for a record held in memory because
    the disk refused it). ``earlier`` marks a record an earlier process had acknowledged
    (found in the ack log): it is passed over, not sent and not counted as delivered again.

    One object per record from the spool write to the acknowledgement, with the position
    as plain integers: a record in flight is long-lived, and every such object is one
    more for each full garbage collection to walk (a NamedTuple is always tracked).
    """

    __slots__ = ("earlier", "end", "offset", "segment", "state")

    def __init__(self, key: bytes, value: bytes, segment: int, offset: int, end: int):
        self.key = key
        self.value = value
        self.segment = segment
        self.offset = offset
        self.end = end
        self.state: bool | BaseException | None = None
        self.earlier = False

    @property
    def held(self) -> bool:
        """Held in memory, not in a spool."""
        return self.segment == HELD

    @property
    def position(self) -> SpoolPosition:
        return SpoolPosition(self.segment, self.offset)

    @property
    def next_position(self) -> SpoolPosition:
        return SpoolPosition(self.segment, self.end)

    @property
    def out(self) -> OutRecord:
        """The record handed to the destination (the flight itself)."""
        return self


HELD = -1
"""``Flight.segment`` of a record held in memory, in no spool."""


def held_flight(key: bytes, value: bytes) -> Flight:
    """A flight of a record held in memory (the disk refused it)."""
    return Flight(key, value, HELD, 0, 0)


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
        self._tail: collections.deque[Flight] = collections.deque()
        self._acked_ahead: set[SpoolPosition] = set()  # acked here, then rewound
        self._acked_earlier: set[SpoolPosition] = set(spool.acked_ahead)
        self._acked_to: SpoolPosition | None = None  # end of the acknowledged prefix
        self._acked_unwritten = 0  # acknowledged records the cursor does not pass yet
        self._cursor_moved_at = float("-inf")

    def remember(
        self, records: list[tuple[bytes, bytes]], segment: int, offsets: list[int]
    ) -> None:
        """Keep just-appended (key, value) records in memory so sending need not read
        them back.

        ``offsets`` are where each record starts in ``segment``, and where the last ends
        (what :meth:`Spool.append_at` returned).
        """
        if len(self._tail) + len(records) > MAX_TAIL:
            self._tail.clear()  # they are on disk; sending reads them from there
            return
        self._tail.extend(
            [
                Flight(key, value, segment, offsets[i], offsets[i + 1])
                for i, (key, value) in enumerate(records)
            ]
        )

    def next_batch(self, limit: int) -> list[Flight]:
        """The next records to send (at most ``limit``), oldest first, now in flight.

        Records known to be acknowledged already are put in flight as acked, unsent.
        """
        with self.lock:
            tail = self._tail
            at = self.read_pos
            while tail and (tail[0].segment, tail[0].offset) < at:
                tail.popleft()
            if tail and tail[0].segment == at.segment and tail[0].offset == at.offset:
                batch = [tail.popleft() for _ in range(min(limit, len(tail)))]
            else:
                batch = [
                    Flight(r.key, r.value, r.position.segment, r.position.offset,
                           r.next_position.offset)
                    for r in self.spool.read_from(at, limit)
                ]  # fmt: skip
        if not batch:
            return []
        self.read_pos = batch[-1].next_position
        if self._acked_ahead or self._acked_earlier:
            for flight in batch:
                position = flight.position
                if position in self._acked_ahead:
                    self._acked_ahead.discard(position)
                    flight.state = True
                elif position in self._acked_earlier:
                    self._acked_earlier.discard(position)
                    flight.state = True
                    flight.earlier = True
        self.inflight.extend(batch)
        return batch

    def acked(self, flight: Flight) -> None:
        """The destination acknowledged ``flight`` (any thread): log it, then mark it.

        Once this returns the record is never sent again, even by a process that
        replays this spool after a SIGKILL.
        """
        self.spool.log_acked_at(flight.segment, flight.offset)
        flight.state = True

    def acked_many(self, flights: list[Flight]) -> None:
        """:meth:`acked` of several flights, logged with one write (any thread)."""
        self.spool.log_acked([(f.segment, f.offset) for f in flights])
        for flight in flights:
            flight.state = True

    def unsend(self, flights: list[Flight]) -> None:
        """The destination did not take ``flights`` (the tail of the last batch)."""
        if not flights:
            return
        for _ in flights:
            self.inflight.pop()
        self.read_pos = flights[0].position

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
        last = None
        while inflight and inflight[0].state is True:
            last = inflight.popleft()
            passed += 1
            if not last.earlier:
                count += 1
        if last is not None:
            self._acked_to = last.next_position
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
            if f.state is True:
                self._acked_ahead.add(f.position)
        if self.inflight:
            self.read_pos = self.inflight[0].position
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
