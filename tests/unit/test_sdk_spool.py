"""The spool and the spooling exporter under the failures that used to lose or copy events:
a partial export, a failed delivery (fatal producer error), a full disk (a real small
tmpfs, filled and then freed), a damaged segment."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agenttrail.producer import Recorder
from agenttrail.producer._exporter import AckCallback, OutRecord, PartialExport
from agenttrail.producer._spool import Spool
from agenttrail.producer.testing import InMemoryExporter
from tests.deadline import wait_until
from tests.sdk_behaviour import check_chain


def _emit(rec: Recorder, tasks: int, spans: int, prefix: str = "t") -> int:
    for t in range(tasks):
        with rec.task("spool", task_id=f"{prefix}{t}") as task:
            for i in range(spans):
                with task.tool("probe", args={"i": i, "pad": "x" * 200}) as span:
                    span.result(i)
    return tasks * (spans + 2)


class FlakyExporter(InMemoryExporter):
    """Takes only the first ``take`` records of a batch the first ``partial`` times
    (PartialExport), and fails the delivery of every ``fail_every``-th record once."""

    def __init__(self, partial: int = 0, take: int = 3, fail_every: int = 0) -> None:
        super().__init__()
        self.partial, self.take, self.fail_every = partial, take, fail_every
        self.attempts: list[bytes] = []
        self._seen = 0
        self._failed_once: set[bytes] = set()

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        if self.partial > 0 and len(records) > self.take:
            self.partial -= 1
            super().export(records[: self.take], on_done)
            raise PartialExport(self.take, RuntimeError("buffer full"))
        for r in records:
            self.attempts.append(r.value)
            self._seen += 1
            if (
                self.fail_every
                and self._seen % self.fail_every == 0
                and r.value not in (self._failed_once)
            ):
                self._failed_once.add(r.value)
                on_done(r, RuntimeError("UnknownProducerIdError (simulated)"))
                continue
            with self._lock:
                self.records.append(r)
            on_done(r, None)


def test_a_partial_export_never_sends_an_acknowledged_record_again(tmp_path: Path) -> None:
    exporter = FlakyExporter(partial=5)
    rec = Recorder(exporter=exporter, spool_dir=tmp_path, retry_backoff_s=0.01)
    n = _emit(rec, tasks=4, spans=30)
    report = rec.close(timeout=30)
    assert report.complete and report.delivered == n + 1, report  # + the final checkpoint
    events = exporter.events()
    assert max(Counter(e["event_id"] for e in events).values()) == 1, "no copies"
    assert len(events) == n
    assert [e["producer_seq"] for e in events] == list(range(n)), "delivery keeps order"


def test_a_failed_delivery_rebuilds_the_producer_and_resends_only_the_unacked(
    tmp_path: Path,
) -> None:
    exporter = FlakyExporter(fail_every=17)
    rec = Recorder(exporter=exporter, spool_dir=tmp_path, retry_backoff_s=0.01)
    n = _emit(rec, tasks=5, spans=40)
    report = rec.close(timeout=30)
    assert report.complete and report.delivered == n + 1, report  # + the final checkpoint
    assert exporter.resets >= 1, "the exporter was reset after the failure"
    events = exporter.events()
    assert Counter(e["event_id"] for e in events) == Counter({e["event_id"]: 1 for e in events})
    assert len(events) == n
    check_chain(events)
    # Every retry carried the bytes of the first attempt.
    sent = Counter(exporter.attempts)
    assert set(sent) == {r.value for r in exporter.records}, "a resend is byte-identical"


# --- a full disk ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of this test only, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until only about ``leave`` bytes are free; return the filler file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free - leave))
    return filler


def test_a_failed_write_leaves_the_spool_readable_past_it(small_disk: Path) -> None:
    spool = Spool(small_disk / "spool")
    filler = _fill(small_disk, leave=64 * 1024)
    kept: list[bytes] = []
    refused = 0
    for i in range(2000):
        value = f"{i:06d}".encode() * 100
        try:
            spool.append([(b"k", value)])
            kept.append(value)
        except OSError:
            refused += 1
            if refused == 3:
                filler.unlink()  # space again: later appends must follow whole records
    assert refused >= 3 and len(kept) > 100
    assert [r.value for r in spool.read(10_000)] == kept, "every accepted record reads back"
    spool.close()
    reopened = Spool(small_disk / "spool")
    assert reopened.pending == len(kept) and not reopened.damaged_files
    reopened.close()


def _recorder_on(disk: Path, exporter: InMemoryExporter) -> Recorder:
    return Recorder(exporter=exporter, spool_dir=disk / "spool", retry_backoff_s=0.01)


@pytest.mark.parametrize("freed_first", [True, False], ids=["disk-freed", "disk-still-full"])
def test_a_full_spool_disk_is_visible_and_loses_nothing(
    small_disk: Path, freed_first: bool
) -> None:
    exporter = InMemoryExporter()
    exporter.available = False
    rec = _recorder_on(small_disk, exporter)
    filler = _fill(small_disk, leave=128 * 1024)
    n = _emit(rec, tasks=20, spans=48)  # ~500 KB of events: more than the disk has left
    assert rec.flush(10) is False, "flush says not everything is on disk"
    stats: dict[str, Any] = rec.stats
    assert stats["spool_full"] == 1 and stats["held_in_memory"] > 0, stats
    assert rec.spool_error is not None and "No space left" in rec.spool_error
    on_disk = stats["spool_pending"]
    assert on_disk + stats["held_in_memory"] == n, "every event is on disk or held"
    if freed_first:
        filler.unlink()
        wait_until(lambda: rec.stats["held_in_memory"] == 0, what="held events written")
        assert rec.spool_error is None and rec.stats["spool_pending"] == n
    exporter.available = True
    report = rec.close(timeout=30)
    assert report.complete and report.delivered == n + 1, report  # + the final checkpoint
    events = exporter.events()
    assert [e["producer_seq"] for e in events] == list(range(n)), "in order, each once"
    check_chain(events)
    assert not (small_disk / "spool").exists() or not any((small_disk / "spool").iterdir())


def test_the_disk_error_clears_with_the_held_events_not_after(small_disk: Path) -> None:
    """A reader that sees nothing held in memory any more must not still see the full
    disk's error: both change in one step. Checked at the moment the spool announces it
    takes writes again (after the held events moved, before anything else runs)."""
    import logging

    exporter = InMemoryExporter()
    exporter.available = False
    rec = _recorder_on(small_disk, exporter)
    filler = _fill(small_disk, leave=128 * 1024)
    n = _emit(rec, tasks=20, spans=48)
    assert rec.flush(10) is False and rec.stats["held_in_memory"] > 0
    seen: list[dict[str, Any]] = []

    class Witness(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "takes writes again" in record.getMessage():
                seen.append(dict(rec.stats))

    witness = Witness(logging.WARNING)
    logger = logging.getLogger("agenttrail.producer")
    logger.addHandler(witness)
    try:
        filler.unlink()
        wait_until(lambda: seen, what="the spool to take writes again")
    finally:
        logger.removeHandler(witness)
    assert seen[0]["held_in_memory"] == 0 and seen[0]["spool_full"] == 0, seen[0]
    exporter.available = True
    assert rec.close(timeout=30).delivered == n + 1


def test_a_damaged_segment_is_kept_and_never_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.append([(b"k", f"v{i}".encode() * 50) for i in range(10)])
    spool.close()
    (segment,) = (tmp_path / "s").glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    reopened = Spool(tmp_path / "s")
    readable = reopened.read(100)
    assert 0 < len(readable) < 10
    (damaged,) = reopened.damaged_files
    reopened.ack(readable)
    reopened.close(remove_if_empty=True)
    assert damaged.exists(), "the damaged bytes survive a drained spool's cleanup"
    assert len(damaged.read_bytes()) == len(data) - readable[-1].next_position.offset


@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "together"])
def test_an_acknowledged_record_is_never_handed_out_again_after_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, together: bool
) -> None:
    """While records are in flight the cursor is written at most every CURSOR_EVERY_S
    (here: never within the test), at once when nothing is in flight, and on close. A
    crash in between must not re-send the acknowledged records the cursor did not pass
    yet, acknowledged in any order (partitions answer independently): the ack log holds
    them, whether they were acknowledged one by one or several in one call (as the
    native exporter reports a poll's acknowledgements). No unacknowledged record is
    ever skipped."""
    import threading

    from agenttrail.producer import _replay
    from agenttrail.producer._replay import Flight, SpoolReplayer

    def ack(replayer: SpoolReplayer, flights: list[Flight]) -> None:
        if together:
            replayer.acked_many(flights)
        else:
            for f in flights:
                replayer.acked(f)

    monkeypatch.setattr(_replay, "CURSOR_EVERY_S", 3600.0)
    spool = Spool(tmp_path / "p")
    values = [f"event-{i}".encode() for i in range(10)]
    spool.append([(b"t", v) for v in values])
    replayer = SpoolReplayer(spool, threading.Lock())
    flights = replayer.next_batch(10)
    ack(replayer, flights[:3])
    assert replayer.settle() == 3  # the first move is written: nothing was written yet
    ack(replayer, [flights[i] for i in (3, 4, 5, 8)])  # out of order: 6, 7 unanswered
    assert replayer.settle() == 3  # acknowledged, still in flight: the cursor waits
    # SIGKILL: nothing runs any more; what was written is in the page cache.
    os.close(spool._fd)
    os.close(spool._ack_fd)
    spool._lock_file.close()

    after_crash = Spool(tmp_path / "p")
    assert after_crash.pending == 7  # the cursor passed 3 records
    replayer = SpoolReplayer(after_crash, threading.Lock())
    flights = replayer.next_batch(100)
    unsent = [f.out.value for f in flights if f.state is None]
    assert unsent == [values[6], values[7], values[9]], "only the unacknowledged go out"
    ack(replayer, [f for f in flights if f.state is None])
    assert replayer.settle() == 3, "records acked by the dead process are not counted again"
    assert after_crash.pending == 0 and after_crash.read(100) == []
    after_crash.close()

    spool = Spool(tmp_path / "p")
    assert spool.pending == 0 and not spool.acked_ahead
    spool.append([(b"t", v) for v in values])
    replayer = SpoolReplayer(spool, threading.Lock())
    flights = replayer.next_batch(100)
    ack(replayer, flights[:2])
    replayer.settle(final=True)  # close writes it whatever the interval
    ack(replayer, flights[2:])
    replayer.settle()  # nothing in flight any more: written at once
    assert spool.pending == 0 and spool.read(100) == []
    assert (tmp_path / "p" / "acked").stat().st_size == 0, "a drained spool's log is cut"
    spool.close()


def test_a_torn_or_zeroed_ack_log_marks_nothing_acknowledged(tmp_path: Path) -> None:
    """A power cut can leave a half entry or a zero-filled tail in the ack log: neither
    may make a record look acknowledged (it would never be delivered)."""
    import threading

    from agenttrail.producer._replay import SpoolReplayer

    spool = Spool(tmp_path / "p")
    spool.append([(b"t", f"e{i}".encode()) for i in range(4)])
    replayer = SpoolReplayer(spool, threading.Lock())
    flights = replayer.next_batch(4)
    replayer.acked(flights[2])
    spool.close()
    with open(tmp_path / "p" / "acked", "ab") as f:
        f.write(bytes(16) + b"\x00\x00\x00\x01\x00")  # a zeroed entry, then a torn one
    reopened = Spool(tmp_path / "p")
    assert reopened.acked_ahead == {flights[2].position}
    replayer = SpoolReplayer(reopened, threading.Lock())
    unsent = [f.out.value for f in replayer.next_batch(4) if f.state is None]
    assert unsent == [b"e0", b"e1", b"e3"]
    reopened.close()


def test_a_replayed_spool_that_moved_to_a_fresh_segment_is_retired(tmp_path: Path) -> None:
    """A drained spool of more than 1 MiB starts a fresh segment; its replayer must then
    count as caught up, or the dead process's spool is never retired and close() waits
    out its whole timeout."""
    from agenttrail.producer.testing import InMemoryExporter

    exporter = InMemoryExporter()
    dead = Spool(tmp_path / "spool" / "dead")
    dead.set_destination(str(getattr(exporter, "destination", type(exporter).__name__)))
    values = [f"{i:08d}".encode() * 200 for i in range(800)]  # 1.3 MB
    dead.append([(b"t", v) for v in values])
    dead.close()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path / "spool", checkpoint_interval_s=0)
    pipeline = rec._pipeline
    assert pipeline is not None
    pipeline.exporter._wake.set()
    wait_until(lambda: rec.stats["delivered"] == len(values), what="the replay")
    wait_until(lambda: pipeline.exporter._orphans == [], what="the dead spool to be retired")
    report = rec.close(timeout=30)
    assert report.complete and report.delivered == len(values), report
    assert [r.value for r in exporter.records] == values
