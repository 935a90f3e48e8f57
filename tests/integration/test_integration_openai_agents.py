"""The OpenAI Agents SDK tracing processor: a real ``Agent`` and ``Runner`` against a fake server.

The agent uses the Agents SDK's chat-completions model with the real ``openai`` async
client pointed at the loopback fake, and one ``@function_tool``; its run is recorded
through the SDK into a real local stack and read back with ``runs`` / ``replay``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.embedded import LocalStack
from agenttrail.integrations.openai_agents import install
from agenttrail.producer import Limits, Recorder, TaskStopped
from tests.delivered import close_and_store as store
from tests.otlp.fake_openai import FakeOpenAI


@function_tool
def get_order(order_id: str) -> str:
    """Look an order up."""
    return json.dumps({"order_id": order_id, "status": "confirmed"})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, FakeOpenAI, Path]]:
    data = tmp_path_factory.mktemp("agents") / "data"
    with LocalStack(data, partitions=2) as stack, FakeOpenAI() as fake:
        yield stack, fake, data.parent


def agent(fake: FakeOpenAI) -> Agent[Any]:
    client = openai.AsyncOpenAI(base_url=fake.url, api_key="sk-test")
    model = OpenAIChatCompletionsModel(model="gpt-test", openai_client=client)
    return Agent(name="invoicer", instructions="Stay exact.", model=model, tools=[get_order])


def cli(stack: LocalStack, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--data", str(stack.data), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_an_agent_run_becomes_a_task_with_calls_and_the_tool_call_id(
    env: tuple[LocalStack, FakeOpenAI, Path],
) -> None:
    stack, fake, tmp = env
    rec = Recorder(bootstrap=stack.bootstrap, tenant="ag", agent="ag", spool_dir=tmp / "s1")
    install(rec, task_type="agents-run")
    sent_before = len(fake.requests)
    result = asyncio.run(Runner.run(agent(fake), "Invoice order 7294 — bitte"))
    store(stack, rec)
    assert str(result.final_output).startswith("answer ")
    sent = fake.requests[sent_before:]
    run = cli(stack, "runs", "--task-type", "agents-run")["runs"][0]
    assert run["outcome"] == "succeeded" and run["steps"] == 2
    assert [t["tool"] for t in run["tool_calls"]] == ["get_order"]
    assert run["input_tokens"] == 10 * (len(sent[0]["messages"]) + len(sent[1]["messages"]))
    step1 = cli(stack, "replay", run["task_id"], "--step", "1")["calls"][0]
    assert json.loads(step1["messages_json"]) == sent[0]["messages"]
    assert json.loads(step1["tool_calls_json"])[0]["id"] == "call_1"


def test_a_step_limit_stops_the_run_before_the_next_model_call(
    env: tuple[LocalStack, FakeOpenAI, Path],
) -> None:
    stack, fake, tmp = env
    rec = Recorder(bootstrap=stack.bootstrap, tenant="ag", agent="ag", spool_dir=tmp / "s2")
    install(rec, task_type="agents-limit", limits=Limits(max_steps=1))
    sent_before = len(fake.requests)
    with pytest.raises(TaskStopped):
        asyncio.run(Runner.run(agent(fake), "Invoice order 7294"))
    store(stack, rec)
    assert len(fake.requests) - sent_before == 1
    run = cli(stack, "runs", "--task-type", "agents-limit")["runs"][0]
    assert run["outcome"] == "limit_exceeded" and run["steps"] == 1
