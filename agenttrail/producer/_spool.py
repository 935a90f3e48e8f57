"""An append-only on-disk spool of framed events waiting for the broker.

Layout of a spool directory::

    .lock               flock held by the process that owns the directory
    00000000000000000000.seg   segments named by the number of their first record
    cursor              "<segment> <byte offset>" of the first record not yet acked

Each record is ``>II`` (payload length, CRC-32 of the payload) then the payload,
``>H`` key length, key, value. A torn tail (the process died mid-write) is cut off at
the last whole record on open; from a damaged record (bad CRC) on, the bytes are moved
to ``<segment>.damaged`` beside it, never deleted, and the records before it replay.

Not thread-safe by itself: the pipeline serialises access with its own lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

log = logging.getLogger("agenttrail.producer.spool")

_RECORD = struct.Struct(">II")
_KEY = struct.Struct(">H")
_SEGMENT_BYTES = 64 * 1024 * 1024

FsyncPolicy = Literal["always", "never"]


class SpoolLocked(Exception):
    """Another process owns this spool directory."""


@dataclass(frozen=True)
class SpoolPosition:
    """Where the next unread record starts."""

    segment: int
    offset: int


@dataclass(frozen=True)
class SpooledRecord:
    """One record read back from the spool, with the position just after it."""

    key: bytes
    value: bytes
    next_position: SpoolPosition


class Spool:
    """The spool of one producer (or of a dead one being adopted).

    Args:
        directory: created if missing; locked for the lifetime of the object.
        fsync: ``always`` fsyncs after every append batch and cursor move (an acked
            event survives a power cut); ``never`` leaves it to the OS (survives a
            process crash, not a power cut).

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
        self._cursor = self._read_cursor()
        self._writer: BinaryIO | None = None
        self._writer_segment = -1
        self._next_number = 0
        self.pending = 0
        self._recover()

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

    def _recover(self) -> None:
        """Count pending records, cut torn tails, drop fully acked segments."""
        segments = self._segments()
        for seg in segments:
            if seg < self._cursor.segment:
                self._path(seg).unlink(missing_ok=True)
        segments = [s for s in segments if s >= self._cursor.segment]
        count = 0
        for seg in segments:
            start = self._cursor.offset if seg == self._cursor.segment else 0
            good_end, n, damaged = self._scan(self._path(seg), start)
            count += n
            path = self._path(seg)
            size = path.stat().st_size
            if damaged:
                # Keep the unreadable remainder beside the spool for a person to look at;
                # the records before it are replayed as usual.
                with open(path, "rb") as f:
                    f.seek(good_end)
                    rest = f.read()
                path.with_suffix(".damaged").write_bytes(rest)
                log.error(
                    "Spool segment %s has a damaged record at byte %d; the %d bytes from there "
                    "are kept in %s and cannot be replayed automatically.",
                    path,
                    good_end,
                    len(rest),
                    path.with_suffix(".damaged"),
                )
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
            self._next_number = max(self._next_number, seg + 1)
        self._next_number = max(self._next_number, self._cursor.segment)
        self.pending = count

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
                payload = f.read(length)
                if len(payload) < length:
                    return pos, count, False
                if zlib.crc32(payload) != crc:
                    return pos, count, True
                pos += _RECORD.size + length
                count += 1

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

    def append(self, records: list[tuple[bytes, bytes]]) -> None:
        """Append (key, value) records in order; durable per the fsync policy on return.

        Raises:
            OSError: the disk refused the write (full, read-only); nothing is half-counted.
        """
        if not records:
            return
        writer = self._ensure_writer()
        chunks = []
        for key, value in records:
            payload = _KEY.pack(len(key)) + key + value
            chunks.append(_RECORD.pack(len(payload), zlib.crc32(payload)))
            chunks.append(payload)
        writer.write(b"".join(chunks))
        writer.flush()
        if self.fsync == "always":
            os.fsync(writer.fileno())
        self.pending += len(records)
        if writer.tell() >= _SEGMENT_BYTES:
            writer.close()
            self._writer = None

    def _ensure_writer(self) -> BinaryIO:
        if self._writer is None:
            segments = self._segments()
            if segments and self._path(segments[-1]).stat().st_size < _SEGMENT_BYTES:
                seg = segments[-1]
            else:
                seg = max(self._next_number, segments[-1] + 1 if segments else 0)
                self._next_number = seg + 1
                if self.fsync == "always":
                    self._fsync_dir()
            self._writer = open(self._path(seg), "ab")  # noqa: SIM115 - kept open across appends
            self._writer_segment = seg
        return self._writer

    # -- reading and acknowledging ---------------------------------------------------------

    def read(self, max_records: int) -> list[SpooledRecord]:
        """Up to ``max_records`` unacked records from the cursor, oldest first."""
        if self._writer is not None:
            self._writer.flush()
        out: list[SpooledRecord] = []
        for seg in self._segments():
            if seg < self._cursor.segment:
                continue
            start = self._cursor.offset if seg == self._cursor.segment else 0
            for rec in self._iter_segment(seg, start):
                out.append(rec)
                if len(out) >= max_records:
                    return out
        return out

    def _iter_segment(self, seg: int, start: int) -> Iterator[SpooledRecord]:
        with open(self._path(seg), "rb") as f:
            f.seek(start)
            pos = start
            while True:
                header = f.read(_RECORD.size)
                if len(header) < _RECORD.size:
                    return
                length, crc = _RECORD.unpack(header)
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    return
                pos += _RECORD.size + length
                (key_len,) = _KEY.unpack_from(payload)
                key = payload[_KEY.size : _KEY.size + key_len]
                value = payload[_KEY.size + key_len :]
                yield SpooledRecord(key, value, SpoolPosition(seg, pos))

    def ack(self, records: list[SpooledRecord]) -> None:
        """Mark records as delivered: the cursor moves past the last one.

        Segments wholly behind the cursor are deleted.
        """
        if not records:
            return
        position = records[-1].next_position
        tmp = self.directory / "cursor.tmp"
        with open(tmp, "w") as f:
            f.write(f"{position.segment} {position.offset}")
            f.flush()
            if self.fsync == "always":
                os.fsync(f.fileno())
        os.replace(tmp, self.directory / "cursor")
        self._cursor = position
        self.pending = max(0, self.pending - len(records))
        for seg in self._segments():
            if seg < position.segment:
                self._path(seg).unlink(missing_ok=True)
        if self.pending == 0:
            self._reset_if_drained()

    def _reset_if_drained(self) -> None:
        # Everything is delivered: start the next outage with a fresh segment so
        # the directory does not keep an ever-growing acked prefix.
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for seg in self._segments():
            self._path(seg).unlink(missing_ok=True)
        self._next_number = max(self._next_number, self._cursor.segment + 1)
        self._cursor = SpoolPosition(self._next_number, 0)
        (self.directory / "cursor").write_text(f"{self._cursor.segment} 0")

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self, remove_if_empty: bool = False) -> None:
        """Flush, release the lock; with ``remove_if_empty`` delete a drained directory."""
        if self._writer is not None:
            self._writer.flush()
            if self.fsync == "always":
                os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None
        if remove_if_empty and self.pending == 0:
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
