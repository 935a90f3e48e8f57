"""The emit path behind the SDK: bounded queue → seal (hash chain, Avro) → exporter or spool.

The agent's thread only appends a dict to a queue. One background thread takes
events in order, gives each its event id, producer sequence and hash-chain link,
encodes it, and hands it to the exporter. When the exporter cannot take events (the
broker is away, its buffer is full, a delivery failed) or the queue overflows, events
go to the on-disk spool and everything after them follows them there, so delivery
order is kept; the spool is replayed once the broker answers again, also by the next
process after a crash. Nothing is dropped silently: an event that cannot even be
encoded is written to ``rejected.jsonl`` beside the spool and logged as an error.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal

from agenttrail.events import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    TERMINAL_STATES,
    EncodeError,
    SchemaEntry,
    SchemaRegistry,
    default_registry,
    seal,
    uuid7,
)
from agenttrail.producer._exporter import (
    Exporter,
    ExporterUnavailable,
    OutRecord,
    PartialExport,
)
from agenttrail.producer._spool import FsyncPolicy, Spool, SpooledRecord, orphan_spools

log = logging.getLogger("agenttrail.producer")

OnFull = Literal["spool", "block"]


@dataclass(frozen=True)
class CloseReport:
    """What :meth:`Pipeline.close` left behind.

    Attributes:
        delivered: events acknowledged by the destination during this process's life.
        spooled: events still on disk, to be delivered by the next process (0 is the goal).
        rejected: events that could not be encoded (written to ``rejected.jsonl``).
        unsaved: events that could be neither delivered nor spooled (disk failure);
            logged as errors. Anything above 0 means data loss.
        spool_dir: where the spool lives, when one was used.
    """

    delivered: int
    spooled: int
    rejected: int = 0
    unsaved: int = 0
    spool_dir: Path | None = None

    @property
    def complete(self) -> bool:
        """True when every event reached the destination."""
        return self.spooled == 0 and self.unsaved == 0 and self.rejected == 0


@dataclass
class _Counters:
    delivered: int = 0
    failed: int = 0
    spooled_total: int = 0
    rejected: int = 0
    inflight: dict[int, OutRecord] = field(default_factory=dict)


class Pipeline:
    """The background half of a Recorder. One per Recorder; thread-safe ``submit``.

    Args:
        exporter: where sealed events go.
        producer_id: identity written into every event.
        spool_root: directory under which this process's spool (``<root>/<producer_id>``)
            is created on first need; spools of dead processes found there are replayed.
            ``None`` disables spooling (events wait in memory instead; for tests).
        spool_fsync: fsync policy of the spool.
        queue_size: events the queue holds before ``on_full`` applies.
        on_full: ``spool`` moves the backlog to disk at once; ``block`` makes the caller
            wait up to ``block_timeout_s`` for room, then spools.
        registry: the schemas to write with.
        max_payload_bytes: larger events are not sent but kept in ``rejected.jsonl``.
    """

    def __init__(
        self,
        exporter: Exporter,
        producer_id: str,
        *,
        spool_root: Path | None,
        spool_fsync: FsyncPolicy = "always",
        queue_size: int = 20_000,
        on_full: OnFull = "spool",
        block_timeout_s: float = 1.0,
        batch_size: int = 1000,
        retry_backoff_s: float = 0.5,
        registry: SchemaRegistry | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ):
        self.exporter = exporter
        self.destination = getattr(exporter, "destination", type(exporter).__name__)
        self.producer_id = producer_id
        self.spool_root = spool_root
        self.spool_fsync = spool_fsync
        self.queue_size = queue_size
        self.on_full = on_full
        self.block_timeout_s = block_timeout_s
        self.batch_size = batch_size
        self._registry = registry or default_registry()
        self.max_payload_bytes = max_payload_bytes
        self._writers: dict[str, SchemaEntry] = {
            t: self._registry.latest(t) for t in self._registry.event_types
        }
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._lock = threading.RLock()  # take + seal + route happen in one order
        self._ack_lock = threading.Lock()
        self._chains: dict[str, str] = {}
        self._producer_seq = 0
        self._spool: Spool | None = None
        self._spool_mode = False
        self._adopted: list[Spool] | None = None
        self._held: list[OutRecord] = []  # neither deliverable nor spoolable right now
        self._failed: collections.deque[OutRecord] = collections.deque()
        self._counts = _Counters()
        self._retry_at = 0.0
        self._backoff = retry_backoff_s
        self._base_backoff = retry_backoff_s
        self._stopping = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._report: CloseReport | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"agenttrail-pipeline-{producer_id[:8]}", daemon=True
        )
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------

    def submit(self, event: dict[str, Any]) -> None:
        """Enqueue one unsealed event. Never raises; blocks only under ``on_full="block"``."""
        queue = self._queue
        if len(queue) < self.queue_size and not self._closed:
            queue.append(event)
            if len(queue) >= self.batch_size and not self._wake.is_set():
                self._wake.set()
            return
        self._overflow(event)

    def _overflow(self, event: dict[str, Any]) -> None:
        if self.on_full == "block" and not self._closed:
            deadline = time.monotonic() + self.block_timeout_s
            with self._room:
                self._wake.set()
                while len(self._queue) >= self.queue_size and time.monotonic() < deadline:
                    self._room.wait(max(0.0, deadline - time.monotonic()))
            if len(self._queue) < self.queue_size:
                self._queue.append(event)
                return
        # Move the whole backlog and this event to disk, in order, on this thread.
        with self._lock:
            self._queue.append(event)
            records = self._take_and_seal(len(self._queue))
            self._spool_records(records, reason="the event queue is full")

    # -- sealing -----------------------------------------------------------------------

    def _take_and_seal(self, limit: int) -> list[OutRecord]:
        """Pop up to ``limit`` events and seal them. Caller holds ``_lock``."""
        out: list[OutRecord] = []
        queue = self._queue
        chains = self._chains
        while queue and len(out) < limit:
            event = queue.popleft()
            entry = self._writers.get(event["event_type"])
            if entry is None:
                self._reject(event, f"unknown event type {event['event_type']!r}")
                continue
            event["event_id"] = uuid7(event["ts"] // 1000)
            event["schema_version"] = entry.version
            event["producer_id"] = self.producer_id
            event["producer_seq"] = self._producer_seq
            if event.get("args_hash") is None and "args_json" in event:
                event["args_hash"] = sha256(event["args_json"].encode()).hexdigest()
            task_id = event["task_id"]
            try:
                framed = seal(entry, event, chains.get(task_id, ""))
            except EncodeError as exc:
                self._reject(event, str(exc))
                continue
            if len(framed) > self.max_payload_bytes:
                # Consumers would dead-letter it and the broker may refuse it outright;
                # keep it whole on disk instead, and leave the chain as if it never was
                # (its seq stays a visible gap).
                self._reject(
                    event,
                    f"{len(framed)} bytes encoded, over the {self.max_payload_bytes}-byte "
                    "event limit; shorten what the event carries (e.g. the result summary)",
                )
                continue
            self._producer_seq += 1
            if event["event_type"] == "state_transition" and event["to_state"] in TERMINAL_STATES:
                chains.pop(task_id, None)
            else:
                chains[task_id] = event["hash"]
            out.append(OutRecord(task_id.encode(), framed))
        if out:
            with self._room:
                self._room.notify_all()
        return out

    def _reject(self, event: dict[str, Any], reason: str) -> None:
        self._counts.rejected += 1
        log.error(
            "agenttrail could not encode a %s event of task %s (%s); it is kept in %s, "
            "not sent. This is a bug in the caller's values or in agenttrail.",
            event.get("event_type"),
            event.get("task_id"),
            reason,
            self._rejected_path(),
        )
        path = self._rejected_path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps({"reason": reason, "event": event}, default=repr) + "\n")
        except OSError as exc:
            log.error("cannot write rejected event to %s: %s", path, exc)

    def _rejected_path(self) -> Path | None:
        return None if self.spool_root is None else self.spool_root / "rejected.jsonl"

    # -- routing -----------------------------------------------------------------------

    def _route(self, records: list[OutRecord]) -> None:
        """Hand sealed records to the exporter, or to the spool. Caller holds ``_lock``."""
        if not records:
            return
        if self._spool_mode or self._held:
            self._spool_records(records, reason="earlier events are still spooled")
            return
        with self._ack_lock:
            self._counts.inflight.update((id(r), r) for r in records)
        try:
            self.exporter.export(records, self._on_done)
        except PartialExport as exc:
            tail = records[exc.handed_over :]
            self._forget_inflight(tail)
            self._spool_records(tail, reason=str(exc))
        except ExporterUnavailable as exc:
            self._forget_inflight(records)
            self._spool_records(records, reason=str(exc))

    def _forget_inflight(self, records: list[OutRecord]) -> None:
        with self._ack_lock:
            for r in records:
                self._counts.inflight.pop(id(r), None)

    def _on_done(self, record: OutRecord, error: BaseException | None) -> None:
        # Runs on the exporter's thread.
        with self._ack_lock:
            self._counts.inflight.pop(id(record), None)
            if error is None:
                self._counts.delivered += 1
            else:
                self._counts.failed += 1
                self._failed.append(record)

    def _spool_records(self, records: list[OutRecord], reason: str) -> None:
        """Write records to the spool (caller holds ``_lock``); hold them if that fails."""
        if not records:
            return
        if not self._spool_mode:
            log.warning(
                "agenttrail: spooling events to disk because %s; they will be delivered "
                "in order when the broker takes them again.",
                reason,
            )
        self._spool_mode = True
        self._retry_at = min(self._retry_at, time.monotonic() + self._base_backoff)
        spool = self._own_spool()
        if spool is None:
            self._held.extend(records)
            return
        try:
            if self._held:
                spool.append([(r.key, r.value) for r in self._held])
                self._held.clear()
            spool.append([(r.key, r.value) for r in records])
            self._counts.spooled_total += len(records)
        except OSError as exc:
            log.error(
                "agenttrail cannot write the spool %s (%s); %d events are held in memory "
                "until it can. Free disk space or fix the directory's permissions.",
                spool.directory,
                exc,
                len(records) + len(self._held),
            )
            self._held.extend(records)

    def _own_spool(self) -> Spool | None:
        if self._spool is None and self.spool_root is not None:
            try:
                self._spool = Spool(self.spool_root / self.producer_id, self.spool_fsync)
                self._spool.set_destination(self.destination)
            except OSError as exc:
                log.error("agenttrail cannot create spool under %s: %s", self.spool_root, exc)
                return None
        return self._spool

    # -- the background thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(0.05)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # the pipeline must outlive any single bad cycle
                log.exception("agenttrail pipeline cycle failed; retrying")
                time.sleep(0.1)
            if self._stopping and not self._queue:
                return

    def _cycle(self) -> None:
        if self._adopted is None:
            self._adopt_orphans()
        while self._queue:
            with self._lock:
                self._route(self._take_and_seal(self.batch_size))
        self._respool_failures()
        if time.monotonic() >= self._retry_at and self._has_backlog():
            self._drain_spools(deadline=time.monotonic() + 5.0)

    def _adopt_orphans(self) -> None:
        self._adopted = []
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
            self._adopted.append(spool)
        if self._adopted:
            self._retry_at = 0.0

    def _respool_failures(self) -> None:
        if not self._failed:
            return
        with self._lock:
            failed: list[OutRecord] = []
            while self._failed:
                failed.append(self._failed.popleft())
            self._spool_records(failed, reason="the broker did not acknowledge some events")

    def _has_backlog(self) -> bool:
        own = self._spool.pending if self._spool is not None else 0
        return bool(
            own or self._held or self._spool_mode or any(s.pending for s in self._adopted or [])
        )

    def _drain_spools(self, deadline: float) -> bool:
        """Replay spooled events in order; True when everything is delivered."""
        if not self.exporter.probe(timeout=1.0):
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
            return False
        for orphan in list(self._adopted or []):
            if not self._drain_one(orphan, deadline):
                return False
            assert self._adopted is not None
            self._adopted.remove(orphan)
            orphan.close(remove_if_empty=True)
        while True:
            with self._lock:
                if self._held and not self._release_held():
                    return False
                spool: Spool | None = self._spool
                batch = spool.read(self.batch_size) if spool is not None else []
                if not batch:
                    # Caught up: new events may flow straight to the exporter again.
                    self._spool_mode = False
                    self._backoff = self._base_backoff
                    return True
            if spool is None or not self._send_and_ack(spool, batch, deadline):
                return False

    def _release_held(self) -> bool:
        """Move events held in memory to the spool, or export them when there is none.

        Caller holds ``_lock``. True when nothing is held any more.
        """
        held, self._held = self._held, []
        if self._own_spool() is not None:
            self._spool_records(held, reason="the spool is writable again")
            return not self._held
        with self._ack_lock:
            self._counts.inflight.update((id(r), r) for r in held)
        try:
            self.exporter.export(held, self._on_done)
        except PartialExport as exc:
            self._forget_inflight(held[exc.handed_over :])
            self._held = held[exc.handed_over :]
        except ExporterUnavailable:
            self._forget_inflight(held)
            self._held = held
        return not self._held

    def _drain_one(self, spool: Spool, deadline: float) -> bool:
        while True:
            batch = spool.read(self.batch_size)
            if not batch:
                return True
            if not self._send_and_ack(spool, batch, deadline):
                return False

    def _send_and_ack(self, spool: Spool, batch: list[SpooledRecord], deadline: float) -> bool:
        results: dict[int, BaseException | None] = {}
        done = threading.Event()
        records = [OutRecord(r.key, r.value) for r in batch]

        def on_done(rec: OutRecord, error: BaseException | None) -> None:
            results[id(rec)] = error
            if len(results) == len(records):
                done.set()

        try:
            self.exporter.export(records, on_done)
        except ExporterUnavailable as exc:
            log.info("agenttrail: broker not taking spooled events yet: %s", exc)
            self._retry_at = time.monotonic() + self._backoff
            return False
        self.exporter.flush(timeout=max(0.1, deadline - time.monotonic()))
        done.wait(max(0.0, deadline - time.monotonic()))
        acked = 0
        for rec in records:
            if results.get(id(rec), KeyError) is not None:
                break
            acked += 1
        with self._lock:
            spool.ack(batch[:acked])
        with self._ack_lock:
            self._counts.delivered += acked
        if acked < len(records):
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
            return False
        return True

    # -- flushing and closing ------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every submitted event is acked or spooled; True when nothing is left."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            with self._ack_lock:
                inflight = len(self._counts.inflight)
            if not self._queue and not inflight and not self._failed:
                with self._lock:  # a batch being sealed and routed right now finishes first
                    with self._ack_lock:
                        inflight = len(self._counts.inflight)
                    if not self._queue and not inflight and not self._failed:
                        return True
            time.sleep(0.005)
        return False

    def close(self, timeout: float = 30.0) -> CloseReport:
        """Deliver or durably spool everything, stop the thread, release the spool.

        Blocks at most about ``timeout`` seconds. Idempotent: later calls return the
        first report. Events submitted after close are spooled synchronously.
        """
        with self._close_lock:
            if self._report is None:
                self._report = self._close(timeout)
            return self._report

    def _close(self, timeout: float) -> CloseReport:
        deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        self._closed = True
        with self._lock:
            # Whatever the thread did not take (it timed out) is sealed and spooled here.
            self._route(self._take_and_seal(len(self._queue)))
        self.exporter.flush(timeout=max(0.1, deadline - time.monotonic()))
        self._respool_failures()
        with self._ack_lock:
            unacked = list(self._counts.inflight.values())
            self._counts.inflight.clear()
        if unacked:
            log.warning(
                "agenttrail: %d events unacknowledged at close; spooling them", len(unacked)
            )
            with self._lock:
                self._spool_records(unacked, reason="the broker did not acknowledge them in time")
        if self._has_backlog() and time.monotonic() < deadline:
            self._drain_spools(deadline)
        self.exporter.shutdown()
        spooled = (self._spool.pending if self._spool else 0) + sum(
            s.pending for s in self._adopted or []
        )
        spool_dir = self._spool.directory if self._spool else None
        if self._spool is not None:
            self._spool.close(remove_if_empty=True)
        for s in self._adopted or []:
            s.close(remove_if_empty=True)
        report = CloseReport(
            delivered=self._counts.delivered,
            spooled=spooled,
            rejected=self._counts.rejected,
            unsaved=len(self._held),
            spool_dir=spool_dir if spooled else None,
        )
        if report.unsaved:
            log.error(
                "agenttrail closed with %d events neither delivered nor spooled", report.unsaved
            )
        elif report.spooled:
            log.warning(
                "agenttrail closed with %d events spooled in %s; the next start delivers them.",
                report.spooled,
                report.spool_dir,
            )
        return report

    @property
    def stats(self) -> dict[str, int]:
        """Counters for status lines and tests."""
        with self._ack_lock:
            return {
                "queued": len(self._queue),
                "inflight": len(self._counts.inflight),
                "delivered": self._counts.delivered,
                "failed": self._counts.failed,
                "spooled_total": self._counts.spooled_total,
                "spool_pending": self._spool.pending if self._spool else 0,
                "rejected": self._counts.rejected,
            }
