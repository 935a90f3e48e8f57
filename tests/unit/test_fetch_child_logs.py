"""A fetcher child's log records travel on its data pipe between the chunks: records
logged on other threads (kafka-python logs from its I/O thread) never tear a frame."""

from __future__ import annotations

import logging
import os
import pickle
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import pytest

from agenttrail.consumers._fetch_child import _Outbox, _PipeLog


@dataclass
class Piped:
    """A logger whose records go through a child's outbox into a real pipe."""

    logger: logging.Logger
    handler: _PipeLog
    outbox: _Outbox
    reader: Connection
    writer: Connection


@pytest.fixture
def piped(request: pytest.FixtureRequest) -> Iterator[Piped]:
    read_fd, write_fd = os.pipe()
    reader, writer = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    outbox = _Outbox(writer)
    handler = _PipeLog(outbox)
    logger = logging.getLogger(f"test.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield Piped(logger, handler, outbox, reader, writer)
    finally:
        logger.removeHandler(handler)
        for end in (reader, writer):
            if not end.closed:
                end.close()


def test_records_logged_on_other_threads_while_chunks_are_sent_arrive_whole(
    piped: Piped,
) -> None:
    logger, outbox, reader, writer = piped.logger, piped.outbox, piped.reader, piped.writer
    read_fd = reader.fileno()
    received: list[Any] = []
    torn: list[BaseException] = []

    def read() -> None:
        try:
            while True:
                message = pickle.loads(reader.recv_bytes())  # a torn frame fails here
                if message == ("end",):
                    return
                received.append(message)
        except Exception as exc:
            torn.append(exc)
            while os.read(read_fd, 1 << 20):  # keep the writer unblocked until it closes
                pass

    def log(n: int) -> None:
        for i in range(500):
            logger.warning("thread %d record %d", n, i)

    reading = threading.Thread(target=read)
    reading.start()
    loggers = [threading.Thread(target=log, args=(n,)) for n in range(4)]
    try:
        for t in loggers:
            t.start()
        for i in range(200):  # chunks big enough to take several writes each
            outbox.send(("chunk", i, b"x" * 256 * 1024))
        for t in loggers:
            t.join()
        outbox.send(("end",))
    finally:
        writer.close()
        reading.join(30)
    assert not torn, f"a frame was torn: {torn[0]!r}"
    chunks = [m[1] for m in received if m[0] == "chunk"]
    assert chunks == list(range(200))
    logs = [m for m in received if m[0] == "log"]
    assert logs, "no log record arrived"
    per_thread: dict[int, list[int]] = {}
    for kind, level, name, message in logs:
        assert (kind, level, name) == ("log", logging.WARNING, logger.name)
        _, n, _, i = message.split()
        per_thread.setdefault(int(n), []).append(int(i))
    # In order per thread; when the main thread falls behind, the oldest are dropped.
    assert all(v == sorted(v) and len(set(v)) == len(v) for v in per_thread.values())


def test_a_record_repeated_within_the_window_is_counted_not_resent(piped: Piped) -> None:
    logger, handler, reader = piped.logger, piped.handler, piped.reader
    for _ in range(50):
        logger.error("connect to broker failed")
    handler.REPEAT_S = 0.0  # the window has passed
    logger.error("connect to broker failed")
    logger.error("another line")
    piped.outbox.send(("alive", {}))
    got = []
    while reader.poll(0.5):
        got.append(pickle.loads(reader.recv_bytes()))
        if got[-1][0] == "alive":
            break
    messages = [m[3] for m in got if m[0] == "log"]
    assert messages[0] == "connect to broker failed"
    assert messages[1].startswith("connect to broker failed (and 49 more like it in the last")
    assert messages[2] == "another line"
    assert len(messages) == 3
