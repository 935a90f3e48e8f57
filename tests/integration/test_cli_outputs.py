"""What the reading commands print (issue 7 item 7): `--format csv` for runs and metrics,
a span in full with `replay --seq`, `up` refusing a taken port before touching the store.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.embedded import LocalStack
from agenttrail.producer import Recorder

ROOT = Path(__file__).resolve().parents[2]
LONG_ARG = "order-" + "7294-" * 400  # 2,006 characters: far past the timeline's 100
LONG_RESULT = {"invoice_id": "inv_1", "lines": [f"line {n}: " + "y" * 40 for n in range(30)]}
TASKS = [f"out-{n:02d}" for n in range(6)]


@dataclass
class Recorded:
    data: Path
    delivered: int


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    data = tmp_path_factory.mktemp("outputs") / "data"
    with LocalStack(data, partitions=2) as stack:
        rec = Recorder(bootstrap=stack.bootstrap, tenant="out", agent="o", spool_dir=data / "sp")
        for n, task_id in enumerate(TASKS):
            with rec.task("invoice_generation" if n % 2 else "triage", task_id=task_id) as task:
                with task.llm_call(
                    model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
                ) as c:
                    c.respond("ok", input_tokens=10 + n, output_tokens=2)
                with task.tool("create_invoice", args={"order_id": LONG_ARG}) as span:
                    span.result(LONG_RESULT)
        report = rec.close(timeout=60)
        assert report.complete
        stack.wait_stored(report.delivered, timeout=120)
        yield Recorded(data, report.delivered)


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_runs_csv_has_the_same_runs_as_json(recorded: Recorded) -> None:
    as_json = json.loads(_run("runs", "--data", str(recorded.data), "--json"))["runs"]
    rows = list(
        csv.DictReader(io.StringIO(_run("runs", "--data", str(recorded.data), "--format", "csv")))
    )
    assert sorted(r["task_id"] for r in rows) == sorted(TASKS)
    assert [r["task_id"] for r in rows] == [r["task_id"] for r in as_json]
    for row, run in zip(rows, as_json, strict=True):
        assert int(row["steps"]) == run["steps"]
        assert int(row["input_tokens"]) == run["input_tokens"]
        assert json.loads(row["tool_calls"]) == run["tool_calls"]


def test_metrics_csv_has_one_row_per_task_type(recorded: Recorded) -> None:
    text = _run("metrics", "--data", str(recorded.data), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["task_type"] for r in rows) == ["invoice_generation", "triage"]
    assert sum(int(r["tasks"]) for r in rows) == len(TASKS)
    assert sum(int(r["input_tokens"]) for r in rows) == sum(10 + n for n in range(len(TASKS)))


def test_replay_seq_shows_a_tool_span_whole(recorded: Recorded) -> None:
    timeline = _run("replay", TASKS[0], "--data", str(recorded.data))
    assert LONG_ARG not in timeline  # the timeline cuts it
    events = json.loads(_run("replay", TASKS[0], "--data", str(recorded.data), "--json"))["events"]
    (span,) = [e for e in events if e["family"] == "tool_span"]
    text = _run("replay", TASKS[0], "--seq", str(span["seq"]), "--data", str(recorded.data))
    assert LONG_ARG in text
    full = json.loads(
        _run("replay", TASKS[0], "--seq", str(span["seq"]), "--data", str(recorded.data), "--json")
    )
    (event,) = full["events"]
    assert json.loads(event["columns"]["args_json"]) == {"order_id": LONG_ARG}
    # The SDK bounds the result summary itself; what it stored is printed whole.
    summary = event["columns"]["result_summary"]
    assert len(summary) > 100 and summary.startswith('{"invoice_id":"inv_1"')
    assert summary in text


def test_replay_seq_of_an_unknown_event_exits_1(recorded: Recorded) -> None:
    result = CliRunner().invoke(
        main, ["replay", TASKS[0], "--seq", "999", "--data", str(recorded.data)]
    )
    assert result.exit_code == 1
    assert "no event with seq 999" in result.output


def test_replay_step_0_is_refused_because_steps_start_at_1(recorded: Recorded) -> None:
    result = CliRunner().invoke(
        main, ["replay", TASKS[0], "--step", "0", "--data", str(recorded.data)]
    )
    assert result.exit_code == 2
    assert "--step" in result.output and "1" in result.output


def test_up_on_a_taken_port_refuses_before_creating_or_migrating_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "agenttrail.cli",
                "up",
                "--data",
                str(data),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    assert done.returncode == 2, done.stderr
    assert f"Port {port}" in done.stderr and "already in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (data / "clickhouse").exists(), "the store was created before the port check"


def test_the_readme_python_query_example_runs(recorded: Recorded) -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    (example,) = [b for b in blocks if "from agenttrail.query import" in b]
    example = (
        example.replace('".agenttrail"', repr(str(recorded.data)))
        .replace('"inv-00195", 2', f'"{TASKS[0]}", 1')
        .replace('"inv-00195", 7', f'"{TASKS[0]}", 2')
        .replace('"inv-00195"', f'"{TASKS[0]}"')
        .replace("print(", "str(")
    )
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["span"].family == "tool_span"  # type: ignore[attr-defined]
    assert len(namespace["timeline"]) == 4  # type: ignore[arg-type]
