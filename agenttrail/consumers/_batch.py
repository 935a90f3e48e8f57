"""Batching per partition: by size, by age, or to an exact range recorded in the ledger.

A partition's batch always covers a contiguous offset range [first, last] of that
partition only; its deduplication tokens are derived from that range, so re-forming
the same range after a crash gives the same tokens.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from agenttrail.consumers._framing import ChunkList, ChunkSlice, FramedMessages


class Message(Protocol):
    """What the pipeline needs of a Kafka record (kafka-python's ``ConsumerRecord`` fits)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


@dataclass
class Batch:
    """Messages of one partition covering offsets [first_offset, last_offset].

    ``messages`` may have gaps in their offsets (compaction, transaction markers) and
    may even be empty when a recorded range was deleted by retention; the range, not the
    messages, identifies the batch.
    """

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    messages: list[Any] = field(default_factory=list)
    incarnation: str = ""
    claim: str = ""  # the writer's claim of the partition ("" = unfenced, tools and tests)
    claimed_at: datetime | None = None
    redo: bool = False
    """A range the ledger recorded 'before' and never 'after' (a crash, a lost partition):
    an earlier attempt may have stored some of its rows already."""

    @property
    def range_token(self) -> str:
        """``topic:partition:first-last@incarnation``, the base of every deduplication
        token of this batch.

        The incarnation is part of it because offsets repeat after the embedded broker
        restarts: a new batch over the same range as an old one must not be taken by
        ClickHouse for a retry of it and dropped. Legacy batches (incarnation ``""``)
        keep the token they always had.
        """
        token = f"{self.topic}:{self.partition}:{self.first_offset}-{self.last_offset}"
        return f"{token}@{self.incarnation}" if self.incarnation else token


class PartitionBuffer:
    """Fetched but not yet batched messages of one partition. Not thread-safe.

    It holds records, or slices of the chunks a fetcher pool ships (``_framing``); both
    are cut into batches by the same rules, so the same data makes the same batches.

    Args:
        topic: the topic.
        partition: the partition.
        position: the next offset expected; messages below it (re-fetched after a seek)
            are dropped.
    """

    def __init__(
        self, topic: str, partition: int, position: int | None = None, incarnation: str = ""
    ):
        self.topic = topic
        self.partition = partition
        self.incarnation = incarnation
        self.claim = ""
        self.claimed_at: datetime | None = None
        self.position = position
        self.forced: tuple[int, int] | None = None
        self._messages: deque[Any] = deque()  # records and ChunkSlices, in offset order
        self._count = 0
        self._bytes = 0
        self._oldest_at: float | None = None

    def __len__(self) -> int:
        return self._count

    def force_range(self, first: int, last: int) -> None:
        """Make the next batch exactly [first, last] (a ledger 'before' being redone)."""
        self.forced = (first, last)
        self.position = first
        self._messages.clear()
        self._count = 0
        self._bytes = 0
        self._oldest_at = None

    def add(self, messages: list[Any], now: float | None = None) -> int:
        """Append fetched messages in offset order; return how many were kept."""
        kept = 0
        if isinstance(messages, ChunkList):
            for chunk in messages:
                n = len(chunk)
                start = 0 if self.position is None else bisect_left(chunk.offsets, self.position)
                if start >= n:
                    continue
                self._messages.append(ChunkSlice(chunk, start, n))
                self._bytes += chunk.cum[n] - chunk.cum[start]
                self.position = int(chunk.offsets[n - 1]) + 1
                kept += n - start
        else:
            for m in messages:
                if self.position is not None and m.offset < self.position:
                    continue
                self._messages.append(m)
                self._bytes += len(m.value) if m.value else 0
                self.position = m.offset + 1
                kept += 1
        self._count += kept
        if kept and self._oldest_at is None:
            self._oldest_at = time.monotonic() if now is None else now
        return kept

    def advance_to(self, position: int) -> None:
        """The consumer has read up to ``position`` (past markers that carry no message)."""
        if self.position is None or position > self.position:
            self.position = position

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the buffered message values."""
        return self._bytes

    def ready(
        self, batch_size: int, batch_ms: int, now: float | None = None, batch_bytes: int = 0
    ) -> bool:
        """Whether a batch should be cut now: by count, by bytes (when given), or by age."""
        if self.forced is not None:
            return self.position is not None and self.position > self.forced[1]
        if not self._messages:
            return False
        if self._count >= batch_size or (batch_bytes and self._bytes >= batch_bytes):
            return True
        now = time.monotonic() if now is None else now
        return self._oldest_at is not None and (now - self._oldest_at) * 1000 >= batch_ms

    def take(self, batch_size: int, batch_bytes: int = 0) -> Batch | None:
        """Cut the next batch, or None when nothing is buffered.

        A forced range is cut only once complete (every offset up to its end was read).
        """
        if self.forced is not None:
            first, last = self.forced
            if self.position is None or self.position <= last:
                # Cutting a recorded range short would reuse its tokens for other rows.
                return None
            messages = self._take_through(last)
            self.forced = None
            self._restart_clock()
            return Batch(
                self.topic, self.partition, first, last, messages, self.incarnation,
                self.claim, self.claimed_at, redo=True,
            )  # fmt: skip
        if not self._messages:
            return None
        messages = self._take_first(batch_size, batch_bytes)
        self._restart_clock()
        return Batch(
            self.topic,
            self.partition,
            _first(messages),
            _last(messages),
            messages,
            self.incarnation,
            self.claim,
            self.claimed_at,
        )

    def _take_through(self, last: int) -> Any:
        """Take every buffered message up to offset ``last``."""
        taken: list[Any] = []
        while self._messages:
            head = self._messages[0]
            if isinstance(head, ChunkSlice):
                offsets = head.chunk.offsets
                j = bisect_right(offsets, last, head.i, head.j)
                if j == head.i:
                    break
                self._take_slice(head, j, taken)
                if j < head.j:
                    break
            elif head.offset <= last:
                taken.append(self._pop())
            else:
                break
        return _joined(taken)

    def _take_first(self, batch_size: int, batch_bytes: int) -> Any:
        """Take the next batch's messages: up to ``batch_size`` of them and, when
        ``batch_bytes`` is set, no more bytes than that, but always at least one."""
        taken: list[Any] = []
        count = size = 0
        while self._messages and count < batch_size:
            head = self._messages[0]
            if isinstance(head, ChunkSlice):
                cum, i = head.chunk.cum, head.i
                j = min(head.j, i + batch_size - count)
                if batch_bytes:
                    # The furthest end whose bytes still fit: byte sizes only grow.
                    j = bisect_right(cum, batch_bytes - size + cum[i], i, j + 1) - 1
                    if count == 0:
                        j = max(j, i + 1)
                if j <= i:
                    break
                size += cum[j] - cum[i]
                count += j - i
                whole = j == head.j
                self._take_slice(head, j, taken)
                if not whole:
                    break
                continue
            nxt = len(head.value or b"")
            if count and batch_bytes and size + nxt > batch_bytes:
                break
            taken.append(self._pop())
            count += 1
            size += nxt
        return _joined(taken)

    def _take_slice(self, head: ChunkSlice, j: int, taken: list[Any]) -> None:
        """Take indexes [head.i, j) of the buffer's first slice."""
        chunk = head.chunk
        taken.append(ChunkSlice(chunk, head.i, j))
        self._bytes -= chunk.cum[j] - chunk.cum[head.i]
        self._count -= j - head.i
        if j >= head.j:
            self._messages.popleft()
        else:
            head.i = j

    def _pop(self) -> Any:
        m = self._messages.popleft()
        self._bytes -= len(m.value) if m.value else 0
        self._count -= 1
        return m

    def _restart_clock(self) -> None:
        self._oldest_at = time.monotonic() if self._messages else None


def _joined(taken: list[Any]) -> Any:
    """Taken records as a list, taken chunk slices as :class:`FramedMessages` (both,
    which no pipeline mixes, as records)."""
    slices = [t for t in taken if isinstance(t, ChunkSlice)]
    if not slices:
        return taken
    framed = FramedMessages(slices)
    if len(slices) == len(taken):
        return framed
    out: list[Any] = []
    for t in taken:
        out.extend(t.chunk.records(t.i, t.j) if isinstance(t, ChunkSlice) else [t])
    return out


def _first(messages: Any) -> int:
    if isinstance(messages, FramedMessages):
        s = messages.slices[0]
        return int(s.chunk.offsets[s.i])
    return int(messages[0].offset)


def _last(messages: Any) -> int:
    if isinstance(messages, FramedMessages):
        s = messages.slices[-1]
        return int(s.chunk.offsets[s.j - 1])
    return int(messages[-1].offset)
