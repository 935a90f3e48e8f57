"""The LangChain callback handler, sync and async, recording through the SDK into a real stack.

The chat model is LangChain's own ``GenericFakeChatModel`` (a real ``BaseChatModel``:
the callback manager, run ids and tool-call plumbing are LangChain's), the tools real
``@tool`` functions invoked with LangChain tool calls, so ``tool_call_id`` reaches the
handler as in an agent. The async agent runs its tool calls in parallel and carries a
step limit that must stop it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool

from agenttrail.cli import main
from agenttrail.embedded import LocalStack
from agenttrail.integrations.langchain import (
    AgenttrailCallbackHandler,
    AsyncAgenttrailCallbackHandler,
)
from agenttrail.producer import Limits, Recorder, Task, TaskKilled, TaskStopped
from tests.deadline import wait_until
from tests.delivered import close_and_store as store
from tests.operator_kill import OperatorKill


@tool
def get_order(order_id: str) -> str:
    """Look an order up."""
    return json.dumps({"order_id": order_id, "status": "confirmed"})


@tool
def get_customer(customer_id: str) -> str:
    """Look a customer up (async runs call it on an executor thread)."""
    return json.dumps({"customer_id": customer_id, "name": "Grüße GmbH"})


TOOLS = {"get_order": get_order, "get_customer": get_customer}


def tool_round(n: int) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[
            {"id": f"call_{n}a", "name": "get_order", "args": {"order_id": f"7{n}"}},
            {"id": f"call_{n}b", "name": "get_customer", "args": {"customer_id": f"c{n}"}},
        ],
        usage_metadata={
            "input_tokens": 100 * n,
            "output_tokens": 10,
            "total_tokens": 100 * n + 10,
            "input_token_details": {"cache_read": 50},
        },
        response_metadata={"finish_reason": "tool_calls", "model_name": "fake-model-v1"},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    data = tmp_path_factory.mktemp("lc") / "data"
    with LocalStack(data, partitions=2) as s:
        yield s


def cli(stack: LocalStack, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--data", str(stack.data), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


PROMPT: list[BaseMessage] = [SystemMessage("Stay exact."), HumanMessage("Invoice order 71 — bitte")]


def test_sync_handler_records_calls_tools_and_ids(stack: LocalStack, tmp_path: Any) -> None:
    model = GenericFakeChatModel(messages=iter([tool_round(1), AIMessage("done")]))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="lc", agent="lc", spool_dir=tmp_path)
    with rec.task("lc-sync", task_id="lc-sync-1") as task:
        config: Any = {"callbacks": [AgenttrailCallbackHandler(task)]}
        history = list(PROMPT)
        ai = model.invoke(history, config=config)
        history.append(ai)
        history += [TOOLS[c["name"]].invoke(c, config=config) for c in ai.tool_calls]
        model.invoke(history, config=config)
    store(stack, rec)
    run = cli(stack, "runs", "--task-type", "lc-sync")["runs"][0]
    assert run["outcome"] == "succeeded" and run["steps"] == 2
    assert sorted(t["tool"] for t in run["tool_calls"]) == ["get_customer", "get_order"]
    assert run["input_tokens"] == 100 and run["cached_tokens"] == 50
    step1 = cli(stack, "replay", "lc-sync-1", "--step", "1")["calls"][0]
    assert json.loads(step1["messages_json"]) == [
        {"role": "system", "content": "Stay exact."},
        {"role": "user", "content": "Invoice order 71 — bitte"},
    ]
    assert [c["id"] for c in json.loads(step1["tool_calls_json"])] == ["call_1a", "call_1b"]
    assert step1["finish_reason"] == "tool_calls" and step1["model_version"] == "fake-model-v1"
    step2 = cli(stack, "replay", "lc-sync-1", "--step", "2")["calls"][0]
    sent = json.loads(step2["messages_json"])
    assert [m.get("tool_call_id") for m in sent if m["role"] == "tool"] == ["call_1a", "call_1b"]
    assert step2["response_text"] == "done"


def test_async_agent_with_parallel_tool_calls_is_stopped_by_its_step_limit(
    stack: LocalStack, tmp_path: Any
) -> None:
    model = GenericFakeChatModel(messages=iter([tool_round(n) for n in range(1, 10)]))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="lc", agent="lc", spool_dir=tmp_path)
    model_calls = 0

    async def agent() -> None:
        nonlocal model_calls
        with rec.task("lc-async", task_id="lc-async-1", limits=Limits(max_steps=2)) as task:
            config: Any = {"callbacks": [AsyncAgenttrailCallbackHandler(task)]}
            history = list(PROMPT)
            while True:
                ai = await model.ainvoke(history, config=config)
                model_calls += 1
                history.append(ai)
                results = await asyncio.gather(
                    *(TOOLS[c["name"]].ainvoke(c, config=config) for c in ai.tool_calls)
                )
                history += results

    with pytest.raises(TaskStopped):
        asyncio.run(agent())
    store(stack, rec)
    assert model_calls == 2  # the third call was refused before the model ran
    run = cli(stack, "runs", "--task-type", "lc-async")["runs"][0]
    assert run["outcome"] == "limit_exceeded" and run["steps"] == 2
    assert len(run["tool_calls"]) == 4 and all(t["success"] for t in run["tool_calls"])
    timeline = cli(stack, "replay", "lc-async-1")["events"]
    assert [e["seq"] for e in timeline] == list(range(len(timeline)))


def test_a_kill_mid_run_stops_the_async_agent_before_its_next_model_call(
    stack: LocalStack, tmp_path: Any
) -> None:
    model = GenericFakeChatModel(messages=iter([tool_round(n) for n in range(1, 10)]))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="lc", agent="lc", spool_dir=tmp_path)
    first_round, go_on = threading.Event(), threading.Event()
    running: list[Task] = []
    model_calls = 0

    async def agent() -> None:
        nonlocal model_calls
        with rec.task("lc-kill", task_id="lc-kill-1") as task:
            running.append(task)
            config: Any = {"callbacks": [AsyncAgenttrailCallbackHandler(task)]}
            history = list(PROMPT)
            while True:
                ai = await model.ainvoke(history, config=config)
                model_calls += 1
                history.append(ai)
                history += await asyncio.gather(
                    *(TOOLS[c["name"]].ainvoke(c, config=config) for c in ai.tool_calls)
                )
                first_round.set()
                await asyncio.to_thread(go_on.wait, 120)

    outcome: list[str] = []

    def run_agent() -> None:
        try:
            asyncio.run(agent())
        except TaskKilled:
            outcome.append("killed")

    thread = threading.Thread(target=run_agent)
    thread.start()
    assert first_round.wait(120), "the first round did not finish"
    operator = OperatorKill(stack.bootstrap, "--task", "lc-kill-1", "--reason", "test")
    wait_until(lambda: running[0].stopped is not None, timeout=60, what="the kill to be heard")
    go_on.set()
    thread.join(120)
    code, answer = operator.result()
    assert outcome == ["killed"] and model_calls == 1  # the second model call never ran
    assert code == 0 and [s["task_id"] for s in answer["stopped"]] == ["lc-kill-1"]
    store(stack, rec)
    run = cli(stack, "runs", "--task-type", "lc-kill")["runs"][0]
    assert run["outcome"] == "killed" and run["steps"] == 1 and len(run["tool_calls"]) == 2
