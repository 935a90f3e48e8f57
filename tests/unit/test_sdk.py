"""The SDK against the in-memory exporter, plus what only a double can stage cheaply:
outages, a full queue, a disabled recorder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agenttrail.producer import LimitExceeded, Limits, Recorder
from agenttrail.producer.testing import InMemoryExporter
from tests.sdk_behaviour import RecorderBehaviour, check_chain


class TestInMemory(RecorderBehaviour):
    def make_recorder(self, tmp_path: Path, **settings: Any) -> Recorder:
        self.exporter = InMemoryExporter()
        return Recorder(exporter=self.exporter, spool_dir=tmp_path / "spool", **settings)

    def read_events(self, recorder: Recorder, expected: int) -> list[dict[str, Any]]:
        report = recorder.close()
        assert report.complete, report
        events = self.exporter.events()
        assert len(events) == expected
        return events


def _emit(rec: Recorder, tasks: int, spans: int) -> list[str]:
    ids = []
    for t in range(tasks):
        with rec.task("outage", task_id=f"t{t}") as task:
            ids.append(task.task_id)
            for i in range(spans):
                with task.tool("probe", args={"i": i}) as span:
                    span.result(i)
    return ids


def test_outage_spools_then_delivers_everything_in_order(tmp_path: Path) -> None:
    exporter = InMemoryExporter()
    exporter.available = False
    rec = Recorder(exporter=exporter, spool_dir=tmp_path, retry_backoff_s=0.01)
    _emit(rec, tasks=3, spans=10)
    assert rec.flush(10)
    assert rec.stats["spool_pending"] == 36 and exporter.records == []
    exporter.available = True
    report = rec.close(timeout=10)
    assert report.complete and report.delivered == 36 + 1  # and the final checkpoint
    events = exporter.events()
    assert [e["producer_seq"] for e in events] == list(range(36)), "delivery keeps emit order"
    check_chain(events)
    assert not any(tmp_path.iterdir()), "a drained spool leaves nothing behind"


def test_events_spooled_at_close_are_delivered_by_the_next_recorder(tmp_path: Path) -> None:
    down = InMemoryExporter()
    down.available = False
    first = Recorder(exporter=down, spool_dir=tmp_path)
    _emit(first, tasks=2, spans=5)
    report = first.close(timeout=2)
    assert (report.spooled, report.delivered) == (14 + 1, 0)  # the final checkpoint too
    assert report.spool_dir is not None and report.spool_dir.parent == tmp_path

    up = InMemoryExporter()
    second = Recorder(exporter=up, spool_dir=tmp_path)
    with second.task("after_restart"):
        pass
    assert second.close(timeout=10).complete
    events = up.events()
    old = [e for e in events if e["task_type"] == "outage"]
    assert len(old) == 14 and {e["producer_id"] for e in old} == {first.producer_id}
    assert [e["producer_seq"] for e in old] == list(range(14))
    check_chain(events)


def test_a_full_queue_spools_instead_of_dropping(tmp_path: Path) -> None:
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path, queue_size=5)
    _emit(rec, tasks=4, spans=50)
    assert rec.close(timeout=10).complete
    events = exporter.events()
    assert len(events) == 4 * 52
    assert [e["producer_seq"] for e in events] == list(range(4 * 52))
    check_chain(events)


def test_without_configuration_the_recorder_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTTRAIL_BOOTSTRAP", raising=False)
    monkeypatch.chdir(tmp_path)
    rec = Recorder.from_env(spool_dir=tmp_path / "spool")
    assert rec.enabled is False
    with rec.task("anything", task_id="given") as task:
        assert task.task_id == "given"
        with task.llm_call(model="m", messages=[]) as call:
            call.respond("x", input_tokens=1, output_tokens=1)
        with task.tool("t") as span:
            span.result(1)
    assert rec.close().delivered == 0
    assert not (tmp_path / "spool").exists()


def test_from_env_reads_agenttrail_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTTRAIL_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("AGENTTRAIL_TENANT", "acme")
    monkeypatch.setenv("AGENTTRAIL_AGENT", "invoicer")
    monkeypatch.setenv("AGENTTRAIL_QUEUE_SIZE", "123")
    rec = Recorder.from_env(agent="override", spool_dir=tmp_path)
    try:
        assert rec.enabled
        assert (rec.settings.bootstrap, rec.settings.tenant) == ("127.0.0.1:1", "acme")
        assert rec.settings.agent == "override", "arguments win over the environment"
        assert rec.settings.queue_size == 123
    finally:
        rec.close(timeout=0.5)


def test_from_env_finds_a_running_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.delenv("AGENTTRAIL_BOOTSTRAP", raising=False)
    (tmp_path / "up.json").write_text(json.dumps({"pid": os.getpid(), "bootstrap": "127.0.0.1:2"}))
    rec = Recorder.from_env(data=tmp_path, spool_dir=tmp_path / "spool")
    try:
        assert rec.enabled
    finally:
        rec.close(timeout=0.5)


def test_bad_token_counts_are_refused_at_the_call(tmp_path: Path) -> None:
    rec = Recorder(exporter=InMemoryExporter(), spool_dir=tmp_path)
    with rec.task("t") as task, task.llm_call(model="m", messages=[]) as call:
        with pytest.raises(ValueError, match="input_tokens must be a non-negative int"):
            call.respond("x", input_tokens=-1)
        call.respond("x", input_tokens=1)
    assert rec.close().complete


def test_unknown_side_effect_is_refused(tmp_path: Path) -> None:
    rec = Recorder(exporter=InMemoryExporter(), spool_dir=tmp_path)
    with rec.task("t") as task, pytest.raises(ValueError, match="read, write, irreversible"):
        task.tool("x", side_effect="maybe")
    rec.close()


def test_a_spool_bound_elsewhere_is_left_for_its_own_destination(tmp_path: Path) -> None:
    down = InMemoryExporter()
    down.available = False
    first = Recorder(exporter=down, spool_dir=tmp_path)
    _emit(first, tasks=1, spans=3)
    assert first.close(timeout=2).spooled == 5 + 1  # and the final checkpoint

    class Elsewhere(InMemoryExporter):
        destination = "kafka://other-cluster:9092/agenttrail.events"

    other = Elsewhere()
    second = Recorder(exporter=other, spool_dir=tmp_path)
    assert second.close(timeout=5).complete
    assert other.records == [], "events bound for memory are not sent to another cluster"

    same = InMemoryExporter()
    third = Recorder(exporter=same, spool_dir=tmp_path)
    assert third.close(timeout=5).complete
    assert len(same.events()) == 5


def test_an_oversize_event_is_kept_on_disk_not_sent(tmp_path: Path) -> None:
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path)
    rec._pipeline.max_payload_bytes = 64 * 1024  # type: ignore[union-attr]
    with rec.task("big", task_id="big-1") as task:
        with task.tool("scrape", args={"url": "https://example.test"}) as span:
            span.result("x" * 10)
        with task.llm_call(model="m", messages=[{"role": "user", "content": "y" * 100_000}]):
            pass
    report = rec.close()
    assert (report.rejected, report.delivered) == (1, 3 + 1)  # and the final checkpoint
    events = exporter.events()
    assert [e["seq"] for e in events] == [0, 1, 3], "the rejected event leaves a visible gap"
    check_chain(events)
    (line,) = (tmp_path / "rejected.jsonl").read_text().splitlines()
    kept = json.loads(line)
    assert "over the 65536-byte event limit" in kept["reason"]
    assert json.loads(kept["event"]["messages_json"])[0]["content"] == "y" * 100_000


def test_a_recorder_never_closed_still_delivers_at_interpreter_exit(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        from agenttrail.producer import Recorder
        from agenttrail.producer._exporter import KafkaExporter
        rec = Recorder(bootstrap="127.0.0.1:1", spool_dir={str(tmp_path)!r})
        with rec.task("forgotten") as task:
            for i in range(50):
                with task.tool("t", args={{"i": i}}):
                    pass
        # no rec.close(): the interpreter exits with 52 events queued
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    exporter = InMemoryExporter()
    # The spool is bound for the unreachable broker: replay it through a recorder
    # that sends there, with an exporter standing in for the broker.
    exporter.destination = "kafka://127.0.0.1:1/agenttrail.events"  # type: ignore[misc]
    assert Recorder(exporter=exporter, spool_dir=tmp_path).close(timeout=10).complete
    assert len(exporter.events()) == 52


def test_a_recorder_wide_on_stop_runs_after_the_tasks_own(tmp_path: Path) -> None:
    calls: list[str] = []
    rec = Recorder(
        exporter=InMemoryExporter(),
        spool_dir=tmp_path,
        on_stop=lambda task, err: calls.append(f"recorder:{task.task_id}:{err.state}"),
    )
    with pytest.raises(LimitExceeded):
        with rec.task(
            "t", task_id="x", limits=Limits(max_steps=1), on_stop=lambda t, e: calls.append("task")
        ) as task:
            for _ in range(3):
                with task.llm_call(model="m", messages=[]):
                    pass
    with rec.task("t", task_id="quiet"):
        pass
    assert calls == ["task", "recorder:x:limit_exceeded"], "once per stopped task, task first"
    assert rec.close().complete


def test_a_failing_on_stop_hook_is_logged_and_the_stop_still_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(task: Any, err: Any) -> None:
        raise RuntimeError("hook bug")

    rec = Recorder(exporter=InMemoryExporter(), spool_dir=tmp_path)
    with rec.task("t", limits=Limits(max_steps=1), on_stop=broken) as task:
        with task.llm_call(model="m", messages=[]):
            pass
        with pytest.raises(LimitExceeded):
            task.start_llm_call("m", [])
        with pytest.raises(LimitExceeded):
            task.start_tool("after")
    assert any("on_stop hook" in r.getMessage() for r in caplog.records)
    assert rec.close().complete


def test_tool_in_a_thread_pool_without_bind_warns_once_and_bind_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from agenttrail.producer import bind, tool

    @tool("pooled_lookup")
    def lookup(i: int) -> int:
        return i

    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path)
    with rec.task("pool") as task, ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lookup, range(4))) == [0, 1, 2, 3]
        assert list(pool.map(bind(lookup), range(4))) == [0, 1, 2, 3]
    warnings = [r for r in caplog.records if "pooled_lookup ran outside" in r.getMessage()]
    assert len(warnings) == 1 and "bind(fn)" in warnings[0].getMessage()
    assert rec.close().complete
    spans = [e for e in exporter.events_of(task.task_id) if e["event_type"] == "tool_span"]
    assert sorted(json.loads(e["args_json"])["i"] for e in spans) == [0, 1, 2, 3]
