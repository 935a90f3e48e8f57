"""Fetch in child processes: a stand-in for the few ``KafkaConsumer`` calls the pipeline makes.

kafka-python parses record batches in pure Python, on the consumer's GIL, beside the
framing and the engine's own threads; that parsing is most of what keeps ingest below a
plain fetch. :class:`FetcherPool` moves it out: the parent keeps the group membership
(one ``KafkaConsumer`` that is subscribed but fetches nothing: each partition is paused
as it is assigned and never resumed, so kafka-python's parked-records problem noted in
``_pipeline`` cannot arise), and N child processes (``_fetch_child``) each ``assign()``
the partitions ``partition % N`` of the parent's assignment and fetch them.

The pool answers the calls the pipeline makes of its consumer — ``subscribe`` (with a
rebalance listener), ``poll``, ``seek``, ``seek_to_beginning``, ``highwater``,
``commit``, ``committed``, ``close`` — with the same meaning, so the pipeline's
exactly-once machinery (ledger, claims, contiguity and incarnation checks) runs
unchanged on top of it:

* A seek tells the child with a new epoch for that partition; a chunk fetched under an
  older epoch (before the seek) is dropped, never returned.
* The pool keeps each partition's position as a ``KafkaConsumer`` would (the last seek,
  advanced past every record ``poll`` returned). A child that dies (SIGKILL, crash) or
  stops answering for :data:`STALL_S` is killed and started again, and its partitions
  are seeked to those positions under new epochs: nothing it had fetched and not yet
  shipped is lost, and nothing is returned twice; any gap would still be caught by the
  pipeline's own contiguity check. A child that keeps dying (:data:`MAX_RESTARTS`
  within :data:`RESTART_WINDOW_S`) makes ``poll`` raise :class:`FetcherFailed`.
* Commits and committed offsets go through the group member, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from agenttrail.consumers._errors import ConsumerError
from agenttrail.consumers._framing import Chunk, ChunkList, FramingSpec
from agenttrail.consumers._librdkafka import librdkafka_settings

log = logging.getLogger("agenttrail.consumers")

STALL_S = 30.0
"""A child with partitions that sends nothing (not even its ~1 s heartbeat) this long is
taken for hung, killed and started again."""
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0

_CHILD = Path(__file__).with_name("_fetch_child.py")
_BOOT = (
    "import runpy, sys; "
    "runpy.run_path(sys.argv.pop(1), run_name='__agenttrail_fetcher__')"
)  # fmt: skip


class FetcherFailed(ConsumerError):
    """A fetcher child process keeps dying; the consumer stops rather than stall."""


def _relay(child: _Child, level: int, name: str, message: str) -> None:
    """Log a fetcher child's log record here, under ``agenttrail.consumers.fetcher.`` and
    the name of the logger that emitted it in the child (its Kafka client's)."""
    logging.getLogger(f"{log.name}.fetcher.{name}").log(
        level, "fetcher %d (pid %d): %s", child.index, child.process.pid, message
    )


class _Child:
    """One fetcher process and its two pipes."""

    def __init__(
        self,
        index: int,
        topic: str,
        settings: dict[str, Any],
        framing: FramingSpec | None = None,
        client: str = "kafka-python",
    ):
        self.index = index
        cmd_read, cmd_write = os.pipe()
        data_read, data_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(_CHILD), str(cmd_read), str(data_write)],
                pass_fds=(cmd_read, data_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            os.close(cmd_read)
            os.close(data_write)
        self.commands = Connection(cmd_write, readable=False)
        self.data = Connection(data_read, writable=False)
        self.heard_at = time.monotonic()
        # The child ships its log records at the level this process would log them.
        level = logging.getLogger("agenttrail.consumers").getEffectiveLevel()
        framed = tuple(framing or FramingSpec((), 0, 0))
        self.send(("start", topic, settings, framed, client, level))

    def send(self, command: tuple[Any, ...]) -> None:
        self.commands.send_bytes(pickle.dumps(command, protocol=pickle.HIGHEST_PROTOCOL))

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        for conn in (self.commands, self.data):
            if not conn.closed:
                conn.close()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the child to stop; kill it after ``timeout_s``. It holds no state worth
        keeping (no group membership, no commits), so nothing is lost either way."""
        self.data.close()  # a child blocked on a full pipe gets EPIPE and exits
        with contextlib.suppress(OSError):
            self.send(("stop",))
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("fetcher %d did not stop in %.0fs; killing it", self.index, timeout_s)
        self.kill()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """Pauses assigned partitions in the group member, then tells the pool and the
    pipeline's own listener."""

    def __init__(self, pool: FetcherPool, inner: Any):
        self.pool = pool
        self.inner = inner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.pool._revoked(revoked)
        if self.inner is not None:
            self.inner.on_partitions_revoked(revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.pool._assigned(assigned)
        if self.inner is not None:
            self.inner.on_partitions_assigned(assigned)

    def on_partitions_lost(self, lost: list[TopicPartition]) -> None:
        self.pool._revoked(lost)
        if self.inner is not None:
            self.inner.on_partitions_lost(lost)


class FetcherPool:
    """A consumer-group member whose fetching is done by ``fetchers`` child processes.

    Args:
        settings: KafkaConsumer settings (the pipeline's); the group member uses them
            as given, the children without the group.
        fetchers: number of child processes (>= 1).
        framing: what the children frame for the store (``_framing``); without it they
            frame nothing and ship every record raw.
        client: the children's Kafka client, ``"kafka-python"`` or ``"confluent-kafka"``
            (librdkafka; ``settings`` are translated, see ``_librdkafka``).
        wakeup: something with a ``fileno()`` that ends ``poll``'s wait when readable
            (the writer's results), so a stored batch is followed up at once.

    ``poll`` returns each partition's records as a :class:`~agenttrail.consumers.
    _framing.ChunkList` (chunks as the children shipped them), which the partition
    buffer keeps as slices; a record object is made only where one is needed.

    Not thread-safe: one thread calls it, as with ``KafkaConsumer``.
    """

    def __init__(
        self,
        settings: dict[str, Any],
        fetchers: int,
        framing: FramingSpec | None = None,
        client: str = "kafka-python",
        wakeup: Any = None,
    ):
        if fetchers < 1:
            raise ValueError(f"fetchers must be at least 1, got {fetchers}")
        self._settings = dict(settings)
        self.client = client
        self._wakeup = wakeup
        self._count = fetchers
        self._framing = framing or FramingSpec((), 0, 0)
        self._group = KafkaConsumer(**settings)
        self._topic: str | None = None
        self._children: list[_Child | None] = [None] * fetchers
        self._assignment: set[TopicPartition] = set()
        # The position kafka-python would report: the last seek (None = the beginning,
        # not yet known), moved past every record returned.
        self._positions: dict[TopicPartition, int | None] = {}
        self._epochs: dict[TopicPartition, int] = {}
        self._highwater: dict[TopicPartition, int] = {}
        self._held: set[TopicPartition] = set()  # not fetched until their next seek
        self._held_marks_at = 0.0
        self._restarts: deque[float] = deque()
        self._closed = False
        self.restarts = 0
        """Children started again after dying or hanging (for tests and status)."""

    # -- the KafkaConsumer calls the pipeline makes ---------------------------------------

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        if len(topics) != 1:
            raise ValueError("a FetcherPool reads exactly one topic")
        self._topic = topics[0]
        self._group.subscribe(topics, listener=_Listener(self, listener))
        for i in range(self._count):
            self._children[i] = self._spawn(i)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        """Records fetched by the children for the current positions, per partition.

        Also keeps the group membership alive (the group member's own poll fetches
        nothing: its partitions are paused)."""
        deadline = time.monotonic() + timeout_ms / 1000
        self._group.poll(timeout_ms=0 if self._assignment else timeout_ms)
        self._watch()
        self._mark_held()
        limit = max_records or 1 << 62
        out: dict[Any, ChunkList] = {}
        taken = 0
        while taken < limit:
            live = {c.data: c for c in self._children if c is not None}
            waiting: list[Any] = list(live)
            if out:
                remaining = 0.0  # only what is ready now
            else:
                remaining = max(0.0, deadline - time.monotonic())
                if self._wakeup is not None:
                    waiting.append(self._wakeup)  # a stored batch ends the wait
            ready = wait(waiting, timeout=remaining)
            woken = self._wakeup is not None and self._wakeup in ready
            for conn in ready:
                if conn is self._wakeup:
                    continue
                child = live[conn]  # type: ignore[index]
                try:
                    message = pickle.loads(child.data.recv_bytes())
                except (EOFError, OSError):
                    self._restart(child, "exited")
                    continue
                child.heard_at = time.monotonic()
                if message[0] == "log":
                    _relay(child, *message[1:])
                    continue
                taken += self._take(message, out)
            if not ready or woken:
                break
        return out

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._position(tp, int(offset))

    HELD_MARKS_EVERY_S = 1.0
    """How often the end offsets of held partitions are asked for (see :meth:`_mark_held`)."""
    HELD_MARKS_TIMEOUT_MS = 500

    def _mark_held(self) -> None:
        """Keep the highwater marks of held partitions current: no child fetches them,
        so none reports their mark, and the lag would count nothing produced since the
        hold, understating the backlog exactly while it grows. Asked of the broker about
        once a second, bounded by :data:`HELD_MARKS_TIMEOUT_MS`; a broker that does not
        answer leaves the last mark and is asked again 10 s later. The embedded broker
        answers with its last record batch's first offset + 1, short of the end when
        that batch holds several records; a mark is only ever raised, so the lag there
        counts at least what was known at the hold, and most of what came after."""
        now = time.monotonic()
        if not self._held or now < self._held_marks_at:
            return
        self._held_marks_at = now + self.HELD_MARKS_EVERY_S
        try:
            marks = self._group.end_offsets(
                sorted(self._held), timeout_ms=self.HELD_MARKS_TIMEOUT_MS
            )
        except KafkaError as exc:
            self._held_marks_at = now + 10 * self.HELD_MARKS_EVERY_S
            log.debug("end offsets of held partitions not known (%s); lag uses older marks", exc)
            return
        for tp, mark in marks.items():
            if tp in self._held and mark is not None:
                self._highwater[tp] = max(int(mark), self._highwater.get(tp, 0))

    def hold(self, tp: TopicPartition) -> None:
        """Stop fetching ``tp`` until its next seek. The pipeline holds a partition whose
        buffer is full (it drops what was fetched for it and seeks back on release), so
        the child does not fetch ahead, over and over, what would only be dropped.
        Chunks already on their way are dropped here."""
        if tp not in self._assignment or tp in self._held:
            return
        self._held.add(tp)
        self._epochs[tp] = self._epochs.get(tp, 0) + 1
        self._tell(tp, ("drop", tp.partition))

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self._position(tp, None)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater.get(tp)

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(self._group.beginning_offsets(tps))

    def need_rejoin(self) -> bool:
        """Whether the group member knows it must join again (see the pipeline's check
        for a join that never completes)."""
        return bool(self._group._coordinator.need_rejoin())

    def commit(self, offsets: Any = None) -> None:
        self._group.commit(offsets)

    def committed(self, tp: TopicPartition, metadata: bool = False) -> Any:
        return self._group.committed(tp, metadata=metadata)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def close(self, autocommit: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        for i, child in enumerate(self._children):
            if child is not None:
                child.stop()
                self._children[i] = None
        self._group.close(autocommit=autocommit)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running children (for tests)."""
        return [c.process.pid for c in self._children if c is not None]

    # -- internals ------------------------------------------------------------------------

    def _spawn(self, index: int) -> _Child:
        settings = dict(self._settings)
        settings["group_id"] = None
        settings["enable_auto_commit"] = False
        settings["client_id"] = f"{settings.get('client_id', 'agenttrail')}-fetcher{index}"
        # Well inside STALL_S: a child waiting for a broker that is down keeps reporting.
        settings["bootstrap_timeout_ms"] = min(settings.get("bootstrap_timeout_ms", 5000), 5000)
        if self.client == "confluent-kafka":
            settings = librdkafka_settings(settings)
        assert self._topic is not None
        return _Child(index, self._topic, settings, self._framing, self.client)

    def _share(self, tp: TopicPartition) -> int:
        return int(tp.partition) % self._count

    def _position(self, tp: TopicPartition, offset: int | None) -> None:
        if tp not in self._assignment:
            return  # not ours (any more): no child fetches it
        self._held.discard(tp)
        self._positions[tp] = offset
        epoch = self._epochs.get(tp, 0) + 1
        self._epochs[tp] = epoch
        self._tell(tp, ("seek", tp.partition, offset, epoch))

    def _tell(self, tp: TopicPartition, command: tuple[Any, ...]) -> None:
        """Send a command to the child fetching ``tp``; one that is gone is restarted."""
        child = self._children[self._share(tp)]
        if child is not None:
            try:
                child.send(command)
            except OSError:
                self._restart(child, "exited")

    def _assigned(self, tps: list[TopicPartition]) -> None:
        # Before any fetch of this poll: the group member never fetches.
        self._group.pause(*tps)
        self._assignment.update(tps)

    def _revoked(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self._assignment.discard(tp)
            self._held.discard(tp)
            self._positions.pop(tp, None)
            self._highwater.pop(tp, None)
            # A later chunk of this partition must not pass for a fresh one.
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
            child = self._children[self._share(tp)]
            if child is not None:
                with contextlib.suppress(OSError):
                    child.send(("drop", tp.partition))

    def _take(self, message: tuple[Any, ...], out: dict[Any, ChunkList]) -> int:
        assert self._topic is not None
        if message[0] == "alive":
            for partition, mark in message[1].items():
                tp = TopicPartition(self._topic, partition)
                if mark is not None and tp in self._assignment:
                    self._highwater[tp] = mark
            return 0
        _, partition, epoch, mark, wire = message
        tp = TopicPartition(self._topic, partition)
        if tp not in self._assignment or self._epochs.get(tp) != epoch:
            return 0  # fetched before a seek or after the partition left
        if mark is not None:
            self._highwater[tp] = mark
        chunk = Chunk(partition, wire, self._framing)
        out.setdefault(tp, ChunkList()).append(chunk)
        self._positions[tp] = int(chunk.offsets[-1]) + 1
        return len(chunk)

    def _watch(self) -> None:
        """Restart children that exited or went silent while holding partitions."""
        now = time.monotonic()
        for child in list(self._children):
            if child is None:
                continue
            if child.process.poll() is not None:
                self._restart(child, f"exited with {child.process.returncode}")
            elif now - child.heard_at > STALL_S and self._holds(child.index):
                self._restart(child, f"sent nothing for {STALL_S:.0f}s")

    def _holds(self, index: int) -> bool:
        return any(self._share(tp) == index for tp in self._assignment)

    def _restart(self, child: _Child, why: str) -> None:
        if self._children[child.index] is not child:
            return  # already replaced
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        self._restarts.append(now)
        child.kill()
        self._children[child.index] = None
        if len(self._restarts) > MAX_RESTARTS:
            raise FetcherFailed(
                f"fetcher process {child.index} {why}; {len(self._restarts)} restarts within "
                f"{RESTART_WINDOW_S:.0f}s, so the consumer stops instead of stalling its "
                "partitions. See the log for the fetchers' errors; run with fetchers=0 "
                "(agenttrail consume --fetchers 0) to fetch in the consumer process."
            )
        log.warning("fetcher process %d %s; starting it again and re-reading its partitions "
                    "from the positions already delivered", child.index, why)  # fmt: skip
        self.restarts += 1
        replacement = self._spawn(child.index)
        self._children[child.index] = replacement
        for tp in sorted(self._assignment):
            if self._share(tp) == child.index and tp in self._positions and tp not in self._held:
                self._position(tp, self._positions[tp])
