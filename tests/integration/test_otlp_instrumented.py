"""Real OpenTelemetry instrumentations → OTLP receiver → broker → store → runs / replay.

Each case runs ``tests/otlp/app.py`` in its own process — the real ``openai`` client,
instrumented by the real library of one dialect, calling a small OpenAI-compatible
server on loopback and exporting over OTLP/HTTP to the receiver, which produces to
the stack's broker like ``agenttrail up`` does. The assertions read what
``agenttrail runs`` and ``agenttrail replay --step`` show and compare it with what the
app sent (the fake server keeps every request body).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.embedded import LocalStack
from agenttrail.otlp import KafkaSink, OtlpHttpServer, OtlpIngestor, ReceiverState
from tests.otlp.app import SYSTEM_TEXT, USER_TEXT
from tests.otlp.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    stack: LocalStack
    server: OtlpHttpServer
    ingestor: OtlpIngestor
    fake: FakeOpenAI


@pytest.fixture(scope="module")
def otlp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("otlp") / "data"
    with LocalStack(data, partitions=2) as stack, FakeOpenAI() as fake:
        ingestor = OtlpIngestor(KafkaSink(stack.bootstrap), ReceiverState(data / "otlp.db"))
        server = OtlpHttpServer(ingestor, port=0).start()
        try:
            yield Stack(stack, server, ingestor, fake)
        finally:
            server.stop()


def run_app(s: Stack, dialect: str, task_type: str, env: dict[str, str], *extra: str) -> str:
    """Run the instrumented app; returns its trace id once its events are stored."""
    before = s.ingestor.counters.events
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full_env.update(env)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.otlp.app",
            dialect,
            s.server.url,
            s.fake.url,
            task_type,
            *extra,
        ],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    produced = s.ingestor.counters.events - before
    assert produced >= 6, f"receiver produced {produced} events; app said {proc.stderr[-2000:]}"
    s.stack.wait_stored(s.ingestor.counters.events, timeout=120)
    return proc.stdout.strip().splitlines()[-1]


def cli(s: Stack, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--data", str(s.stack.data), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def run_of(s: Stack, task_type: str) -> dict[str, Any]:
    runs = cli(s, "runs", "--task-type", task_type)["runs"]
    assert len(runs) == 1, runs
    return runs[0]  # type: ignore[no-any-return]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


CASES = {
    # name: (dialect, env, content captured?)
    "semconv-latest-span": (
        "openai-v2",
        {
            "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
        },
        True,
    ),
    "semconv-latest-event-only": (
        "openai-v2",
        {
            "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "EVENT_ONLY",
        },
        True,
    ),
    "semconv-default": ("openai-v2", {}, False),
    "openinference": ("openinference", {}, True),
    "openllmetry": ("openllmetry", {"TRACELOOP_TRACE_CONTENT": "true"}, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_instrumented_app_becomes_a_task_with_its_calls_and_tool(
    otlp_stack: Stack, case: str
) -> None:
    dialect, env, content = CASES[case]
    task_type = f"otlp-{case}"
    sent_before = len(otlp_stack.fake.requests)
    trace_id = run_app(otlp_stack, dialect, task_type, env)
    sent = otlp_stack.fake.requests[sent_before:]
    assert len(sent) == 2

    run = run_of(otlp_stack, task_type)
    assert run["task_id"] == f"otel-{trace_id}"
    assert run["outcome"] == "succeeded"
    assert run["steps"] == 2
    # The fake server bills 10 tokens per message sent and 7 per answer.
    assert run["input_tokens"] == 10 * (len(sent[0]["messages"]) + len(sent[1]["messages"]))
    assert run["output_tokens"] == 14
    assert [t["tool"] for t in run["tool_calls"]] == ["get_order"]

    step1 = cli(otlp_stack, "replay", run["task_id"], "--step", "1")["calls"][0]
    assert step1["model"] == "gpt-test-2025-01-01"
    assert step1["input_tokens"] == 10 * len(sent[0]["messages"])
    stored = step1["messages_json"]
    if content:
        # The texts exactly as the app sent them, inside the stored history (each
        # instrumentation has its own message shape and JSON escaping).
        strings = set(_strings(json.loads(stored)))
        assert SYSTEM_TEXT in strings and USER_TEXT in strings
        assert step1["prompt_hash"] == hashlib.sha256(stored.encode()).hexdigest()
        step1_calls = json.loads(step1["tool_calls_json"])
        assert step1_calls[0]["id"] == "call_1" or step1_calls[0]["id"].startswith("call_")
    else:
        assert USER_TEXT not in stored  # the default captures no content

    timeline = cli(otlp_stack, "replay", run["task_id"])["events"]
    families = [e["family"] for e in timeline]
    assert families[0] == "state_transition" and families[-1] == "state_transition"
    assert families.count("llm_call") == 2 and families.count("tool_span") == 1
    assert [e["seq"] for e in timeline] == list(range(len(timeline)))
    tool = next(e for e in timeline if e["family"] == "tool_span")
    assert "[call_" in tool["summary"], "the tool span keeps the id the model gave the call"
    full = cli(otlp_stack, "replay", run["task_id"], "--seq", str(tool["seq"]))
    assert "7294" in json.dumps(full)
    # The receiver seals like the SDK: the task's hash chain and sequence verify.
    verified = CliRunner().invoke(
        main, ["verify", "--task", run["task_id"], "--data", str(otlp_stack.stack.data), "--json"]
    )
    assert verified.exit_code == 0, verified.output


def test_streaming_calls_are_recorded_with_their_answer(otlp_stack: Stack) -> None:
    env = {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
    }
    run_app(otlp_stack, "openai-v2", "otlp-stream", env, "stream")
    run = run_of(otlp_stack, "otlp-stream")
    step2 = cli(otlp_stack, "replay", run["task_id"], "--step", "2")["calls"][0]
    assert step2["response_text"].startswith("answer ")
    assert step2["finish_reason"] == "stop"
