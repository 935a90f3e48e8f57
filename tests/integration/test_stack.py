"""The one-machine stack as users run it: `agenttrail demo` and `agenttrail up`."""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agenttrail.demo import run_workloads
from agenttrail.producer import Recorder
from agenttrail.producer.testing import InMemoryExporter

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agenttrail.cli", *args]


@contextlib.contextmanager
def _running_up(data: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """`agenttrail up` as a user starts it; yields the process and its ready line.

    On exit it is interrupted with SIGINT, as Ctrl-C would.
    """
    up = subprocess.Popen(
        _cli("up", "--data", str(data), "--port", "0", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert up.stdout is not None
        ready = json.loads(up.stdout.readline())
        assert ready["status"] == "ready"
        yield up, ready
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)


def test_demo_stores_exactly_what_the_sdk_emitted(tmp_path: Path) -> None:
    # What the workloads emit for this seed, counted on the side with the in-memory exporter.
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path / "count-spool")
    expected_plan = run_workloads(rec, tasks=45, seed=1)
    assert rec.close().complete
    expected = collections.Counter(
        e["event_type"] for e in exporter.events(checkpoints=True)
    )  # the demo's recorder seals its final checkpoint like this one

    done = subprocess.run(
        _cli("demo", "--data", str(tmp_path / "data"), "--tasks", "45", "--seed", "1", "--json"),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    stored = summary["stored_by_this_run"]
    assert stored.pop("dead_letters") == 0
    assert stored == dict(expected)
    assert summary["outcomes"] == expected_plan.outcomes
    assert summary["failures_planted"] == expected_plan.failure_kinds
    assert len(expected_plan.failure_kinds) == 5, "seed 1 plants every kind of failure"
    assert Path(summary["store"]).is_dir()


def test_demo_refuses_a_store_held_by_another_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _running_up(data) as (up, _ready):
        done = subprocess.run(
            _cli("demo", "--data", str(data), "--tasks", "1"),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 2
        assert str(up.pid) in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    up.communicate(timeout=120)


def test_up_is_found_by_agents_and_stores_everything_before_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.delenv("AGENTTRAIL_BOOTSTRAP", raising=False)
    with _running_up(data) as (up, ready):
        assert json.loads((data / "up.json").read_text())["bootstrap"] == ready["bootstrap"]
        rec = Recorder.from_env(data=data, spool_dir=tmp_path / "spool")
        assert rec.enabled
        for t in range(10):
            with rec.task("via_up", task_id=f"up-{t}") as task:
                for i in range(8):
                    with task.tool("probe", args={"i": i}) as span:
                        span.result(i)
        report = rec.close(timeout=30)
        assert report.complete and report.delivered == 100 + 1  # and the final checkpoint
    out, err = up.communicate(timeout=120)
    assert up.returncode == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    final = lines[-1]
    assert final["status"] == "stopped"
    assert final["events_total"] == 100 + 1, final  # and the recorder's final checkpoint
    # The drain on Ctrl-C shows its progress (issue 7 item 7).
    draining = [line for line in lines if line["status"] == "draining"]
    assert draining and draining[-1]["stored"] == 100 + 1, lines[-5:]
    assert not (data / "up.json").exists()
