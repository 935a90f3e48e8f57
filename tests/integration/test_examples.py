"""The scripts under examples/ run as a user runs them, and the README shows them as they are.

One `agenttrail up` (its own process, OTLP receiver on a free port) and loopback doubles
of the OpenAI and Anthropic APIs; each example runs as its own process with only the
environment a user sets (AGENTTRAIL_DATA, the client's base URL and key, the OTel
exporter variables), and what it recorded is read back with `agenttrail runs`. The
README's code blocks that name an example must be excerpts of it, line for line, so
the README cannot drift from what is tested here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from tests.deadline import wait_until
from tests.otlp.fake_anthropic import FakeAnthropic
from tests.otlp.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass
class World:
    data: Path
    otlp: str
    openai: FakeOpenAI
    anthropic: FakeAnthropic

    def run(self, script: str, **extra: str) -> str:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "AGENTTRAIL_", "OPENAI_", "ANTHROPIC_"))
        }
        env.update(
            AGENTTRAIL_DATA=str(self.data),
            AGENTTRAIL_SPOOL_DIR=str(self.data.parent / f"spool-{Path(script).stem}"),
            OPENAI_BASE_URL=self.openai.url,
            OPENAI_API_KEY="sk-example",
            ANTHROPIC_BASE_URL=self.anthropic.url,
            ANTHROPIC_API_KEY="sk-example",
            **extra,
        )
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def run_of(self, task_type: str, steps: int, tools: list[str]) -> dict[str, Any]:
        """The one run of ``task_type``, once it is stored whole (outcome, steps, tools)."""

        def stored() -> dict[str, Any] | None:
            result = CliRunner().invoke(
                main, ["runs", "--task-type", task_type, "--data", str(self.data), "--json"]
            )
            if result.exit_code != 0:
                return None
            runs = json.loads(result.output)["runs"]
            if len(runs) != 1:
                return None
            run = runs[0]
            whole = run["outcome"] == "succeeded" and run["steps"] == steps
            return run if whole and [t["tool"] for t in run["tool_calls"]] == tools else None

        return wait_until(stored, timeout=120, what=f"the run of {task_type} to be stored")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("examples") / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "agenttrail.cli", "up", "--data", str(data), "--port", "0",
         "--otlp-port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        ready = json.loads(up.stdout.readline())
        assert ready["status"] == "ready", ready
        with FakeOpenAI() as openai, FakeAnthropic() as anthropic:
            yield World(data, ready["otlp"], openai, anthropic)
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=300)
    assert up.returncode == 0


def test_openai_support(world: World) -> None:
    before = len(world.openai.requests)
    out = world.run("openai_support.py")
    run = world.run_of("support", steps=2, tools=["get_order"])
    sent = world.openai.requests[before:]
    assert out.startswith(f"answer {before + 2}: ") and len(sent) == 2
    assert run["tenant"] == "acme"
    assert run["input_tokens"] == 10 * (len(sent[0]["messages"]) + len(sent[1]["messages"]))


def test_anthropic_support(world: World) -> None:
    before = len(world.anthropic.requests)
    out = world.run("anthropic_support.py")
    run = world.run_of("support-claude", steps=2, tools=["get_order"])
    sent = world.anthropic.requests[before:]
    assert out.strip() == f"answer {before + 2}" and len(sent) == 2
    assert sent[1]["messages"][2]["content"][0]["tool_use_id"] == f"toolu_{before + 1}"
    assert run["tenant"] == "acme"


def test_langchain_agent(world: World) -> None:
    before = len(world.openai.requests)
    out = world.run("langchain_agent.py")
    run = world.run_of("research", steps=2, tools=["get_order"])
    sent = world.openai.requests[before:]
    assert out.startswith("answer ") and len(sent) == 2
    assert sent[1]["messages"][-1]["tool_call_id"] == f"call_{before + 1}"
    assert run["tenant"] == "acme"


def test_openai_agents_triage(world: World) -> None:
    out = world.run("openai_agents_triage.py")
    run = world.run_of("triage", steps=2, tools=["get_order"])
    assert out.startswith("answer ") and run["tenant"] == "acme"


def test_otlp_app(world: World) -> None:
    out = world.run(
        "otlp_app.py",
        OTEL_EXPORTER_OTLP_ENDPOINT=world.otlp,
        OTEL_RESOURCE_ATTRIBUTES="service.name=invoicer,agenttrail.task.type=invoicing",
        OTEL_SEMCONV_STABILITY_OPT_IN="gen_ai_latest_experimental",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_AND_EVENT",
    )
    run = world.run_of("invoicing", steps=1, tools=[])
    assert out.startswith("answer ") and run["tenant"] == "default"


_BLOCK = re.compile(r"```(?:python|bash)\n(.*?)```", re.S)
_NAMES = re.compile(r"examples/(\w+\.py)")


def _code_lines(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#") and line.strip() != "..."
    ]


def test_the_readme_shows_the_examples_as_they_are() -> None:
    readme = (ROOT / "README.md").read_text()
    checked = set()
    for block in _BLOCK.findall(readme):
        first = block.splitlines()[0] if block else ""
        named = _NAMES.search(first)
        if not first.startswith("#") or named is None:
            continue
        script = (EXAMPLES / named.group(1)).read_text()
        lines = _code_lines(script)
        at = 0
        for line in _code_lines(block):
            assert line in lines[at:], f"README line not in examples/{named.group(1)}: {line}"
            at = lines.index(line, at) + 1
        checked.add(named.group(1))
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert checked == scripts, f"examples without a README excerpt: {scripts - checked}"
