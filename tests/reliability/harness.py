"""Processes and counting for the reliability suite.

Every part runs as its own process, as on a user's machine: ``agenttrail broker`` (the
embedded Tansu broker), ``agenttrail consume`` (the ingest consumer, one process per
store directory because chdb allows one), ``agenttrail up`` and SDK emitters
(``tests.reliability.emitter``). Faults are signals sent to those processes.

Ground truth is built by the harness, never read back from the code under test: the
emitters' truth files (every task whose events the SDK accepted, and how many), the
raw messages the harness itself sent, and what the topic holds. :func:`tally` compares
that with the store after the consumer stopped: produced, stored, lost, duplicated (by
event id and by partition+offset), dead-lettered, and the derived task_runs against the
raw tables.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agenttrail.store import FAMILY_TABLES, open_store
from tests.deadline import wait_until
from tests.ports import restartable_port

CLI = [sys.executable, "-c", "from agenttrail.cli import main; main()"]
KAFKA_OPTIONS = {
    # Short group timings so a killed member is noticed in seconds on a loaded machine.
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
}


_STARTED: list[JsonLinesProcess] = []


def kill_all() -> None:
    """SIGKILL every process the harness started that still runs (after a failed scenario)."""
    while _STARTED:
        p = _STARTED.pop()
        if p.alive():
            p.proc.kill()
            p.proc.wait(timeout=30)


class JsonLinesProcess:
    """A subprocess whose stdout JSON lines are collected by a reader thread."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None):
        _STARTED.append(self)
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=dict(os.environ, **(env or {})),
        )
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    self.lines.append(json.loads(line))

    def last(self) -> dict[str, Any]:
        return self.lines[-1] if self.lines else {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 120) -> int:
        self.send(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        self._log.close()
        return code

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class Broker:
    """``agenttrail broker`` on a port of its own; :meth:`crash` SIGKILLs the Tansu process."""

    def __init__(self, workdir: Path, port: int = 0, partitions: int = 4):
        self.workdir = workdir
        self.partitions = partitions
        # Restarted on the same port: one no client or other test can be handed meanwhile.
        self.port = port or restartable_port()
        self.process: JsonLinesProcess | None = None
        self.start()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = JsonLinesProcess(
            [*CLI, "broker", "--port", str(self.port), "--partitions", str(self.partitions),
             "--data", str(self.workdir), "--json"],
            self.workdir / "broker-cli.log",
        )  # fmt: skip
        ready = wait_until(
            lambda: (
                next((x for x in self.process.lines if x.get("status") == "ready"), None)
                if self.process
                else None
            ),
            timeout=60,
            what="the broker printing ready",
        )
        self.port = int(ready["port"])
        self.tansu_pid = int(ready["pid"])

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def crash(self) -> None:
        """SIGKILL the broker itself (the in-memory log is gone), then reap its launcher."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.tansu_pid, signal.SIGKILL)
        assert self.process is not None
        self.process.stop(signal.SIGTERM, timeout=60)

    def restart(self) -> None:
        """Start a new broker incarnation on the same port (an empty log, offsets from 0)."""
        self.start()

    def close(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGTERM, timeout=60)


class Consumer(JsonLinesProcess):
    """``agenttrail consume --json`` against one store directory."""

    def __init__(self, bootstrap: str, store_dir: Path, group: str, log: Path, batch: int = 50,
                 fault: str | None = None, env: dict[str, str] | None = None):  # fmt: skip
        # With a fault, the same CLI runs under tests.reliability.faulty_consumer's hooks.
        argv = [sys.executable, "-m", "tests.reliability.faulty_consumer"] if fault else CLI
        self.bootstrap = bootstrap
        env = {"AGENTTRAIL_KAFKA_OPTIONS": json.dumps(KAFKA_OPTIONS), **(env or {})}
        if fault:
            env["RELIABILITY_FAULT"] = fault
        super().__init__(
            [*argv, "consume", "--bootstrap", bootstrap, "--data", str(store_dir),
             "--group", group, "--batch-size", str(batch), "--batch-ms", "50",
             "--status-every", "0.2", "--json"],
            log,
            env=env,
        )  # fmt: skip

    def stored(self) -> int:
        return int(self.last().get("events_total", 0))

    def caught_up_with(self, ends: dict[int, int]) -> bool:
        """Whether the last status says every message up to ``ends`` (partition -> end
        offset, asked of the broker) is stored: lag 0 counted against high watermarks at
        least that high. Lag 0 alone can rest on a mark heard before the last messages
        were produced."""
        s = self.last()
        marks = s.get("highwater") or {}
        return s.get("lag") == 0 and all(int(marks.get(str(p), -1)) >= e for p, e in ends.items())

    def wait_assigned(self, partitions: int, timeout: float = 120) -> None:
        """Until the consumer reports owning every partition (the group has formed)."""
        wait_until(
            lambda: len(self.last().get("partitions", [])) == partitions,
            timeout=timeout,
            interval=0.1,
            what=f"the consumer owning {partitions} partitions",
        )


class Emitter(JsonLinesProcess):
    """An SDK agent process (``tests.reliability.emitter``) writing its truth file."""

    def __init__(self, bootstrap: str, workdir: Path, prefix: str, tasks: int, spans: int,
                 pace_ms: float = 0.0, env: dict[str, str] | None = None,
                 spool: Path | None = None, extra: list[str] | None = None):  # fmt: skip
        workdir.mkdir(parents=True, exist_ok=True)
        self.truth_path = workdir / f"truth-{prefix}.jsonl"
        self.spool = spool or workdir / f"spool-{prefix}"
        super().__init__(
            [sys.executable, "-m", "tests.reliability.emitter", "--bootstrap", bootstrap,
             "--prefix", prefix, "--tasks", str(tasks), "--spans", str(spans),
             "--spool", str(self.spool), "--truth", str(self.truth_path),
             "--pace-ms", str(pace_ms), *(extra or [])],
            workdir / f"emitter-{prefix}.log",
            env=env,
        )  # fmt: skip

    def tasks_done(self) -> int:
        return sum(1 for line in read_truth_lines(self.truth_path) if "task_id" in line)

    def close_report(self) -> dict[str, Any] | None:
        for line in read_truth_lines(self.truth_path):
            if "close" in line:
                return dict(line["close"])
        return None


def read_truth_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def truth_keys(paths: list[Path]) -> set[tuple[str, int]]:
    """(task_id, seq) of every event the emitters handed to the SDK and saw it accept."""
    keys: set[tuple[str, int]] = set()
    for path in paths:
        for line in read_truth_lines(path):
            if "task_id" in line:
                keys.update((line["task_id"], s) for s in range(int(line["events"])))
    return keys


@dataclass
class Tally:
    """The counts of one run, from ground truth and the store.

    Attributes:
        produced: events the harness knows were accepted (SDK) or sent (raw, good).
        stored: of those, how many the family tables hold at least once.
        lost: produced - stored.
        duplicated_by_event_id: rows beyond the first of each event id.
        duplicated_by_position: rows beyond the first of each (partition, offset).
        positions_reused: positions holding different events, across broker incarnations.
        unexpected: stored events nobody produced (must be 0).
        dead_lettered: rows of dead_letters.
        bad_sent: malformed messages the harness sent (each must be dead-lettered).
        derived_tasks: tasks in task_runs; raw_tasks: distinct tasks in the raw tables.
        derived_events: sum of task_runs.events; raw_events: distinct raw events.
        derived_llm_calls / raw_llm_calls: the same for LLM calls.
    """

    produced: int = 0
    stored: int = 0
    lost: int = 0
    duplicated_by_event_id: int = 0
    duplicated_by_position: int = 0
    unexpected: int = 0
    positions_reused: int = 0
    dead_lettered: int = 0
    bad_sent: int = 0
    derived_tasks: int = 0
    raw_tasks: int = 0
    derived_events: int = 0
    raw_events: int = 0
    derived_llm_calls: int = 0
    raw_llm_calls: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    stored_keys: set[tuple[str, int]] = field(default_factory=set, repr=False)

    @property
    def duplicated(self) -> int:
        return max(self.duplicated_by_event_id, self.duplicated_by_position)

    @property
    def derived_agree(self) -> bool:
        return (self.derived_tasks, self.derived_events, self.derived_llm_calls) == (
            self.raw_tasks,
            self.raw_events,
            self.raw_llm_calls,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["stored_keys"]
        out["duplicated"] = self.duplicated
        out["derived_agree"] = self.derived_agree
        return out


def tally(
    store_dir: Path, produced: set[tuple[str, int]], bad_sent: int = 0, incarnations: int = 1
) -> Tally:
    """Count the store against ``produced``; the consumer must have stopped (chdb lock).

    ``incarnations`` is how many broker incarnations the run had. With one, two rows at
    one (partition, offset) are one message stored twice, whatever they contain. A
    restarted embedded broker numbers offsets from 0 again, so with several a position
    is legitimately reused by a different message (``positions_reused``); a duplicate by
    position is then the same message (same event id) at the same position.
    """
    rows: list[tuple[str, str, int, int, int]] = []
    with open_store(data=store_dir) as store:
        db = store.database
        for family, table in FAMILY_TABLES.items():
            if family == "checkpoint":
                continue  # the emitters' own bookkeeping, not events they were told to send
            rows += [
                (str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]))
                for r in store.query(
                    "SELECT event_id, task_id, seq, kafka_partition, kafka_offset "
                    f"FROM {db}.{table}"
                )
            ]
        reasons = {
            str(r): int(n)
            for r, n in store.query(
                f"SELECT reason, count() FROM {db}.dead_letters GROUP BY reason"
            )
        }
        derived = store.query(
            f"SELECT count(), sum(events), sum(llm_calls) FROM {db}.task_run_records"
        )[0]
        raw_llm = store.query(f"SELECT uniqExact(event_id) FROM {db}.llm_calls")[0][0]
    keys = {(task, seq) for _, task, seq, _, _ in rows}
    t = Tally()
    t.stored_keys = keys
    t.produced = len(produced)
    t.stored = len(keys & produced)
    t.lost = t.produced - t.stored
    t.unexpected = len(keys - produced)
    t.duplicated_by_event_id = len(rows) - len({r[0] for r in rows})
    plain = len(rows) - len({(r[3], r[4]) for r in rows})
    if incarnations == 1:
        t.duplicated_by_position = plain
    else:
        t.duplicated_by_position = len(rows) - len({(r[3], r[4], r[0]) for r in rows})
        t.positions_reused = plain - t.duplicated_by_position
    t.dead_lettered = sum(reasons.values())
    t.dead_letter_reasons = reasons
    t.bad_sent = bad_sent
    t.derived_tasks, t.derived_events, t.derived_llm_calls = (int(v or 0) for v in derived)
    t.raw_tasks = len({task for _, task, _, _, _ in rows})
    t.raw_events = len({r[0] for r in rows})
    t.raw_llm_calls = int(raw_llm)
    return t


def wait_drained(consumer: Consumer, expected: int, timeout: float = 180) -> None:
    """Until the consumer reports at least ``expected`` events stored and lag 0."""

    def done() -> bool:
        s = consumer.last()
        return s.get("lag") == 0 and int(s.get("events_total", 0)) >= expected

    try:
        wait_until(done, timeout=timeout, interval=0.2, what=f"{expected} events stored, lag 0")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; last status {consumer.last()}\n{consumer.log_tail()}"
        ) from None


@contextlib.contextmanager
def broker_running(workdir: Path, partitions: int = 4) -> Iterator[Broker]:
    broker = Broker(workdir / "broker", partitions=partitions)
    try:
        yield broker
    finally:
        broker.close()


def topic_keys(
    bootstrap: str, topic: str = "agenttrail.events"
) -> dict[tuple[str, int], list[tuple[int, int]]]:
    """(task_id, seq) → [(partition, offset), ...] of every decodable event the topic holds
    now, read from the beginning of every partition without a consumer group (until no
    record came for 3 s: Tansu's ListOffsets undercounts, so end offsets are not used)."""
    from kafka import KafkaConsumer, TopicPartition

    from agenttrail.events import EventCodec

    codec = EventCodec()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)  # fmt: skip
    out: dict[tuple[str, int], list[tuple[int, int]]] = {}
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        for message in consumer:
            with contextlib.suppress(Exception):
                record = codec.decode(message.value)
                key = (str(record["task_id"]), int(record["seq"]))
                out.setdefault(key, []).append((message.partition, message.offset))
    finally:
        consumer.close()
    return out
