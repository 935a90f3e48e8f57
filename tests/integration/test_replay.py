"""Replay through the real broker and engine: the timeline, and what the model saw.

One LocalStack for the module. A few demo tasks and one task whose messages are hard to
carry unchanged (non-ASCII, escapes, line separators, emoji, a long history) are recorded
through the SDK; the exporter keeps a copy of every event the broker acknowledged, and
the tests compare the replay with that copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.demo import run_workloads
from agenttrail.embedded import LocalStack
from agenttrail.producer import Recorder
from agenttrail.producer._exporter import KafkaExporter
from agenttrail.query import TaskNotFound, model_input_at_step, replay_task
from agenttrail.store import Store
from tests.integration.test_derived import CopyingExporter

TENANT = "replay-test"
TRICKY_TASK = "tricky-001"
TRICKY_TEXTS = [
    'Grüße aus Köln — "quoted", back\\slash, tab\tand\nnewline',
    "東京の請求書 🧾 and a line separator \u2028 and a paragraph separator \u2029",
    'control \x01 char, NUL-free, </script> and {"json": [1, 2]}',
    "x" * 5000,
]


@dataclass
class Recorded:
    data: Path
    store: Store
    events: list[dict[str, Any]]

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return sorted((e for e in self.events if e["task_id"] == task_id), key=lambda e: e["seq"])


def record_tricky_task(rec: Recorder) -> None:
    history: list[dict[str, Any]] = [{"role": "system", "content": "Stay exact. ✓"}]
    with rec.task("exactness", task_id=TRICKY_TASK, tools=["echo"]) as task:
        for n, text in enumerate(TRICKY_TEXTS):
            history.append({"role": "user", "content": text, "meta": {"n": n, "ok": None}})
            with task.llm_call(
                model="gpt-4.1",
                messages=history,
                params={"temperature": 0.25, "stop": ["\n\n"], "seed": n},
                model_version="gpt-4.1-2025-04-14",
                prompt_version="v7",
            ) as call:
                call.respond(f"answer {n}: «{text[:20]}»", input_tokens=10 + n, output_tokens=3)
            history.append({"role": "assistant", "content": f"answer {n}"})
            with task.tool("echo", args={"text": text[:50]}) as span:
                span.result(text[:30])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    data = tmp_path_factory.mktemp("replay") / "data"
    with LocalStack(data, partitions=2) as stack:
        exporter = CopyingExporter(KafkaExporter(stack.bootstrap))
        rec = Recorder(exporter=exporter, tenant=TENANT, agent="replayer", spool_dir=data / "sp")
        run_workloads(rec, tasks=9, seed=1)
        record_tricky_task(rec)
        assert rec.close().spooled == 0
        events = exporter.events()
        stack.wait_stored(len(events), timeout=120)
        assert stack.store is not None
        yield Recorded(data, stack.store, events)


def cli(recorded: Recorded, *args: str) -> Any:
    return CliRunner().invoke(main, ["replay", *args, "--data", str(recorded.data)])


def test_the_timeline_is_every_event_of_the_task_in_seq_order(recorded: Recorded) -> None:
    task_ids = sorted({e["task_id"] for e in recorded.events})
    assert len(task_ids) == 10
    for task_id in task_ids:
        sent = recorded.of(task_id)
        timeline = replay_task(recorded.store, task_id)
        assert [(t.seq, t.step, t.family, t.span_id) for t in timeline] == [
            (e["seq"], e["step"], e["event_type"], e["span_id"]) for e in sent
        ]
        for t, e in zip(timeline, sent, strict=True):
            assert t.ts == e["ts"]
            assert "\n" not in t.summary and len(t.summary) <= 100
            if e["event_type"] == "tool_span":
                assert t.summary.startswith(f"{e['tool']}(") and t.ok == e["success"]
            elif e["event_type"] == "llm_call":
                assert t.summary.startswith(f"{e['model']} {e['input_tokens']}→")
            elif e["event_type"] == "state_transition":
                assert f"→ {e['to_state']}" in t.summary


def test_the_step_is_exactly_what_the_model_was_sent(recorded: Recorded) -> None:
    calls = [e for e in recorded.of(TRICKY_TASK) if e["event_type"] == "llm_call"]
    assert [c["step"] for c in calls] == [1, 2, 3, 4]
    for sent in calls:
        [seen] = model_input_at_step(recorded.store, TRICKY_TASK, sent["step"])
        assert seen.messages_json.encode("utf-8") == sent["messages_json"].encode("utf-8")
        assert seen.prompt_hash == sent["prompt_hash"]
        assert seen.prompt_hash == hashlib.sha256(sent["messages_json"].encode()).hexdigest()
        assert json.loads(seen.messages_json)[-1]["content"] == TRICKY_TEXTS[sent["step"] - 1]
        for name in ("params_json", "model", "model_version", "prompt_version",
                     "system_prompt_hash", "response_text", "input_tokens", "output_tokens",
                     "seq", "ts"):  # fmt: skip
            assert getattr(seen, name) == sent[name], name
        # The agent reported no cost: priced from the shipped gpt-4.1 list price.
        expected = (sent["input_tokens"] * 2.0 + sent["output_tokens"] * 8.0) / 1e6
        assert (seen.cost_source, seen.cost_usd) == ("price", pytest.approx(expected))


def test_replay_step_command_writes_the_messages_byte_for_byte(recorded: Recorded) -> None:
    sent = [e for e in recorded.of(TRICKY_TASK) if e["event_type"] == "llm_call"][1]
    raw = cli(recorded, TRICKY_TASK, "--step", str(sent["step"]), "--messages-only")
    assert raw.exit_code == 0, raw.output
    assert raw.stdout_bytes == sent["messages_json"].encode("utf-8")
    human = cli(recorded, TRICKY_TASK, "--step", str(sent["step"]))
    assert human.exit_code == 0, human.output
    assert sent["messages_json"].encode("utf-8") in human.stdout_bytes
    assert sent["params_json"] in human.stdout and sent["prompt_hash"] in human.stdout
    as_json = cli(recorded, TRICKY_TASK, "--step", str(sent["step"]), "--json")
    [call] = json.loads(as_json.stdout)["calls"]
    assert call["messages_json"] == sent["messages_json"]


def test_replay_command_prints_the_run_and_its_timeline(recorded: Recorded) -> None:
    task_id = "inv-00000"
    sent = recorded.of(task_id)
    done = cli(recorded, task_id, "--json")
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert [e["seq"] for e in body["events"]] == [e["seq"] for e in sent]
    [run] = body["runs"]
    assert run["events"] == len(sent) and run["steps"] == max(e["step"] for e in sent)
    human = cli(recorded, task_id)
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"Task {task_id} (invoice_generation, tenant {TENANT}")
    assert len(lines) == 2 + len(sent)  # run line, header, one line per event


def test_an_unknown_task_or_step_exits_1_with_what_to_do(recorded: Recorded) -> None:
    with pytest.raises(TaskNotFound, match="No events of task 'no-such-task'"):
        replay_task(recorded.store, "no-such-task")
    done = cli(recorded, "no-such-task")
    assert done.exit_code == 1
    assert "agenttrail runs" in done.stderr and "Traceback" not in done.output
    step = cli(recorded, TRICKY_TASK, "--step", "9")
    assert step.exit_code == 1
    assert "its steps are 1-4" in step.stderr
    other_tenant = cli(recorded, TRICKY_TASK, "--tenant", "someone-else", "--json")
    assert other_tenant.exit_code == 1 and json.loads(other_tenant.stdout)["status"] == "error"
    assert cli(recorded, TRICKY_TASK, "--messages-only").exit_code == 2
