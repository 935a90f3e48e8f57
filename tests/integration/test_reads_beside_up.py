"""Reading commands beside a running `agenttrail up` (issue 12 item 1).

`up` holds the in-process store; the reading commands find its read endpoint through
up.json and must print what they print against the stopped store: same rows, same exit
codes. An agent of another tenant keeps ingesting while the reads run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.demo import run_workloads
from agenttrail.producer import Recorder
from tests.deadline import wait_until

ROOT = Path(__file__).resolve().parents[2]
TENANT = "beside-up"
CLI = (sys.executable, "-m", "agenttrail.cli")
UNTIL = "2100-01-01T00:00:00"


def _commands(data: Path, task: str) -> list[list[str]]:
    d = ["--data", str(data)]
    return [
        ["runs", "--tenant", TENANT, "--limit", "500", "--json", *d],
        ["runs", "--tenant", TENANT, "--limit", "500", "--format", "csv", *d],
        ["runs", "--tenant", TENANT, "--outcome", "failed", *d],
        ["metrics", "--tenant", TENANT, "--until", UNTIL, "--json", *d],
        ["metrics", "--tenant", TENANT, "--by", "model", "--until", UNTIL, "--format", "csv", *d],
        ["replay", task, "--tenant", TENANT, "--json", *d],
        ["replay", task, "--tenant", TENANT, "--step", "1", "--json", *d],
        ["replay", task, "--tenant", TENANT, "--seq", "2", "--json", *d],
        ["replay", "no-such-task", *d],
        ["replay", task, "--tenant", TENANT, "--step", "999", *d],
        ["query", "tool_loops", "-p", f"tenant={TENANT}", "--format", "json", *d],
        ["query", "limit_hits", "-p", f"tenant={TENANT}", "--format", "csv", *d],
        ["prices", "list", "--json", *d],
    ]


def _run_all(data: Path, task: str) -> list[tuple[int, str]]:
    out = []
    for args in _commands(data, task):
        result = CliRunner().invoke(main, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        out.append((result.exit_code, result.output))
    return out


def _noise(bootstrap: str, spool: Path, stop: threading.Event) -> None:
    rec = Recorder(bootstrap=bootstrap, tenant="noise", agent="noise", spool_dir=spool)
    n = 0
    while not stop.wait(0.005):  # a steady trickle (~200 tasks/s), not a flood
        with rec.task("noise", task_id=f"noise-{n}") as task:
            with task.tool("probe", args={"n": n}) as span:
                span.result(n)
        n += 1
    rec.close(timeout=60)


def test_every_reading_command_beside_up_prints_what_it_prints_after_up_stops(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    up = subprocess.Popen(
        [*CLI, "up", "--data", str(data), "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert up.stdout is not None
        ready: dict[str, Any] = json.loads(up.stdout.readline())
        rec = Recorder(
            bootstrap=ready["bootstrap"], tenant=TENANT, agent="a", spool_dir=tmp_path / "s"
        )
        plan = run_workloads(rec, tasks=30, seed=1)
        assert rec.close(timeout=60).complete
        task = "inv-00000"

        def all_tasks_stored() -> bool:
            result = CliRunner().invoke(
                main, ["runs", "--tenant", TENANT, "--limit", "500", "--json", "--data", str(data)]
            )
            runs = json.loads(result.output)["runs"] if result.exit_code == 0 else []
            return len(runs) == plan.tasks and all(r["events"] == r["max_seq"] + 1 for r in runs)

        wait_until(all_tasks_stored, timeout=120, what="the agent's tasks to be stored")
        stop = threading.Event()
        noise = threading.Thread(target=_noise, args=(ready["bootstrap"], tmp_path / "n", stop))
        noise.start()
        try:
            beside = _run_all(data, task)
        finally:
            stop.set()
            noise.join(120)
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=300)
    assert up.returncode == 0
    after = _run_all(data, task)
    for args, (code_b, out_b), (code_a, out_a) in zip(
        _commands(data, task), beside, after, strict=True
    ):
        assert code_b == code_a, (args, out_b, out_a)
        assert out_b == out_a, args
    codes = [code for code, _ in after]
    assert codes == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0], codes
