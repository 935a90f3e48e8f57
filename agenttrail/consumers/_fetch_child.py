"""A fetcher child process: reads its share of a topic's partitions and ships the records.

Started by :mod:`agenttrail.consumers._fetchers` as ``python -c`` running this file by
path, so the child imports its Kafka client only (not the store, not the engine): kafka-python,
or librdkafka through confluent-kafka, which parses record batches in C on its own threads
and so costs a fraction of kafka-python's CPU per record. It is no group member: it
``assign()`` s the partitions its parent tells it and fetches from the positions the
parent sets. Every command that positions a partition carries an epoch;
each shipped chunk names the epoch it was fetched under, so the parent can drop what was
fetched before a later seek.

Wire: two pipes of :class:`multiprocessing.connection.Connection` frames (pickle).
Parent → child: ``("start", topic, settings, framing, client, log_level)`` first
(``framing`` is ``(schema_ids, max_payload_bytes, nonce)``, see ``_framing``; ``client``
is ``"kafka-python"`` or ``"confluent-kafka"``, and ``settings`` are that client's), then
``("seek", partition, offset or None for the beginning, epoch)``, ``("drop", partition)``,
``("stop",)``.
Child → parent: ``("chunk", partition, epoch, highwater, wire)`` with ``wire`` as
:func:`pack` makes it (one per partition per fetch: arrays and blobs, framed rows, not
one object per record), about every second, ``("alive", {partition: highwater})``, and
``("log", level, logger name, message)`` for each log record at ``log_level`` or above
(the Kafka client's and librdkafka's own), which the parent logs as its own: a child
writes nothing to the terminal itself.

The child exits when its parent goes away (end of the command pipe, a parent process
that changed, or ``PR_SET_PDEATHSIG`` on Linux), so a SIGKILLed consumer leaves none.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import pickle
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

_ALIVE_EVERY_S = 1.0


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(command_fd: int, data_fd: int) -> None:
    """Run the child until told to stop or the parent is gone."""
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its children itself
    commands = Connection(command_fd, writable=False)
    data = Connection(data_fd, readable=False)
    try:
        _run(commands, data, parent)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the parent is gone


class _Outbox:
    """The data pipe, written by the main thread only.

    Log records are emitted on any thread (kafka-python logs from its I/O thread), and
    two threads writing one pipe can interleave their frames; so :class:`_PipeLog`
    only queues them (the newest 1000), and they are sent, in order, before the next
    message (at least once a second, with the ``alive`` message).
    """

    def __init__(self, data: Connection):
        self._data = data
        self.logs: deque[tuple[int, str, str]] = deque(maxlen=1000)

    def send(self, message: tuple[Any, ...]) -> None:
        while self.logs:
            self._write(("log", *self.logs.popleft()))
        self._write(message)

    def _write(self, message: tuple[Any, ...]) -> None:
        self._data.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


class _PipeLog(logging.Handler):
    """Queues the child's log records for the parent (see :class:`_Outbox`).

    A record identical to one queued less than :attr:`REPEAT_S` ago (a client retrying
    a broker that is down logs the same line many times a second) is counted instead;
    the next one queued after that says how many were left out.
    """

    REPEAT_S = 30.0

    def __init__(self, outbox: _Outbox):
        super().__init__()
        self._outbox = outbox
        self._shipped: dict[tuple[str, int, str], tuple[float, int]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            key = (record.name, record.levelno, message)
            now = time.monotonic()  # emit runs under the handler's lock: one at a time
            shipped_at, left_out = self._shipped.get(key, (-self.REPEAT_S, 0))
            if now - shipped_at < self.REPEAT_S:
                self._shipped[key] = (shipped_at, left_out + 1)
                return
            if len(self._shipped) > 1000:
                self._shipped.clear()
            self._shipped[key] = (now, 0)
            if left_out:
                message += f" (and {left_out} more like it in the last {now - shipped_at:.0f} s)"
            self._outbox.logs.append((record.levelno, record.name, message))
        except Exception:  # a record that cannot be formatted: say so, as logging does
            self.handleError(record)


def _route_logs(outbox: _Outbox, level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeLog(outbox))
    root.setLevel(level)


def _run(commands: Connection, data: Connection, parent: int) -> None:
    kind, topic, settings, framing, client, log_level = commands.recv()
    assert kind == "start", kind
    outbox = _Outbox(data)
    _route_logs(outbox, log_level)
    schema_ids, limit, nonce = framing
    kinds = {b"\x00" + sid.to_bytes(4, "big"): k for k, sid in enumerate(schema_ids)}
    fetch: _PythonFetch | _NativeFetch | None = None
    while fetch is None:
        # A broker that is down when the child starts is waited for, not died of: the
        # parent would take repeated deaths for a broken fetcher and stop.
        try:
            fetch = _NativeFetch(topic, settings) if client == "confluent-kafka" else (
                _PythonFetch(topic, settings))  # fmt: skip
        except _BrokerDown:
            # Commands wait in the pipe meanwhile; the parent kills a child that does
            # not answer its stop.
            outbox.send(("alive", {}))
            if os.getppid() != parent:
                return
            time.sleep(1.0)
    epochs: dict[int, int] = {}
    alive_at = 0.0
    try:
        while True:
            # Idle children wait on the command pipe; busy ones only look at it.
            while commands.poll(0 if epochs else 0.2):
                command = commands.recv()
                if command[0] == "stop":
                    return
                if command[0] == "seek":
                    _, partition, offset, epoch = command
                    fetch.position(partition, offset)
                    epochs[partition] = epoch
                elif command[0] == "drop" and epochs.pop(command[1], None) is not None:
                    fetch.drop(command[1])
            now = time.monotonic()
            if now - alive_at >= _ALIVE_EVERY_S:
                if os.getppid() != parent:
                    return
                alive_at = now
                marks = {p: fetch.highwater(p) for p in epochs}
                outbox.send(("alive", marks))
            if not epochs:
                continue
            for partition, records in fetch.fetch().items():
                epoch = epochs.get(partition)
                if epoch is None or not records:
                    continue
                chunk: tuple[Any, ...] = (
                    "chunk",
                    partition,
                    epoch,
                    fetch.highwater(partition),
                    pack(partition, records, kinds, limit, nonce),
                )
                outbox.send(chunk)
    finally:
        fetch.close()


class _BrokerDown(Exception):
    """The client cannot be created until the broker answers."""


Fields = tuple[int, int, bytes | None, bytes | None]
"""A fetched record as :func:`pack` takes it: offset, timestamp (ms, -1 if none), key, value."""


class _PythonFetch:
    """Fetching with kafka-python: it parses the record batches in Python."""

    def __init__(self, topic: str, settings: dict[str, Any]):
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        self.topic = topic
        self._tp = TopicPartition
        try:
            self.consumer = KafkaConsumer(**settings)
        except KafkaError as exc:
            raise _BrokerDown from exc
        self._fields = operator.attrgetter("offset", "timestamp", "key", "value")

    def position(self, partition: int, offset: int | None) -> None:
        tp = self._tp(self.topic, partition)
        if tp not in self.consumer.assignment():
            self.consumer.assign(sorted(self.consumer.assignment() | {tp}))
        if offset is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, offset)

    def drop(self, partition: int) -> None:
        tp = self._tp(self.topic, partition)
        self.consumer.assign(sorted(self.consumer.assignment() - {tp}))

    def highwater(self, partition: int) -> int | None:
        mark: int | None = self.consumer.highwater(self._tp(self.topic, partition))
        return mark

    def fetch(self) -> dict[int, list[Fields]]:
        fetched = self.consumer.poll(timeout_ms=100)
        fields = self._fields
        return {tp.partition: [fields(r) for r in records] for tp, records in fetched.items()}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close(autocommit=False)


class _NativeFetch:
    """Fetching with librdkafka (confluent-kafka): it parses in C, on its own threads.

    A partition is positioned by removing it from the assignment and adding it back at
    the offset: librdkafka drops what it had fetched for it before, so nothing fetched
    before a seek is returned after it.
    """

    BATCH = 500
    """Records taken per ``consume`` call. librdkafka waits for this many or the
    timeout, so it is kept small; one fetch gathers calls for up to :data:`GATHER_S`."""
    GATHER_S = 0.05

    def __init__(self, topic: str, settings: dict[str, Any]):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.topic = topic
        self._tp = TopicPartition
        self._beginning = OFFSET_BEGINNING
        # Creating it connects to nothing; a bad setting was refused by the parent first.
        # Its log lines go through Python logging (served by consume()), to the parent.
        self.consumer = Consumer(settings, logger=logging.getLogger("librdkafka"))
        self._assigned: set[int] = set()
        # The next offset a fetch may return per partition: a record below it was
        # fetched before the last seek (belt and braces: librdkafka drops those itself).
        self._next: dict[int, int] = {}

    def position(self, partition: int, offset: int | None) -> None:
        if partition in self._assigned:
            self.consumer.incremental_unassign([self._tp(self.topic, partition)])
        start = self._beginning if offset is None else offset
        self.consumer.incremental_assign([self._tp(self.topic, partition, start)])
        self._assigned.add(partition)
        if offset is None:
            self._next.pop(partition, None)
        else:
            self._next[partition] = offset

    def drop(self, partition: int) -> None:
        if partition in self._assigned:
            self.consumer.incremental_unassign([self._tp(self.topic, partition)])
            self._assigned.discard(partition)
            self._next.pop(partition, None)

    def highwater(self, partition: int) -> int | None:
        _, high = self.consumer.get_watermark_offsets(self._tp(self.topic, partition), cached=True)
        return int(high) if high >= 0 else None

    def fetch(self) -> dict[int, list[Fields]]:
        out: dict[int, list[Fields]] = {}
        consume = self.consumer.consume
        deadline = time.monotonic() + self.GATHER_S
        timeout = 0.1
        while True:
            messages = consume(num_messages=self.BATCH, timeout=timeout)
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.fatal():
                        raise RuntimeError(f"librdkafka: {error}")
                    continue  # librdkafka retries by itself; it is logged there
                partition = m.partition()
                offset = m.offset()
                if partition is None or offset is None or offset < self._next.get(partition, -1):
                    continue
                records = out.get(partition)
                if records is None:
                    records = out[partition] = []
                records.append((offset, m.timestamp()[1], m.key(), m.value()))
            if len(messages) < self.BATCH or time.monotonic() >= deadline:
                break
            timeout = 0.0
        for partition, records in out.items():
            self._next[partition] = records[-1][0] + 1
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()


_RAW = 255  # kind of a message shipped as its raw bytes (``_framing.RAW``)
_SMALL = [bytes([n]) for n in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT = [_varint(n) for n in range(1 << 14)]
_LOW = [bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(1 << 14)]


def _zigzags() -> Callable[[int], bytes]:
    """``zigzag`` for a rising series of non-negative numbers (offsets, nonce + offset),
    by table: below 2**13 one lookup; above, the low 14 bits of the zigzag (two bytes with
    the continuation bit) and the varint of the rest, which changes only every 2**13
    numbers and is kept from the call before."""
    kept_hi, kept = -1, b""

    def zigzag(n: int) -> bytes:
        nonlocal kept_hi, kept
        z = n << 1
        if z < 0x4000:
            return _SHORT[z]
        if z >> 14 != kept_hi:
            kept_hi = z >> 14
            kept = _varint(kept_hi)
        return _LOW[z & 0x3FFF] + kept

    return zigzag


EVENT_ID_CHARS = 36
"""Characters of an event id in its canonical form, the only form the store's check takes."""


def _string_end(value: bytes, i: int) -> int:
    """Where the Avro string starting at ``i`` ends; -1 if it is not one within ``value``."""
    n = shift = 0
    while True:
        if i >= len(value) or shift > 63:
            return -1
        byte = value[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    if n & 1:  # a negative length
        return -1
    end = i + (n >> 1)
    return end if end <= len(value) else -1


def envelope(value: bytes) -> tuple[bytes, bytes] | None:
    """The event id and the (tenant, task_id) of a framed message, read from its body.

    Every agenttrail schema opens with ``event_id`` (uuid string), ``event_type``
    (string), ``schema_version`` (int), ``tenant`` and ``task_id`` (strings); only
    families that do are handed to the store (``_avro.supports``). Returns the id's 36
    characters and the bytes of ``tenant`` and ``task_id`` as they are encoded (which is
    the Avro encoding of a record of those two strings), or None when the body does not
    open that way (an id of another length, a truncated body): such a message is decoded
    in Python, where the codec names what is wrong with it.
    """
    if len(value) < 6 + EVENT_ID_CHARS or value[5] != EVENT_ID_CHARS << 1:
        return None
    at = 6 + EVENT_ID_CHARS  # the event type's length
    try:  # the usual case first: one-byte lengths and version
        n = value[at]
        start = at + 2 + (n >> 1)
        a = value[start]
        b = value[start + 1 + (a >> 1)]
        end = start + 2 + (a >> 1) + (b >> 1)
        if (n | value[start - 1] | a | b) < 0x80 and not (n | a | b) & 1 and end <= len(value):
            return value[6:at], value[start:end]
    except IndexError:
        pass  # a longer length read as one byte points past the end: read it fully
    i = _string_end(value, at)  # event_type
    while 0 <= i < len(value) and value[i] >= 0x80:  # schema_version, a varint
        i += 1
    if i < 0 or i >= len(value):
        return None
    start = i + 1
    end = _string_end(value, start)  # tenant
    end = _string_end(value, end) if end >= 0 else -1  # task_id
    if end < 0:
        return None
    return value[6:at], value[start:end]


def pack(
    partition: int, records: list[Fields], kinds: dict[bytes, int], limit: int, nonce: int
) -> tuple[Any, ...]:
    """One partition's fetched records as ``_framing.Chunk`` reads them.

    A message whose 5-byte header names one of ``kinds`` (the newest flat schemas), that
    is at most ``limit`` bytes and whose body opens with the envelope :func:`envelope`
    reads, is framed as its store-side Avro row, exactly as
    ``_avro.AvroBlockEncoder.block`` frames it: ``zigzag(partition) zigzag(offset) body
    zigzag(nonce + offset)``, and its event id and (tenant, task_id) bytes are appended
    to its kind's lists; any other is shipped as it came.
    """
    from array import array
    from itertools import accumulate

    offsets = array("q", [r[0] for r in records])
    stamps = array("q", [-1 if r[1] is None else r[1] for r in records])
    key_none = bytes([r[2] is None for r in records])
    key_list = [r[2] or b"" for r in records]
    keys = b"".join(key_list)
    key_cum = array("q", [0])
    key_cum.extend(accumulate(map(len, key_list)))
    cum = array("q", [0])
    cum.extend(accumulate([0 if r[3] is None else len(r[3]) for r in records]))
    kind_of = bytearray()
    slabs = [bytearray() for _ in kinds]
    ends = [array("q") for _ in kinds]
    ids = [bytearray() for _ in kinds]
    tasks = [bytearray() for _ in kinds]
    task_ends = [array("q") for _ in kinds]
    raw: list[bytes | None] = []
    head = _varint(partition << 1)
    offset_zigzag, nonce_zigzag = _zigzags(), _zigzags()
    get_kind, add_kind, add_raw = kinds.get, kind_of.append, raw.append
    for offset, _, _, value in records:
        kind = get_kind(value[:5]) if value is not None and 5 <= len(value) <= limit else None
        opening = envelope(value) if kind is not None and value is not None else None
        if kind is None or value is None or opening is None:
            add_kind(_RAW)
            add_raw(value)
            continue
        ids[kind] += opening[0]
        task = tasks[kind]
        task += opening[1]
        task_ends[kind].append(len(task))
        slab = slabs[kind]
        slab += head
        slab += offset_zigzag(offset)
        slab += memoryview(value)[5:]
        slab += nonce_zigzag(nonce + offset)
        ends[kind].append(len(slab))
        add_kind(kind)
    return (
        offsets.tobytes(), stamps.tobytes(), keys, key_cum.tobytes(), key_none,
        cum.tobytes(), bytes(kind_of), [bytes(s) for s in slabs], [e.tobytes() for e in ends],
        raw, [bytes(i) for i in ids], [bytes(t) for t in tasks],
        [e.tobytes() for e in task_ends],
    )  # fmt: skip


if __name__ == "__agenttrail_fetcher__":
    main(int(sys.argv[1]), int(sys.argv[2]))
