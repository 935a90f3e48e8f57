"""A fetcher child process: reads its share of a topic's partitions and ships the records.

Started by :mod:`agenttrail.consumers._fetchers` as ``python -c`` running this file by
path, so the child imports kafka-python only (not the store, not the engine). It is no
group member: it ``assign()`` s the partitions its parent tells it and fetches from the
positions the parent sets. Every command that positions a partition carries an epoch;
each shipped chunk names the epoch it was fetched under, so the parent can drop what was
fetched before a later seek.

Wire: two pipes of :class:`multiprocessing.connection.Connection` frames (pickle).
Parent → child: ``("start", topic, settings, framing)`` first (``framing`` is
``(schema_ids, max_payload_bytes, nonce)``, see ``_framing``), then ``("seek", partition,
offset or None for the beginning, epoch)``, ``("drop", partition)``, ``("stop",)``.
Child → parent: ``("chunk", partition, epoch, highwater, wire)`` with ``wire`` as
:func:`pack` makes it (one per partition per fetch: arrays and blobs, framed rows, not
one object per record) and, about every second, ``("alive", {partition: highwater})``.

The child exits when its parent goes away (end of the command pipe, a parent process
that changed, or ``PR_SET_PDEATHSIG`` on Linux), so a SIGKILLed consumer leaves none.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import time
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


def _run(commands: Connection, data: Connection, parent: int) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    kind, topic, settings, framing = commands.recv()
    assert kind == "start", kind
    schema_ids, limit, nonce = framing
    kinds = {b"\x00" + sid.to_bytes(4, "big"): k for k, sid in enumerate(schema_ids)}
    while True:
        # A broker that is down when the child starts is waited for, not died of: the
        # parent would take repeated deaths for a broken fetcher and stop.
        try:
            consumer = KafkaConsumer(**settings)
            break
        except KafkaError:
            # Commands wait in the pipe meanwhile; the parent kills a child that does
            # not answer its stop.
            data.send_bytes(pickle.dumps(("alive", {}), protocol=pickle.HIGHEST_PROTOCOL))
            if os.getppid() != parent:
                return
            time.sleep(1.0)
    epochs: dict[int, int] = {}
    alive_at = 0.0
    try:
        while True:
            changed = False
            # Idle children wait on the command pipe; busy ones only look at it.
            while commands.poll(0 if epochs else 0.2):
                command = commands.recv()
                if command[0] == "stop":
                    return
                if command[0] == "seek":
                    _, partition, offset, epoch = command
                    tp = TopicPartition(topic, partition)
                    if partition not in epochs:
                        epochs[partition] = epoch
                        consumer.assign([TopicPartition(topic, p) for p in sorted(epochs)])
                    epochs[partition] = epoch
                    if offset is None:
                        consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, offset)
                elif command[0] == "drop" and epochs.pop(command[1], None) is not None:
                    changed = True
            if changed:
                consumer.assign([TopicPartition(topic, p) for p in sorted(epochs)])
            now = time.monotonic()
            if now - alive_at >= _ALIVE_EVERY_S:
                if os.getppid() != parent:
                    return
                alive_at = now
                marks = {p: consumer.highwater(TopicPartition(topic, p)) for p in epochs}
                data.send_bytes(pickle.dumps(("alive", marks), protocol=pickle.HIGHEST_PROTOCOL))
            if not epochs:
                continue
            fetched = consumer.poll(timeout_ms=100)
            for tp, records in fetched.items():
                epoch = epochs.get(tp.partition)
                if epoch is None or not records:
                    continue
                chunk: tuple[Any, ...] = (
                    "chunk",
                    tp.partition,
                    epoch,
                    consumer.highwater(tp),
                    pack(tp.partition, records, kinds, limit, nonce),
                )
                data.send_bytes(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        with contextlib.suppress(Exception):
            consumer.close(autocommit=False)


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


def pack(
    partition: int, records: list[Any], kinds: dict[bytes, int], limit: int, nonce: int
) -> tuple[Any, ...]:
    """One partition's fetched records as ``_framing.Chunk`` reads them.

    A message whose 5-byte header names one of ``kinds`` (the newest flat schemas) and
    that is at most ``limit`` bytes is framed as its store-side Avro row, exactly as
    ``_avro.AvroBlockEncoder.block`` frames it: ``zigzag(partition) zigzag(offset) body
    zigzag(nonce + offset)``; any other is shipped as it came.
    """
    from array import array

    offsets = array("q")
    stamps = array("q")
    keys = bytearray()
    key_cum = array("q", [0])
    key_none = bytearray()
    cum = array("q", [0])
    kind_of = bytearray()
    slabs = [bytearray() for _ in kinds]
    ends = [array("q") for _ in kinds]
    raw: list[bytes | None] = []
    head = _varint(partition << 1)
    size = 0
    for r in records:
        offset = r.offset
        offsets.append(offset)
        stamps.append(r.timestamp if r.timestamp is not None else -1)
        key = r.key
        if key is None:
            key_none.append(1)
        else:
            key_none.append(0)
            keys += key
        key_cum.append(len(keys))
        value = r.value
        n = len(value) if value is not None else 0
        size += n
        cum.append(size)
        kind = kinds.get(value[:5]) if value is not None and 5 <= n <= limit else None
        if kind is None:
            kind_of.append(_RAW)
            raw.append(value)
            continue
        slab = slabs[kind]
        slab += head
        slab += _varint(offset << 1)
        slab += memoryview(value)[5:]
        slab += _varint((nonce + offset) << 1)
        ends[kind].append(len(slab))
        kind_of.append(kind)
    return (
        offsets.tobytes(), stamps.tobytes(), bytes(keys), key_cum.tobytes(), bytes(key_none),
        cum.tobytes(), bytes(kind_of), [bytes(s) for s in slabs], [e.tobytes() for e in ends],
        raw,
    )  # fmt: skip


if __name__ == "__agenttrail_fetcher__":
    main(int(sys.argv[1]), int(sys.argv[2]))
