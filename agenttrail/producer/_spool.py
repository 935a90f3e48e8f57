"""An append-only on-disk log of framed events: written before sending, cut after acks.

Layout of a spool directory::

    .lock               flock held by the process that owns the directory
    00000000000000000000.seg   segments named by their number, in order
    cursor              "<segment> <byte offset>" of the first record not yet acked
    acked               positions of records acknowledged past the cursor (the ack log)
    destination         where the events are bound (kafka://host:port/topic)
    <segment>.damaged   bytes from a damaged record on, kept for a person (never deleted)

Each record is ``>II`` (payload length, CRC-32 of the payload) then the payload,
``>H`` key length, key, value (Vector's disk buffer and SQLite's WAL frame records the
same way). Guarantees:

* An append is written with unbuffered writes; if the disk refuses it (ENOSPC, EIO,
  read-only) the segment is truncated back to where the append began, so a failed
  write never leaves half a record in the middle of the log, and :class:`OSError`
  reaches the caller. Later appends follow the last whole record.
* A torn tail (the process died mid-write) is cut off at the last whole record on open.
  From a damaged record (bad CRC) on, the bytes are copied to ``<segment>.damaged``
  before the segment is cut; a directory holding a ``.damaged`` file is never removed.
* Nothing is deleted before it is acknowledged: only segments wholly behind the cursor
  are removed.
* An acknowledged record is never handed out again, also after the process was killed:
  :meth:`Spool.log_acked` appends the record's position to the ack log (one unbuffered
  write, so it is in the page cache, which a SIGKILL does not take) before the sender
  counts the record as delivered; the next open skips every logged position past the
  cursor. The cursor itself only moves now and then, as a compaction point. Each entry
  carries a CRC, so the zero-filled tail a power cut can leave marks nothing acked. Under
  the ``always`` fsync policy the ack log is fsynced with every cursor move (at most
  every 250 ms), so a power cut can re-send at most that much acknowledged data; under
  ``never`` whatever the OS had not written back (the consumer drops such copies).

Not thread-safe by itself: the spooling exporter serialises access with its own lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

log = logging.getLogger("agenttrail.producer.spool")

_RECORD = struct.Struct(">II")
_KEY = struct.Struct(">H")
_ACK = struct.Struct(">IQ")  # segment, offset of an acknowledged record
_ACK_ENTRY = _ACK.size + 4  # then the CRC-32 of those 12 bytes
ACK_LOG_COMPACT_BYTES = 4 * 1024 * 1024
"""An ack log past this is rewritten with only the entries past the cursor."""
SEGMENT_BYTES = 64 * 1024 * 1024
MAX_RECORD_BYTES = 64 * 1024 * 1024
"""A length field above this is damage, not a torn tail (events are at most a few MiB)."""

FsyncPolicy = Literal["always", "never"]
_OWN_FILES = frozenset({".lock", "cursor", "cursor.tmp", "destination", "acked", "acked.tmp"})


class SpoolLocked(Exception):
    """Another process owns this spool directory."""


class SpoolPosition(NamedTuple):
    """A byte position in the log: segment number and offset within it (ordered)."""

    segment: int
    offset: int


class SpooledRecord(NamedTuple):
    """One record of the log, with where it starts and where the next one starts.

    (Tuples, not dataclasses: one is made per event, and a frozen dataclass costs
    several times as much to build and to compare.)
    """

    key: bytes
    value: bytes
    position: SpoolPosition
    next_position: SpoolPosition


class Spool:
    """The spool of one producer (or of a dead one being adopted).

    Args:
        directory: created if missing; locked for the lifetime of the object.
        fsync: ``always`` fsyncs after every append and cursor move (an event
            survives a power cut once ``append`` returns); ``never`` leaves it to the OS
            (survives a process crash, not a power cut).

    Raises:
        SpoolLocked: another live process holds the directory.
    """

    def __init__(self, directory: Path, fsync: FsyncPolicy = "always"):
        self.directory = directory
        self.fsync = fsync
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(directory / ".lock", "a+b")  # noqa: SIM115 - held for the object's life
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolLocked(f"Spool {directory} is in use by another process.") from None
        self.cursor = self._read_cursor()
        self._fd = -1
        self._segment = -1
        self._size = 0
        self.pending = 0
        self._ack_lock = threading.Lock()  # the ack log: the acking thread vs compaction
        self._ack_fd = -1
        self._ack_size = 0
        self._ack_error: str | None = None
        self.acked_ahead: set[SpoolPosition] = self._read_ack_log()
        """Positions past the cursor that an earlier process logged as acknowledged."""
        self._recover()
        self._open_ack_log()

    # -- opening ---------------------------------------------------------------------

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:020d}.seg"

    def _read_cursor(self) -> SpoolPosition:
        try:
            seg, off = (self.directory / "cursor").read_text().split()
            return SpoolPosition(int(seg), int(off))
        except (OSError, ValueError):
            return SpoolPosition(0, 0)

    def _read_ack_log(self) -> set[SpoolPosition]:
        try:
            data = (self.directory / "acked").read_bytes()
        except OSError:
            return set()
        out: set[SpoolPosition] = set()
        cursor = self.cursor
        for at in range(0, len(data) - _ACK_ENTRY + 1, _ACK_ENTRY):
            entry = data[at : at + _ACK.size]
            if zlib.crc32(entry) != int.from_bytes(data[at + _ACK.size : at + _ACK_ENTRY]):
                continue  # a torn or zero-filled entry (power cut): marks nothing
            position = SpoolPosition(*_ACK.unpack(entry))
            if position >= cursor:
                out.add(position)
        return out

    def _open_ack_log(self) -> None:
        path = self.directory / "acked"
        self._ack_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._ack_size = os.fstat(self._ack_fd).st_size
        if self._ack_size % _ACK_ENTRY:  # a torn entry: later ones must stay aligned
            os.ftruncate(self._ack_fd, self._ack_size - self._ack_size % _ACK_ENTRY)
            self._ack_size -= self._ack_size % _ACK_ENTRY

    def _recover(self) -> None:
        """Count pending records, cut torn tails, drop fully acked segments."""
        segments = self._segments()
        for seg in segments:
            if seg < self.cursor.segment:
                self._path(seg).unlink(missing_ok=True)
        segments = [s for s in segments if s >= self.cursor.segment]
        count = 0
        for seg in segments:
            path = self._path(seg)
            start = self.cursor.offset if seg == self.cursor.segment else 0
            good_end, n, damaged = self._scan(path, start)
            count += n
            size = path.stat().st_size
            if damaged:
                self._keep_damaged(path, good_end)
            elif good_end < size:
                log.warning(
                    "Spool segment %s ends with %d bytes of a half-written record "
                    "(the process died mid-write); cutting them off.",
                    path,
                    size - good_end,
                )
            if good_end < size:
                with open(path, "r+b") as f:
                    f.truncate(good_end)
        self.pending = count
        last = segments[-1] if segments else self.cursor.segment
        self._open_segment(max(last, self.cursor.segment))

    def _keep_damaged(self, path: Path, good_end: int) -> None:
        # Keep the unreadable remainder beside the spool for a person to look at; the
        # records before it are replayed as usual. Never overwrite an earlier copy.
        target = path.with_suffix(".damaged")
        n = 1
        while target.exists():
            target = path.with_suffix(f".damaged.{n}")
            n += 1
        with open(path, "rb") as f:
            f.seek(good_end)
            rest = f.read()
        target.write_bytes(rest)
        log.error(
            "Spool segment %s has a damaged record at byte %d; the %d bytes from there are "
            "kept in %s and cannot be replayed automatically.",
            path,
            good_end,
            len(rest),
            target,
        )

    @staticmethod
    def _scan(path: Path, start: int) -> tuple[int, int, bool]:
        """Return (end of the last whole record, records after start, damaged)."""
        count = 0
        pos = start
        with open(path, "rb") as f:
            f.seek(start)
            while True:
                header = f.read(_RECORD.size)
                if len(header) < _RECORD.size:
                    return pos, count, False
                length, crc = _RECORD.unpack(header)
                if length > MAX_RECORD_BYTES:
                    return pos, count, True  # no writer makes such a record: damage
                payload = f.read(length)
                if len(payload) < length:
                    return pos, count, False
                if zlib.crc32(payload) != crc:
                    return pos, count, True
                pos += _RECORD.size + length
                count += 1

    def _open_segment(self, segment: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segment = segment
        self._size = os.fstat(self._fd).st_size
        if self.fsync == "always":
            self._fsync_dir()

    # -- destination -------------------------------------------------------------------

    def set_destination(self, destination: str) -> None:
        """Record where these events are bound, so that only a recorder sending to the
        same place replays them after a crash."""
        (self.directory / "destination").write_text(destination)

    @property
    def destination(self) -> str | None:
        try:
            return (self.directory / "destination").read_text()
        except OSError:
            return None

    # -- writing ---------------------------------------------------------------------

    @property
    def end(self) -> SpoolPosition:
        """Where the next appended record will start."""
        return SpoolPosition(self._segment, self._size)

    def append(self, records: list[tuple[bytes, bytes]]) -> list[SpooledRecord]:
        """Append (key, value) records in order; durable per the fsync policy on return.

        Returns:
            The appended records with their positions.

        Raises:
            OSError: the disk refused the write (full, read-only). The segment is cut back
                to where this append began: none of the records is in the log.
        """
        segment, offsets = self.append_at(records)
        new = tuple.__new__  # a NamedTuple's own constructor is a Python function: 3x slower
        return [
            new(
                SpooledRecord,
                (
                    key,
                    value,
                    new(SpoolPosition, (segment, offsets[i])),
                    new(SpoolPosition, (segment, offsets[i + 1])),
                ),
            )
            for i, (key, value) in enumerate(records)
        ]

    def append_at(self, records: Iterable[tuple[bytes, bytes]]) -> tuple[int, list[int]]:
        """:meth:`append` returning only where the records went: the segment, and the
        offset at which each record starts followed by where the last one ends.

        Raises:
            OSError: as :meth:`append`; none of the records is in the log.
        """
        if self._size >= SEGMENT_BYTES:
            self._open_segment(self._segment + 1)
        chunks = []
        pos = self._size
        offsets = [pos]
        header = _RECORD.pack
        key_len = _KEY.pack
        crc32 = zlib.crc32
        for key, value in records:
            payload = b"".join((key_len(len(key)), key, value))
            chunks.append(header(len(payload), crc32(payload)))
            chunks.append(payload)
            pos += _RECORD.size + len(payload)
            offsets.append(pos)
        if len(offsets) == 1:
            return self._segment, offsets
        data = memoryview(b"".join(chunks))
        start = self._size
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            if self.fsync == "always":
                os.fsync(self._fd)
        except OSError:
            self._cut_back(start)
            raise
        self._size = pos
        self.pending += len(offsets) - 1
        return self._segment, offsets

    def _cut_back(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            # The disk refused even the truncate: seal this segment where it is and go
            # on in a fresh one; the reader stops at the torn bytes and the next open
            # keeps them as .damaged.
            log.error("Spool %s: cannot cut back a failed write: %s", self.directory, exc)
            with contextlib.suppress(OSError):
                self._open_segment(self._segment + 1)

    # -- reading and acknowledging ---------------------------------------------------------

    def read_from(self, position: SpoolPosition, max_records: int) -> list[SpooledRecord]:
        """Up to ``max_records`` whole records from ``position`` on, oldest first."""
        out: list[SpooledRecord] = []
        for seg in self._segments():
            if seg < position.segment:
                continue
            start = position.offset if seg == position.segment else 0
            for rec in self._iter_segment(seg, start):
                out.append(rec)
                if len(out) >= max_records:
                    return out
        return out

    def _iter_segment(self, seg: int, start: int) -> Iterator[SpooledRecord]:
        limit = self._size if seg == self._segment else None
        with open(self._path(seg), "rb") as f:
            f.seek(start)
            pos = start
            while limit is None or pos < limit:
                header = f.read(_RECORD.size)
                if len(header) < _RECORD.size:
                    return
                length, crc = _RECORD.unpack(header)
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    return
                end = pos + _RECORD.size + length
                (key_len,) = _KEY.unpack_from(payload)
                key = payload[_KEY.size : _KEY.size + key_len]
                value = payload[_KEY.size + key_len :]
                yield tuple.__new__(
                    SpooledRecord,
                    (
                        key,
                        value,
                        tuple.__new__(SpoolPosition, (seg, pos)),
                        tuple.__new__(SpoolPosition, (seg, end)),
                    ),
                )
                pos = end

    def read(self, max_records: int) -> list[SpooledRecord]:
        """Up to ``max_records`` unacked records from the cursor, oldest first."""
        return self.read_from(self.cursor, max_records)

    def log_acked(self, positions: list[SpoolPosition] | list[tuple[int, int]]) -> None:
        """Record that the records at ``positions`` were acknowledged; any thread.

        One unbuffered append, so it survives a SIGKILL once this returns (a power cut
        only after the next cursor move under the ``always`` policy). A failed write
        (a full disk) is logged once and otherwise ignored: the records were delivered,
        and a copy the next process might send is dropped by the consumer.
        """
        if not positions:
            return
        pack = _ACK.pack
        crc32 = zlib.crc32
        chunks = []
        for position in positions:
            entry = pack(position[0], position[1])
            chunks.append(entry + crc32(entry).to_bytes(4))
        self._write_acks(b"".join(chunks))

    def _write_acks(self, data: bytes) -> None:
        with self._ack_lock:
            if self._ack_fd < 0:
                return
            try:
                written = os.write(self._ack_fd, data)
                if written != len(data):  # nearly full disk: never leave half an entry
                    os.ftruncate(self._ack_fd, self._ack_size)
                    raise OSError(f"short write of the ack log ({written} of {len(data)})")
            except OSError as exc:
                if self._ack_error is None:
                    log.error(
                        "Spool %s: cannot log acknowledgements (%s); a crash now may send "
                        "acknowledged events again (the consumer drops such copies).",
                        self.directory,
                        exc,
                    )
                self._ack_error = str(exc)
                return
            self._ack_error = None
            self._ack_size += written

    def log_acked_at(self, segment: int, offset: int) -> None:
        """:meth:`log_acked` of the one record at (``segment``, ``offset``)."""
        entry = _ACK.pack(segment, offset)
        self._write_acks(entry + zlib.crc32(entry).to_bytes(4))

    def _compact_ack_log(self, cursor: SpoolPosition) -> None:
        """Keep only the entries past ``cursor``: truncate, or rewrite a large log."""
        with self._ack_lock:
            if self._ack_fd < 0 or self._ack_size == 0:
                return
            if self.pending == 0:
                os.ftruncate(self._ack_fd, 0)  # every logged position is behind the cursor
                self._ack_size = 0
                return
            if self._ack_size < ACK_LOG_COMPACT_BYTES:
                return
            path = self.directory / "acked"
            data = path.read_bytes()
            keep = bytearray()
            for at in range(0, len(data) - _ACK_ENTRY + 1, _ACK_ENTRY):
                if SpoolPosition(*_ACK.unpack_from(data, at)) >= cursor:
                    keep += data[at : at + _ACK_ENTRY]
            tmp = self.directory / "acked.tmp"
            with open(tmp, "wb") as f:
                f.write(keep)
                if self.fsync == "always":
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            os.close(self._ack_fd)
            self._ack_fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._ack_size = len(keep)

    def ack_to(self, position: SpoolPosition, count: int) -> None:
        """Mark the ``count`` records before ``position`` delivered: the cursor moves there.

        Segments wholly behind the cursor are deleted; the ack log is compacted.
        """
        if count <= 0 or position <= self.cursor:
            return
        if self.fsync == "always" and self._ack_fd >= 0:
            with self._ack_lock:
                os.fsync(self._ack_fd)  # acks past the cursor survive a power cut from here
        tmp = self.directory / "cursor.tmp"
        with open(tmp, "w") as f:
            f.write(f"{position.segment} {position.offset}")
            f.flush()
            if self.fsync == "always":
                os.fsync(f.fileno())
        os.replace(tmp, self.directory / "cursor")
        self.cursor = position
        self.pending = max(0, self.pending - count)
        for seg in self._segments():
            if seg < position.segment:
                self._path(seg).unlink(missing_ok=True)
        if self.pending == 0 and position == self.end and self._size >= SEGMENT_BYTES // 64:
            # Drained: start the next records in a fresh segment so the directory does
            # not keep an ever-growing acked prefix.
            self._open_segment(self._segment + 1)
            self._path(self._segment - 1).unlink(missing_ok=True)
        self._compact_ack_log(position)

    def ack(self, records: list[SpooledRecord]) -> None:
        """Mark records (a prefix from the cursor) as delivered."""
        if records:
            self.ack_to(records[-1].next_position, len(records))

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def damaged_files(self) -> list[Path]:
        """Kept bytes of damaged records (never deleted by agenttrail)."""
        return sorted(self.directory.glob("*.damaged*"))

    def close(self, remove_if_empty: bool = False) -> None:
        """Release the lock; with ``remove_if_empty`` delete a drained directory.

        A directory that holds anything agenttrail did not write itself as a spool
        file (a ``.damaged`` copy, say) is kept.
        """
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                if self.fsync == "always":
                    os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        with self._ack_lock:
            if self._ack_fd >= 0:
                with contextlib.suppress(OSError):
                    if self.fsync == "always":
                        os.fsync(self._ack_fd)
                os.close(self._ack_fd)
                self._ack_fd = -1
        if remove_if_empty and self.pending == 0 and self.directory.is_dir():
            others = [
                p
                for p in self.directory.iterdir()
                if p.name not in _OWN_FILES and not (p.suffix == ".seg" and p.stem.isdigit())
            ]
            if not others:
                for p in self.directory.iterdir():
                    if p.name != ".lock":
                        p.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    (self.directory / ".lock").unlink()
                    self.directory.rmdir()
        self._lock_file.close()


def orphan_spools(root: Path, own: Path, destination: str) -> Iterator[Spool]:
    """Yield spools under ``root`` left by processes that are gone (their lock is free)
    whose events are bound for ``destination``.

    Directories held by a live process are skipped silently; spools bound elsewhere
    (another broker or topic sharing the spool root) are left for a recorder that sends
    there.
    """
    if not root.is_dir():
        return
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d == own:
            continue
        try:
            spool = Spool(d)
        except SpoolLocked:
            continue
        except OSError as exc:
            log.error("Cannot open spool %s to replay it: %s", d, exc)
            continue
        if spool.pending == 0:
            spool.close(remove_if_empty=True)
            continue
        if spool.destination not in (None, destination):
            log.info(
                "agenttrail: leaving spool %s for a recorder that sends to %s",
                d,
                spool.destination,
            )
            spool.close()
            continue
        yield spool
