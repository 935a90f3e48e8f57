"""`agenttrail status` and `agenttrail tail` beside a running `up` (issue 12 items 2, 3)."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from kafka import KafkaProducer

from agenttrail.events import EVENTS_TOPIC
from agenttrail.producer import Recorder
from agenttrail.producer._exporter import KafkaExporter
from tests.deadline import wait_until
from tests.integration.test_derived import CopyingExporter

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "agenttrail.cli")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("status") / "data"
    proc = subprocess.Popen(
        [*CLI, "up", "--data", str(data), "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    try:
        yield {**ready, "data": data}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=300)


def _status(data: Path) -> dict[str, Any]:
    done = subprocess.run(
        [*CLI, "status", "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_status_numbers_agree_with_what_was_emitted_and_stored(
    up: dict[str, Any], tmp_path: Path
) -> None:
    exporter = CopyingExporter(KafkaExporter(up["bootstrap"]))
    rec = Recorder(exporter=exporter, tenant="status", agent="s", spool_dir=tmp_path / "sp")
    for t in range(7):
        with rec.task("status_check", task_id=f"st-{t}") as task:
            for i in range(t + 1):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)
    assert rec.close(timeout=60).complete
    emitted = collections.Counter(str(e["event_type"]) for e in exporter.events(checkpoints=True))
    garbage = [b"\x07not avro", b"", b"\x00\x00\x00\x00"]
    producer = KafkaProducer(bootstrap_servers=up["bootstrap"])
    for value in garbage:
        producer.send(EVENTS_TOPIC, key=b"garbage", value=value)
    producer.flush(30)
    producer.close()
    total = sum(emitted.values())

    def settled() -> dict[str, Any] | None:
        report = _status(up["data"])
        store = report["store"]
        done = store["events_total"] >= total and sum(store["dead_letters"].values()) >= 3
        # Rows are visible right after their insert, offsets committed just after: wait
        # for every partition's lag to be known and 0.
        caught_up = all(p["lag"] == 0 for p in report["broker"]["partitions"])
        # up's own counters are published a moment after its inserts.
        counted = report["stack"]["ingest"]["events_total"] >= total
        return report if done and caught_up and counted and report["broker"]["lag"] == 0 else None

    report = wait_until(settled, timeout=120, what="status to show every event stored")
    store = report["store"]
    assert {k: v for k, v in store["events"].items() if v} == dict(emitted)
    assert sum(store["dead_letters"].values()) == len(garbage)
    assert sum(n for _, n in store["per_minute"]) == total  # all stored in the last 5 minutes
    assert store["bytes_on_disk"] > 0
    broker = report["broker"]
    assert broker["topics"][EVENTS_TOPIC] == 4
    assert broker["oldest_unconsumed_age_s"] is None
    assert sum(p["committed"] or 0 for p in broker["partitions"]) == total + len(garbage)
    assert report["stack"]["ingest"]["events_total"] == total
    assert report["stack"]["consumer_alive"] is True


class _Tail:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*CLI, "tail", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.events: list[dict[str, Any]] = []
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.events.append(json.loads(line))

    def finish(self) -> int:
        code = self.process.wait(timeout=120)
        self._reader.join(30)
        return code


def test_tail_shows_each_event_of_a_task_once_in_seq_order_while_it_runs(
    up: dict[str, Any], tmp_path: Path
) -> None:
    task_id = "tail-me"
    tail = _Tail(
        "--task", task_id, "--until-done", "--json", "--interval", "0.1", "--data", str(up["data"])
    )
    exporter = CopyingExporter(KafkaExporter(up["bootstrap"]))
    rec = Recorder(exporter=exporter, tenant="tail", agent="t", spool_dir=tmp_path / "sp")
    with rec.task("tailing", task_id=task_id) as task:
        for i in range(12):
            with task.tool("probe", args={"i": i}) as span:
                span.result(i)
            if i == 3:
                # The task goes on only once tail has shown its first events: they are
                # seen while it runs.
                assert rec.flush(30)
                wait_until(lambda: len(tail.events) >= 4, timeout=120, what="tail to show seq 0-3")
                assert not any(e["terminal"] for e in tail.events)
    assert rec.close(timeout=60).complete
    assert tail.finish() == 0
    emitted = sorted(exporter.events(), key=lambda e: int(e["seq"]))
    assert [e["seq"] for e in tail.events] == [int(e["seq"]) for e in emitted]
    assert [e["event_id"] for e in tail.events] == [str(e["event_id"]) for e in emitted]
    assert tail.events[-1]["terminal"] == "succeeded"
    assert all(e["gap_before"] == 0 for e in tail.events)


def test_tail_summaries_are_the_replay_timeline_s(up: dict[str, Any], tmp_path: Path) -> None:
    task_id = "tail-vs-replay"  # its own task: the test runs alone on any worker
    rec = Recorder(exporter=KafkaExporter(up["bootstrap"]), tenant="tail", agent="t",
                   spool_dir=tmp_path / "sp")  # fmt: skip
    with rec.task("comparing", task_id=task_id) as task:
        for i in range(5):
            with task.tool("probe", args={"i": i}) as span:
                span.result(i)
    assert rec.close(timeout=60).complete
    # tail --until-done returns once the terminal event is stored; a task's events share
    # a partition, so every earlier one is stored by then and replay sees them all.
    tail = subprocess.run(
        [*CLI, "tail", "--task", task_id, "--until-done", "--json", "--data", str(up["data"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    replay = subprocess.run(
        [*CLI, "replay", task_id, "--json", "--data", str(up["data"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0 and tail.returncode == 0, (replay.stderr, tail.stderr)
    timeline = [(e["seq"], e["family"], e["summary"]) for e in json.loads(replay.stdout)["events"]]
    followed = [
        (e["seq"], e["family"], e["summary"]) for e in map(json.loads, tail.stdout.splitlines())
    ]
    assert len(followed) >= 7 and followed == timeline


def test_status_watch_repeats_until_ctrl_c(up: dict[str, Any]) -> None:
    proc = subprocess.Popen(
        [*CLI, "status", "--watch", "0.5", "--json", "--data", str(up["data"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    rounds = [json.loads(proc.stdout.readline()) for _ in range(2)]
    assert rounds[1]["at"] > rounds[0]["at"]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
