"""Per-partition batching: size, age, exact recorded ranges, re-fetched duplicates."""

from __future__ import annotations

from dataclasses import dataclass

from agenttrail.consumers import PartitionBuffer


@dataclass
class Msg:
    offset: int
    key: bytes | None = None
    value: bytes | None = b""
    timestamp: int = 0


def msgs(*offsets: int) -> list[Msg]:
    return [Msg(o) for o in offsets]


def test_batch_is_cut_at_size_and_covers_exactly_its_offsets() -> None:
    buf = PartitionBuffer("t", 3)
    buf.add(msgs(*range(10, 17)), now=0.0)
    assert buf.ready(batch_size=5, batch_ms=10_000, now=0.0)
    batch = buf.take(5)
    assert batch is not None
    assert (batch.first_offset, batch.last_offset) == (10, 14)
    assert [m.offset for m in batch.messages] == [10, 11, 12, 13, 14]
    assert batch.range_token == "t:3:10-14"
    assert len(buf) == 2


def test_range_token_names_the_incarnation_so_repeated_offsets_never_collide() -> None:
    old = PartitionBuffer("t", 3, incarnation="topic-id:a")
    new = PartitionBuffer("t", 3, incarnation="topic-id:b")
    for buf in (old, new):
        buf.add(msgs(*range(0, 5)), now=0.0)
    a, b = old.take(5), new.take(5)
    assert a is not None and b is not None
    assert (a.first_offset, a.last_offset) == (b.first_offset, b.last_offset)
    assert a.range_token != b.range_token
    assert a.range_token == "t:3:0-4@topic-id:a"


def test_partial_batch_waits_for_its_age() -> None:
    buf = PartitionBuffer("t", 0)
    buf.add(msgs(0, 1), now=100.0)
    assert not buf.ready(batch_size=5, batch_ms=500, now=100.4)
    assert buf.ready(batch_size=5, batch_ms=500, now=100.5)


def test_refetched_messages_below_the_position_are_dropped() -> None:
    buf = PartitionBuffer("t", 0, position=5)
    assert buf.add(msgs(3, 4, 5, 6)) == 2
    batch = buf.take(10)
    assert batch is not None and [m.offset for m in batch.messages] == [5, 6]


def test_forced_range_is_cut_only_when_complete_and_exactly() -> None:
    buf = PartitionBuffer("t", 1)
    buf.force_range(20, 24)
    buf.add(msgs(20, 21, 22))
    assert not buf.ready(batch_size=2, batch_ms=1, now=1e9)
    assert buf.take(2) is None  # cutting short would reuse the range's tokens
    buf.add(msgs(23, 24, 25, 26))
    assert buf.ready(batch_size=100, batch_ms=10_000)
    batch = buf.take(2)  # the recorded range wins over the batch size
    assert batch is not None
    assert (batch.first_offset, batch.last_offset) == (20, 24)
    assert [m.offset for m in batch.messages] == [20, 21, 22, 23, 24]
    rest = buf.take(100)
    assert rest is not None and (rest.first_offset, rest.last_offset) == (25, 26)


def test_forced_range_with_a_gap_at_its_end_completes_once_the_reader_moves_past() -> None:
    buf = PartitionBuffer("t", 1)
    buf.force_range(0, 3)
    buf.add(msgs(0, 1))  # offsets 2-3 hold no message (e.g. transaction markers)
    assert not buf.ready(batch_size=10, batch_ms=1)
    buf.advance_to(4)
    batch = buf.take(10)
    assert batch is not None and (batch.first_offset, batch.last_offset) == (0, 3)
    assert [m.offset for m in batch.messages] == [0, 1]


def test_batch_is_also_cut_by_bytes() -> None:
    buf = PartitionBuffer("t", 0)
    buf.add([Msg(o, value=b"x" * 100) for o in range(10)], now=0.0)
    assert buf.buffered_bytes == 1000
    assert not buf.ready(batch_size=100, batch_ms=10_000, now=0.0, batch_bytes=2000)
    assert buf.ready(batch_size=100, batch_ms=10_000, now=0.0, batch_bytes=1000)
    batch = buf.take(100, batch_bytes=350)
    assert batch is not None and (batch.first_offset, batch.last_offset) == (0, 2)
    assert buf.buffered_bytes == 700
    one = buf.take(100, batch_bytes=10)  # a message larger than the limit still goes alone
    assert one is not None and len(one.messages) == 1


def test_the_backlog_is_unknown_until_every_partition_has_a_high_watermark() -> None:
    # A sum over the partitions heard from so far would say "caught up" while one
    # partition was never fetched: a drain that trusts it stops early and loses that one.
    from kafka import TopicPartition

    from agenttrail.consumers._chain import Partition, backlog

    parts = [Partition.new(TopicPartition("t", p)) for p in range(3)]
    for part in parts:
        part.buffer.position = 0
    parts[0].buffer.add(msgs(0, 1, 2), now=0.0)  # buffered, not stored: still backlog
    marks: dict[int, int | None] = {0: 3, 1: 7, 2: None}

    def highwater(tp: TopicPartition) -> int | None:
        return marks[tp.partition]

    assert backlog(parts, highwater) is None
    marks[2] = 0
    lag = backlog(parts, highwater)
    assert lag is not None
    assert (lag.messages, lag.highwater) == (3 + 7, {0: 3, 1: 7, 2: 0})
    parts[1].buffer.position = None  # its read position is being decided again
    assert backlog(parts, highwater) is None
    assert backlog([], highwater) is None
