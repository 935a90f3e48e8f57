"""Work framed by the fetcher children: one compact chunk per partition fetch.

A fetcher child (``_fetch_child``) does not ship one object per record. For each
partition's fetch it sends one :class:`Chunk`: offsets, timestamps and keys packed into
arrays and blobs, and every message framed with one of the newest flat schemas (the
ones :class:`~agenttrail.consumers._decode.StoreDecoder` hands to the engine) already
wrapped as the store-side Avro row ``zigzag(partition) · zigzag(offset) · body ·
zigzag(nonce + offset)`` (see ``_avro``), appended to one slab per schema, with its
envelope (event id and (tenant, task_id), ``_fetch_child.envelope``) appended to two
more, which the block's checks take without reading the rows again. Messages that
cannot be framed there (an older schema, a family that is not flat, a value that is
malformed, missing or oversize, a body that does not open with the envelope) travel as
their raw bytes and reach the Python decode path and the dead letters exactly as before.

The parent's buffer keeps chunks as slices (:class:`ChunkSlice`); batches are cut by
the same count and byte rules as record by record (so the same data still gives the
same batch and tokens), and a batch's rows for one schema are a few slab slices joined.
Record objects are made only where a record itself is needed: a dead letter, a group
the store's check refused, rows the store rejected.

The check's nonce (:attr:`FramingSpec.nonce`) is drawn once per consumer process rather
than once per block, because rows framed in different chunks (and children) end up in
one block; it is never stored or sent to a producer, so no producer can spell it.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, overload

from agenttrail.consumers._avro import AvroBlock, AvroBlockEncoder, BlockRows, zigzag
from agenttrail.consumers._fetch_child import EVENT_ID_CHARS

log = logging.getLogger("agenttrail.consumers")

RAW = 255
"""The kind of a message shipped raw (not framed in the child)."""


class FetchedRecord(NamedTuple):
    """A record as a fetcher child shipped it (the fields the pipeline reads)."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


class FramingSpec(NamedTuple):
    """What a fetcher child frames: messages of these schema ids (newest flat schemas),
    at most ``max_payload_bytes`` long, with this check nonce."""

    schema_ids: tuple[int, ...]
    max_payload_bytes: int
    nonce: int


def frame_row(partition: int, offset: int, value: bytes, nonce: int) -> bytes:
    """One store-side Avro row as the children frame it (for checks and tests)."""
    return zigzag(partition) + zigzag(offset) + value[5:] + zigzag(nonce + offset)


def compatible(encoder: AvroBlockEncoder) -> bool:
    """Whether blocks assembled from child-framed rows equal the encoder's own."""

    def string(s: bytes) -> bytes:
        return zigzag(len(s)) + s

    # The envelope (event_id, event_type, schema_version 1, tenant, task_id), then a byte.
    task = string(b"acme") + string(b"task-1")
    body = string(b"0" * EVENT_ID_CHARS) + string(b"t") + b"\x02" + task + b"\x06"
    value = b"\x00" + encoder.entry.schema_id.to_bytes(4, "big") + body
    own = encoder.block(3, [300], [value])
    rows = BlockRows(1, [frame_row(3, 300, value, own.nonce)], [b"0" * EVENT_ID_CHARS], {task})
    return encoder.assemble(3, rows, own.nonce) == own


def spec_for(encoders: dict[int, AvroBlockEncoder], max_payload_bytes: int) -> FramingSpec:
    """The framing the children do for a decoder with these store-side encoders; a
    schema whose blocks cannot be assembled from child-framed rows is left raw."""
    ids = []
    for schema_id, encoder in sorted(encoders.items()):
        if compatible(encoder):
            ids.append(schema_id)
        else:
            log.warning("schema %d: its store-side blocks changed shape; fetcher processes "
                        "ship its messages unframed", schema_id)  # fmt: skip
    return FramingSpec(tuple(ids[:RAW]), max_payload_bytes, int.from_bytes(os.urandom(7), "big"))


class Chunk:
    """One partition's records of one child fetch, in offset order (see the module).

    Built from the child's wire tuple; the arrays are zero-copy views of its bytes.
    """

    __slots__ = ("cum", "event_ids", "framed", "key_cum", "key_none", "keys", "kinds",
                 "nonce", "offsets", "partition", "raw", "row_ends", "schema_ids", "slabs",
                 "stamps", "task_ends", "tasks")  # fmt: skip

    def __init__(self, partition: int, wire: tuple[Any, ...], spec: FramingSpec):
        (offsets, stamps, keys, key_cum, key_none, cum, kinds, slabs, row_ends, raw,
         event_ids, tasks, task_ends) = wire  # fmt: skip
        self.partition = partition
        self.offsets = memoryview(offsets).cast("q")
        self.stamps = memoryview(stamps).cast("q")
        self.keys: bytes = keys
        self.key_cum = memoryview(key_cum).cast("q")
        self.key_none: bytes = key_none
        self.cum = memoryview(cum).cast("q")  # value bytes before each message (n + 1)
        self.kinds: bytes = kinds
        self.slabs: list[bytes] = slabs
        self.row_ends = [memoryview(e).cast("q") for e in row_ends]
        self.raw: list[bytes | None] = raw
        self.event_ids: list[bytes] = event_ids  # per kind, EVENT_ID_CHARS per row
        self.tasks: list[bytes] = tasks  # per kind, each row's (tenant, task_id) as Avro
        self.task_ends = [memoryview(e).cast("q") for e in task_ends]
        self.schema_ids = spec.schema_ids
        self.nonce = spec.nonce
        self.framed = len(raw) < len(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets)

    def records(self, i: int, j: int) -> list[FetchedRecord]:
        """The records at indexes [i, j) as objects (the slow paths only)."""
        kinds = self.kinds
        raw_at = kinds[:i].count(RAW)
        rows_at = [kinds[:i].count(k) for k in range(len(self.slabs))]
        out = []
        for n in range(i, j):
            kind = kinds[n]
            if kind == RAW:
                value = self.raw[raw_at]
                raw_at += 1
            else:
                value = self._value(kind, rows_at[kind], n)
                rows_at[kind] += 1
            key = None if self.key_none[n] else self.keys[self.key_cum[n] : self.key_cum[n + 1]]
            out.append(FetchedRecord(self.offsets[n], key, value, self.stamps[n]))
        return out

    def _value(self, kind: int, row: int, n: int) -> bytes:
        """The message's original bytes: its 5-byte header and the body in its row."""
        ends = self.row_ends[kind]
        start = ends[row - 1] if row else 0
        offset = self.offsets[n]
        body_at = start + len(zigzag(self.partition)) + len(zigzag(offset))
        body_end = ends[row] - len(zigzag(self.nonce + offset))
        header = b"\x00" + self.schema_ids[kind].to_bytes(4, "big")
        return header + self.slabs[kind][body_at:body_end]

    def rows(self, kind: int, i: int, j: int) -> BlockRows:
        """The messages of ``kind`` at indexes [i, j) as a block takes them: their count,
        framed rows, event ids and the set of their (tenant, task_id)."""
        kinds = self.kinds
        before = kinds[:i].count(kind)
        count = kinds[i:j].count(kind)
        if not count:
            return BlockRows()
        ends = self.row_ends[kind]
        start = ends[before - 1] if before else 0
        rows = memoryview(self.slabs[kind])[start : ends[before + count - 1]]
        ids = self.event_ids[kind][before * EVENT_ID_CHARS : (before + count) * EVENT_ID_CHARS]
        tasks, task_ends = self.tasks[kind], self.task_ends[kind]
        at = task_ends[before - 1] if before else 0
        keys = set()
        for end in task_ends[before : before + count]:
            keys.add(tasks[at:end])
            at = end
        return BlockRows(count, [rows], [ids], keys)


class ChunkList(list[Chunk]):
    """What a fetcher pool's ``poll`` returns for one partition: its chunks in order."""

    def count(self) -> int:  # type: ignore[override]  # records, not occurrences
        return sum(len(c) for c in self)


def first_offset(messages: Any, expected: int) -> int | None:
    """The first fetched offset at or past ``expected`` (records or a :class:`ChunkList`)."""
    if isinstance(messages, ChunkList):
        for chunk in messages:
            i = bisect_left(chunk.offsets, expected)
            if i < len(chunk):
                return int(chunk.offsets[i])
        return None
    return next((m.offset for m in messages if m.offset >= expected), None)


class ChunkSlice:
    """Indexes [i, j) of a chunk, as the partition buffer holds them."""

    __slots__ = ("chunk", "i", "j")

    def __init__(self, chunk: Chunk, i: int, j: int):
        self.chunk, self.i, self.j = chunk, i, j


class _LazyRecords(Sequence[FetchedRecord]):
    """A sequence of records made on first use (by :meth:`_all`), for the slow paths."""

    def _all(self) -> list[FetchedRecord]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[FetchedRecord]:
        return iter(self._all())

    @overload
    def __getitem__(self, index: int) -> FetchedRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[FetchedRecord]: ...
    def __getitem__(self, index: int | slice) -> FetchedRecord | list[FetchedRecord]:
        return self._all()[index]


class FramedMessages(_LazyRecords):
    """A batch's messages as chunk slices. A sequence of records like a list (made on
    first use, for the slow paths); :meth:`framed` gives the framed rows without them."""

    def __init__(self, slices: list[ChunkSlice]):
        self.slices = slices
        self._len = sum(s.j - s.i for s in slices)
        self._records: list[FetchedRecord] | None = None

    def _all(self) -> list[FetchedRecord]:
        if self._records is None:
            self._records = [r for s in self.slices for r in s.chunk.records(s.i, s.j)]
        return self._records

    def __len__(self) -> int:
        return self._len

    def unframed(self) -> list[FetchedRecord]:
        """The messages shipped raw, in offset order."""
        out: list[FetchedRecord] = []
        for s in self.slices:
            kinds = s.chunk.kinds
            if kinds.find(RAW, s.i, s.j) < 0:
                continue
            out.extend(r for n, r in enumerate(s.chunk.records(s.i, s.j), s.i) if kinds[n] == RAW)
        return out

    def framed(self) -> dict[int, tuple[BlockRows, FramedGroup]]:
        """Per schema id: its framed messages' rows as a block takes them, and the
        messages themselves (made only if asked for)."""
        out: dict[int, tuple[BlockRows, FramedGroup]] = {}
        for s in self.slices:
            chunk = s.chunk
            if not chunk.framed:
                continue
            for kind, schema_id in enumerate(chunk.schema_ids):
                part = chunk.rows(kind, s.i, s.j)
                if not part.count:
                    continue
                if schema_id not in out:
                    out[schema_id] = (BlockRows(), FramedGroup(self.slices, schema_id))
                out[schema_id][0].extend(part)
        return out

    @property
    def nonce(self) -> int | None:
        """The check nonce the rows were framed with."""
        return next((s.chunk.nonce for s in self.slices), None)


class FramedGroup(_LazyRecords):
    """The messages of one schema framed in a batch's slices, made on first use."""

    def __init__(self, slices: list[ChunkSlice], schema_id: int):
        self._slices = slices
        self._schema_id = schema_id
        self._records: list[FetchedRecord] | None = None

    def _all(self) -> list[FetchedRecord]:
        if self._records is None:
            out: list[FetchedRecord] = []
            for s in self._slices:
                chunk = s.chunk
                if self._schema_id not in chunk.schema_ids:
                    continue
                kind = chunk.schema_ids.index(self._schema_id)
                records = chunk.records(s.i, s.j)
                out.extend(r for n, r in enumerate(records, s.i) if chunk.kinds[n] == kind)
            self._records = out
        return self._records


class FramedBlocks(NamedTuple):
    """A child-framed batch as the decoder takes it: per schema id the assembled block
    and its messages (made only if asked for), and the messages shipped raw."""

    blocks: dict[int, tuple[AvroBlock, Sequence[FetchedRecord]]]
    unframed: list[FetchedRecord]


def framed_blocks(batch: Any, encoders: dict[int, AvroBlockEncoder]) -> FramedBlocks | None:
    """The blocks of a batch whose messages fetcher processes framed; None for a batch
    of plain records. A schema the encoders do not frame the same way has its messages
    among ``unframed`` (and the whole batch, if a block cannot be assembled)."""
    messages = batch.messages
    if not isinstance(messages, FramedMessages) or not encoders:
        return None
    nonce = messages.nonce
    blocks: dict[int, tuple[AvroBlock, Sequence[FetchedRecord]]] = {}
    for schema_id, (rows, group) in messages.framed().items():
        encoder = encoders.get(schema_id)
        if encoder is None or nonce is None:
            return FramedBlocks({}, list(messages))
        block = encoder.assemble(batch.partition, rows, nonce)
        blocks[schema_id] = (block, group)
    return FramedBlocks(blocks, messages.unframed())
