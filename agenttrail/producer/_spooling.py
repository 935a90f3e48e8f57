"""The spooling exporter: a write-ahead spool in front of the real exporter.

``export`` writes the records to the spool (fsync per batch by default) before
anything is sent, so an event that is not acknowledged yet is on disk before a crash
can take it — also during a broker outage, when a producer's own buffer would only
hold it in memory. A sender thread then hands the spool's records, in order, to the
wrapped exporter (Kafka, memory) and moves the spool's cursor over the acknowledged
ones; spools of dead processes bound for the same destination are replayed the same
way.

Failures, and what happens:

* The destination refuses records or a delivery fails (broker away, restarted,
  a fatal producer error such as an unknown producer id): the wrapped exporter is
  reset (a Kafka producer is rebuilt), and sending resumes from the first
  unacknowledged record after a backoff shared with the consumers. Records the
  destination acknowledged are never re-sent, by this process or, after a crash
  (SIGKILL), by the next one: each acknowledgement is in the spool's ack log before it
  counts as delivered.
* The disk refuses a write (ENOSPC, read-only): the failed write leaves nothing behind
  (see :class:`Spool`), the records are held in memory in order, ``spool_error`` says
  why, and the error is logged once per episode. Held records are written to the spool
  as soon as it takes them again, and sent straight to the destination if it is
  reachable while the disk is still full. Nothing is deleted before it is delivered.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from agenttrail.events import Backoff
from agenttrail.producer._exporter import (
    AckCallback,
    Exporter,
    ExporterUnavailable,
    OutRecord,
    PartialExport,
)
from agenttrail.producer._replay import Flight, SpoolReplayer, held_flight
from agenttrail.producer._spool import FsyncPolicy, Spool, orphan_spools

log = logging.getLogger("agenttrail.producer")

WINDOW = 20_000
"""Records handed to the destination and not yet acknowledged, at most."""
BATCH = 2_000
DISK_RETRY_S = 0.2
"""How often held records are offered to a spool that refused a write."""


def _ignore(record: OutRecord, error: BaseException | None) -> None:
    return None


@dataclass(frozen=True)
class Drained:
    """What :meth:`SpoolingExporter.close` left behind."""

    delivered: int
    spooled: int
    held: int
    spool_dir: Path | None


class SpoolingExporter:
    """Exporter protocol in front of ``inner``: durable first, then delivered in order.

    Args:
        inner: where records are delivered.
        spool_root: this process's spool is ``<spool_root>/<producer_id>``, made at the
            first export; dead processes' spools found there are replayed. ``None``
            keeps records in memory only (held) until delivered.
        producer_id: names this process's spool.
        fsync: fsync policy of the spool.
        retry_backoff_s: first wait after a failure; doubles up to 30 s.
    """

    def __init__(
        self,
        inner: Exporter,
        *,
        spool_root: Path | None,
        producer_id: str,
        fsync: FsyncPolicy = "always",
        retry_backoff_s: float = 0.5,
    ):
        self.inner = inner
        self.destination = str(getattr(inner, "destination", type(inner).__name__))
        self.spool_root = spool_root
        self.producer_id = producer_id
        self.fsync = fsync
        self.backoff = Backoff(retry_backoff_s, max(30.0, retry_backoff_s))
        self._lock = threading.Lock()  # the own spool: appends vs reads/acks
        self._own: SpoolReplayer | None = None
        self._orphans: list[SpoolReplayer] | None = None
        self._held: collections.deque[tuple[bytes, bytes]] = collections.deque()  # (key, value)
        self._held_flights: collections.deque[Flight] = collections.deque()
        self.spool_error: str | None = None
        self._disk_retry_at = 0.0
        self._failed = False
        self._wake = threading.Event()
        self._draining = False
        self._stop = False
        self._drained = threading.Event()
        self._on_done: AckCallback = _ignore
        self.delivered = 0
        self._thread = threading.Thread(
            target=self._run, name=f"agenttrail-sender-{producer_id[:8]}", daemon=True
        )
        self._thread.start()

    # -- the Exporter protocol -----------------------------------------------------------

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        """Write ``records`` to the spool (or hold them when the disk refuses); never raises.

        ``on_done(record, None)`` is called once per record when the destination
        acknowledges it, from the thread that reports the acknowledgement.
        """
        self._on_done = on_done
        self.write([(r.key, r.value) for r in records])

    def write(self, records: list[tuple[bytes, bytes]]) -> None:
        """:meth:`export` of (key, value) pairs, the sealer's output; never raises."""
        if not records:
            return
        with self._lock:
            if not self._held:
                own = self._own_spool()
                if own is not None:
                    try:
                        segment, offsets = own.spool.append_at(records)
                    except OSError as exc:
                        self._spool_refused(own.spool, exc, len(records))
                    else:
                        own.remember(records, segment, offsets)
                        return
            self._held.extend(records)

    def probe(self, timeout: float) -> bool:
        return self.inner.probe(timeout)

    def flush(self, timeout: float) -> bool:
        """True when everything exported is on disk or delivered (nothing held in memory)."""
        return not self._held and not self._held_flights

    def shutdown(self) -> None:
        self.close(0.0)

    # -- spool bookkeeping -----------------------------------------------------------------

    def _own_spool(self) -> SpoolReplayer | None:
        if self._own is None and self.spool_root is not None:
            try:
                spool = Spool(self.spool_root / self.producer_id, self.fsync)
                spool.set_destination(self.destination)
            except OSError as exc:
                self._spool_refused(None, exc, 0)
                return None
            self._own = SpoolReplayer(spool, self._lock)
        return self._own

    def _spool_refused(self, spool: Spool | None, exc: OSError, count: int) -> None:
        where = spool.directory if spool is not None else self.spool_root
        if self.spool_error is None:
            log.error(
                "agenttrail cannot write the spool %s (%s); events are held in memory, in "
                "order, until it can, and sent directly if the broker takes them. Free disk "
                "space or fix the directory's permissions: a crash now loses what is held.",
                where,
                exc,
            )
        self.spool_error = f"{where}: {exc}"

    def _write_held(self) -> None:
        """Move held records to the spool once it takes writes again (sender thread)."""
        with self._lock:
            if not self._held or self._held_flights:
                return
            own = self._own_spool()
            if own is None:
                return
            held = list(self._held)
            try:
                segment, offsets = own.spool.append_at(held)
            except OSError as exc:
                self.spool_error = f"{own.spool.directory}: {exc}"
                return
            self._held.clear()
            own.remember(held, segment, offsets)
            # With the held records gone, in one step: no reader sees "nothing held"
            # and still the disk's error.
            self.spool_error = None
        log.warning(
            "agenttrail: the spool %s takes writes again; %d held events are on disk now.",
            own.spool.directory,
            len(held),
        )

    # -- the sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(0.02)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # the sender must outlive any single bad cycle
                log.exception("agenttrail sender cycle failed; retrying")
                self.backoff.failed()
            if self._draining and self._is_drained():
                self._drained.set()
            if self._stop:
                return

    def _replayers(self) -> list[SpoolReplayer]:
        out = list(self._orphans or [])
        if self._own is not None:
            out.append(self._own)
        return out

    def _cycle(self) -> None:
        if self._orphans is None:
            self._adopt_orphans()
        for r in self._replayers():
            self.delivered += r.settle()
        self._settle_held()
        if self._failed:
            self._recover_from_failure()
        if self._held and not self._held_flights and time.monotonic() >= self._disk_retry_at:
            # The disk's own retry clock: a full disk is retried whether or not the
            # destination is backing off.
            self._disk_retry_at = time.monotonic() + DISK_RETRY_S
            self._write_held()
        if not self.backoff.ready():
            return
        for r in self._replayers():
            if not self._send_from(r):
                return
            if not r.caught_up:
                return  # keep order: the next spool waits until this one is handed over
        self._retire_orphans()
        if self._held and not self._held_flights and (self._own is None or self._own.drained):
            self._send_held()

    def _send_from(self, replayer: SpoolReplayer) -> bool:
        while len(replayer.inflight) < WINDOW:
            flights = replayer.next_batch(min(BATCH, WINDOW - len(replayer.inflight)))
            if not flights:
                return True
            to_send = [f for f in flights if f.state is None]
            handed = self._hand_over(to_send, replayer)
            if handed < len(to_send):
                first = to_send[handed]
                replayer.unsend(flights[next(i for i, f in enumerate(flights) if f is first) :])
                return False
        return True

    def _hand_over(self, flights: list[Flight], replayer: SpoolReplayer | None = None) -> int:
        """Export ``flights`` (of ``replayer``'s spool, or held); returns how many the
        destination took."""
        if not flights:
            return 0
        try:
            self.inner.export(cast("list[OutRecord]", flights), _AckTo(self, replayer))
        except PartialExport as exc:
            self._unavailable(exc)
            return exc.handed_over
        except ExporterUnavailable as exc:
            self._unavailable(exc)
            return 0
        return len(flights)

    def _unavailable(self, exc: Exception) -> None:
        wait = self.backoff.failed()
        log.info("agenttrail: destination not taking events (%s); retrying in %.1fs", exc, wait)

    def acked(
        self, flight: Flight, error: BaseException | None, replayer: SpoolReplayer | None
    ) -> None:
        """Ack callback (any thread): log and mark the flight, flag a failure."""
        if error is None:
            if replayer is not None:
                replayer.acked(flight)  # in the spool's ack log before it counts
            else:
                flight.state = True
                self._wake.set()
            self._on_done(flight, None)
        else:
            flight.state = error
            self._failed = True
            self._wake.set()

    def acked_many(self, flights: list[Flight], replayer: SpoolReplayer | None) -> None:
        """:meth:`acked` of several acknowledged flights: one ack-log write for them all."""
        if replayer is not None:
            replayer.acked_many(flights)
        else:
            for flight in flights:
                flight.state = True
            self._wake.set()
        on_done = self._on_done
        if on_done is not _ignore:
            for flight in flights:
                on_done(flight, None)

    def _recover_from_failure(self) -> None:
        """A delivery failed: reset the destination, then resend from the first unacked."""
        self._failed = False
        reset = getattr(self.inner, "reset", None)
        if callable(reset):
            reset()
        for r in self._replayers():
            self.delivered += r.settle()
            r.rewind()
        self._settle_held()
        self._held_flights.clear()  # unacked held records stay in _held, sent again
        wait = self.backoff.failed()
        log.warning(
            "agenttrail: the broker failed a delivery; rebuilt the producer, resending "
            "unacknowledged events from the spool in %.1fs",
            wait,
        )

    def _send_held(self) -> None:
        """Send held records straight to the destination (the disk is still full)."""
        with self._lock:
            flights = [held_flight(key, value) for key, value in self._held]
        self._held_flights.extend(flights)
        handed = self._hand_over(flights)
        for _ in flights[handed:]:
            self._held_flights.pop()

    def _settle_held(self) -> None:
        while self._held_flights and self._held_flights[0].state is True:
            self._held_flights.popleft()
            with self._lock:
                self._held.popleft()
            self.delivered += 1

    def _adopt_orphans(self) -> None:
        self._orphans = []
        if self.spool_root is None:
            return
        own = self.spool_root / self.producer_id
        for spool in orphan_spools(self.spool_root, own, self.destination):
            log.info(
                "agenttrail: found %d undelivered events of an earlier process in %s; "
                "replaying them.",
                spool.pending,
                spool.directory,
            )
            self._orphans.append(SpoolReplayer(spool, threading.Lock()))

    def _retire_orphans(self) -> None:
        for r in list(self._orphans or []):
            if r.drained:
                assert self._orphans is not None
                self._orphans.remove(r)
                r.spool.close(remove_if_empty=True)

    def _is_drained(self) -> bool:
        return (
            all(r.drained for r in self._replayers())
            and not self._held
            and not self._held_flights
            and not self._orphans
        )

    # -- closing ---------------------------------------------------------------------------

    def close(self, timeout: float) -> Drained:
        """Deliver what is spooled or held until ``timeout``, then stop. Idempotent.

        What is not delivered by then stays in the spool for the next process (or, held
        in memory because the disk refused it, is reported as ``held``: lost at exit).
        """
        if not self._stop:
            self._draining = True
            self._wake.set()
            self._drained.wait(max(0.0, timeout))
            self._stop = True
            self._wake.set()
            self._thread.join(5.0)
            for r in self._replayers():
                self.delivered += r.settle(final=True)
            self._settle_held()
            self.inner.shutdown()
            self._report = self._close_spools()
        return self._report

    def _close_spools(self) -> Drained:
        spooled = 0
        spool_dir = None
        for r in self._replayers():
            spooled += r.spool.pending
            if r is self._own and r.spool.pending:
                spool_dir = r.spool.directory
            r.spool.close(remove_if_empty=True)
        return Drained(self.delivered, spooled, len(self._held), spool_dir)

    # -- numbers -----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        replayers = self._replayers()
        return {
            "delivered": self.delivered,
            "inflight": sum(len(r.inflight) for r in replayers) + len(self._held_flights),
            "spool_pending": sum(r.spool.pending for r in replayers),
            "held_in_memory": len(self._held),
            "spool_full": int(self.spool_error is not None),
        }


class _AckTo:
    """The ack callback of one handed-over batch: the records handed over are its flights
    (an exporter reports the very objects it was given)."""

    __slots__ = ("_exporter", "_replayer")

    def __init__(self, exporter: SpoolingExporter, replayer: SpoolReplayer | None):
        self._exporter = exporter
        self._replayer = replayer

    def __call__(self, record: OutRecord, error: BaseException | None) -> None:
        if type(record) is Flight:
            self._exporter.acked(record, error, self._replayer)

    def acked(self, records: list[OutRecord]) -> None:
        """Several acknowledgements at once (see :class:`~._exporter.BatchAckCallback`)."""
        flights = [r for r in records if type(r) is Flight]
        if flights:
            self._exporter.acked_many(flights, self._replayer)
