"""The openai integration with the real ``openai`` client against a loopback fake server.

Recorded through the SDK into a real local stack; the assertions read what
``agenttrail runs`` and ``replay --step`` show and compare it with the requests the
fake server received.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.embedded import LocalStack
from agenttrail.integrations.openai import instrument, run_tool_call
from agenttrail.producer import LimitExceeded, Limits, Recorder, Task, TaskKilled, TaskStopped
from tests.deadline import wait_until
from tests.operator_kill import OperatorKill
from tests.otlp.app import SYSTEM_TEXT, TOOLS, USER_TEXT
from tests.otlp.fake_openai import FakeOpenAI


class Env:
    def __init__(self, stack: LocalStack, fake: FakeOpenAI, spool: Path):
        self.stack = stack
        self.fake = fake
        self.spool = spool

    def recorder(self) -> Recorder:
        return Recorder(
            bootstrap=self.stack.bootstrap, tenant="acme", agent="oa", spool_dir=self.spool
        )

    def store(self, rec: Recorder) -> None:
        report = rec.close()
        assert report.spooled == 0 and report.unsaved == 0
        self.stack.wait_stored(report.delivered + self._before, timeout=120)
        self._before += report.delivered

    _before = 0

    def cli(self, *args: str) -> Any:
        result = CliRunner().invoke(main, [*args, "--data", str(self.stack.data), "--json"])
        assert result.exit_code in (0, 1), result.output
        return json.loads(result.output)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("oa") / "data"
    with LocalStack(data, partitions=2) as stack, FakeOpenAI() as fake:
        yield Env(stack, fake, data.parent / "spool")


def messages() -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM_TEXT}, {"role": "user", "content": USER_TEXT}]


def get_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "confirmed"}


def test_sync_calls_and_tool_calls_are_recorded_with_their_ids(env: Env) -> None:
    client = instrument(openai.OpenAI(base_url=env.fake.url, api_key="sk-test"))
    rec = env.recorder()
    sent_before = len(env.fake.requests)
    with rec.task("oa-sync", task_id="oa-sync-1") as task:
        history = messages()
        first = client.chat.completions.create(model="gpt-test", messages=history, tools=TOOLS)  # type: ignore[arg-type]
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        result = run_tool_call(call, {"get_order": get_order})
        history += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
        ]
        client.chat.completions.create(model="gpt-test", messages=history)  # type: ignore[arg-type]
        assert task.state == "started"
    env.store(rec)
    sent = env.fake.requests[sent_before:]
    run = env.cli("runs", "--task-type", "oa-sync")["runs"][0]
    assert run["outcome"] == "succeeded" and run["steps"] == 2
    assert run["input_tokens"] == 10 * (len(sent[0]["messages"]) + len(sent[1]["messages"]))
    assert run["cached_tokens"] == 6 and run["output_tokens"] == 14
    step1 = env.cli("replay", "oa-sync-1", "--step", "1")["calls"][0]
    assert json.loads(step1["messages_json"]) == sent[0]["messages"]  # as sent
    assert step1["model_version"] == "gpt-test-2025-01-01"
    assert step1["finish_reason"] == "tool_calls"
    assert json.loads(step1["tool_calls_json"])[0]["id"] == call.id
    timeline = env.cli("replay", "oa-sync-1")["events"]
    tool = next(e for e in timeline if e["family"] == "tool_span")
    assert tool["summary"].startswith("get_order(")
    assert f"[{call.id}]" in tool["summary"], "the span carries the id the model gave the call"


def test_async_streaming_records_text_and_time_to_first_token(env: Env) -> None:
    client = instrument(openai.AsyncOpenAI(base_url=env.fake.url, api_key="sk-test"))
    rec = env.recorder()

    async def agent() -> str:
        with rec.task("oa-stream", task_id="oa-stream-1"):
            stream = await client.chat.completions.create(
                model="gpt-test", messages=messages(), stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )  # fmt: skip
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return "".join(parts)

    text = asyncio.run(agent())
    env.store(rec)
    step = env.cli("replay", "oa-stream-1", "--step", "1")["calls"][0]
    assert step["response_text"] == text and text.startswith("answer ")
    assert step["ttft_ms"] is not None and step["ttft_ms"] >= 0
    assert step["finish_reason"] == "stop" and step["output_tokens"] == 7


def test_sync_streamed_tool_calls_keep_their_ids(env: Env) -> None:
    client = instrument(openai.OpenAI(base_url=env.fake.url, api_key="sk-test"))
    rec = env.recorder()
    with rec.task("oa-sync-stream", task_id="oa-sync-stream-1"):
        stream = client.chat.completions.create(
            model="gpt-test", messages=messages(), tools=TOOLS, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )  # fmt: skip
        ids = [tc.id for c in stream if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    env.store(rec)
    step = env.cli("replay", "oa-sync-stream-1", "--step", "1")["calls"][0]
    assert [c["id"] for c in json.loads(step["tool_calls_json"])] == ids
    assert json.loads(step["tool_calls_json"])[0]["arguments"] == '{"order_id": "7294"}'
    assert step["finish_reason"] == "tool_calls" and step["input_tokens"] == 20


def test_a_step_limit_stops_the_agent_before_the_request_is_sent(env: Env) -> None:
    client = instrument(openai.OpenAI(base_url=env.fake.url, api_key="sk-test"))
    rec = env.recorder()
    sent_before = len(env.fake.requests)
    with pytest.raises(TaskStopped):
        with rec.task("oa-limit", task_id="oa-limit-1", limits=Limits(max_steps=1)):
            client.chat.completions.create(model="gpt-test", messages=messages())  # type: ignore[arg-type]
            client.chat.completions.create(model="gpt-test", messages=messages())  # type: ignore[arg-type]
    env.store(rec)
    assert len(env.fake.requests) - sent_before == 1  # the second request never left
    run = env.cli("runs", "--task-type", "oa-limit")["runs"][0]
    assert run["outcome"] == "limit_exceeded" and run["steps"] == 1


def test_outside_a_task_the_client_is_unchanged(env: Env) -> None:
    client = instrument(openai.OpenAI(base_url=env.fake.url, api_key="sk-test"))
    reply = client.chat.completions.create(model="gpt-test", messages=messages())  # type: ignore[arg-type]
    assert reply.choices[0].message.content.startswith("answer ")  # type: ignore[union-attr]


def test_async_non_streaming_calls_record_and_a_token_limit_stops_the_third(env: Env) -> None:
    client = instrument(openai.AsyncOpenAI(base_url=env.fake.url, api_key="sk-test"))
    rec = env.recorder()
    sent_before = len(env.fake.requests)
    # 2 messages → 20 + 7 tokens, then 4 messages → 40 + 7: the second call's answer
    # crosses 30, so the third request must never leave.
    limits = Limits(max_tokens=30)

    async def agent() -> str:
        with rec.task("oa-async", task_id="oa-async-1", limits=limits):
            history = messages()
            first = await client.chat.completions.create(
                model="gpt-test",
                messages=history,
                tools=TOOLS,  # type: ignore[arg-type]
            )
            call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
            result = run_tool_call(call, {"get_order": get_order})
            history += [
                first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
            ]
            second = await client.chat.completions.create(model="gpt-test", messages=history)  # type: ignore[arg-type]
            await client.chat.completions.create(model="gpt-test", messages=history)  # type: ignore[arg-type]
            return str(second.choices[0].message.content) + call.id

    with pytest.raises(LimitExceeded):
        asyncio.run(agent())
    env.store(rec)
    sent = env.fake.requests[sent_before:]
    assert len(sent) == 2
    run = env.cli("runs", "--task-type", "oa-async")["runs"][0]
    assert run["outcome"] == "limit_exceeded" and run["steps"] == 2
    assert run["input_tokens"] == 20 + 40 and run["output_tokens"] == 14
    assert [t["tool"] for t in run["tool_calls"]] == ["get_order"]
    step1 = env.cli("replay", "oa-async-1", "--step", "1")["calls"][0]
    assert json.loads(step1["messages_json"]) == sent[0]["messages"]
    assert json.loads(step1["tool_calls_json"])[0]["id"] == "call_" + str(sent_before + 1)
    step2 = env.cli("replay", "oa-async-1", "--step", "2")["calls"][0]
    assert json.loads(step2["messages_json"]) == sent[1]["messages"]
    assert step2["response_text"].startswith(f"answer {sent_before + 2}: ")
    assert step2["finish_reason"] == "stop" and step2["ttft_ms"] is None


def test_a_kill_mid_run_refuses_the_clients_next_request(env: Env) -> None:
    client = instrument(openai.OpenAI(base_url=env.fake.url, api_key="sk-test"))
    rec = env.recorder()
    first_done, go_on = threading.Event(), threading.Event()
    running: list[Task] = []
    outcome: list[str] = []

    def agent() -> None:
        try:
            with rec.task("oa-kill", task_id="oa-kill-1") as task:
                running.append(task)
                client.chat.completions.create(model="gpt-test", messages=messages())  # type: ignore[arg-type]
                first_done.set()
                go_on.wait(120)
                client.chat.completions.create(model="gpt-test", messages=messages())  # type: ignore[arg-type]
                outcome.append("sent")
        except TaskKilled:
            outcome.append("refused")

    thread = threading.Thread(target=agent)
    thread.start()
    assert first_done.wait(120), "the first call did not return"
    sent_before_kill = len(env.fake.requests)
    operator = OperatorKill(env.stack.bootstrap, "--task-type", "oa-kill", "--reason", "test")
    wait_until(lambda: running[0].stopped is not None, timeout=60, what="the kill to be heard")
    go_on.set()
    thread.join(120)
    code, answer = operator.result()
    assert outcome == ["refused"]
    assert len(env.fake.requests) == sent_before_kill  # the refused request never left
    assert code == 0 and [s["task_id"] for s in answer["stopped"]] == ["oa-kill-1"]
    # The killed scope stays refused: a new task's first request does not leave either.
    with pytest.raises(TaskKilled):
        with rec.task("oa-kill", task_id="oa-kill-2"):
            client.chat.completions.create(model="gpt-test", messages=messages())  # type: ignore[arg-type]
    assert len(env.fake.requests) == sent_before_kill
    env.store(rec)
    run = next(
        r for r in env.cli("runs", "--task-type", "oa-kill")["runs"] if r["task_id"] == "oa-kill-1"
    )
    assert run["outcome"] == "killed" and run["steps"] == 1


def test_the_parse_and_stream_helpers_are_recorded_once_each(env: Env) -> None:
    client = instrument(openai.OpenAI(base_url=env.fake.url, api_key="sk-test"))
    rec = env.recorder()
    sent_before = len(env.fake.requests)
    with rec.task("oa-helpers", task_id="oa-helpers-1"):
        parsed = client.chat.completions.parse(model="gpt-test", messages=messages())  # type: ignore[arg-type]
        with client.chat.completions.stream(
            model="gpt-test",
            messages=messages(),
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        ) as stream:
            final = stream.get_final_completion()
    env.store(rec)
    assert len(env.fake.requests) - sent_before == 2
    run = env.cli("runs", "--task-type", "oa-helpers")["runs"][0]
    assert run["outcome"] == "succeeded" and run["steps"] == 2  # one call each, not two
    step1 = env.cli("replay", "oa-helpers-1", "--step", "1")["calls"][0]
    assert step1["response_text"] == parsed.choices[0].message.content
    step2 = env.cli("replay", "oa-helpers-1", "--step", "2")["calls"][0]
    assert step2["response_text"] == final.choices[0].message.content
    assert step2["ttft_ms"] is not None and step2["output_tokens"] == 7
