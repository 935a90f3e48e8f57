"""The anthropic integration with the real ``anthropic`` client against a loopback fake server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.embedded import LocalStack
from agenttrail.integrations.anthropic import instrument, run_tool_use
from agenttrail.producer import Limits, Recorder, Task, TaskKilled, TaskStopped
from tests.deadline import wait_until
from tests.delivered import close_and_store as store
from tests.operator_kill import OperatorKill
from tests.otlp.fake_anthropic import FakeAnthropic

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}}
TOOLS = [{"name": "get_order", "description": "Look an order up.", "input_schema": SCHEMA}]
USER = "Invoice order 7294 — bitte 🧾"


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalStack, FakeAnthropic, Path]]:
    data = tmp_path_factory.mktemp("an") / "data"
    with LocalStack(data, partitions=2) as stack, FakeAnthropic() as fake:
        yield stack, fake, data.parent


def cli(stack: LocalStack, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--data", str(stack.data), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def get_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "confirmed"}


def test_sync_calls_and_tool_use_are_recorded_with_ids(
    env: tuple[LocalStack, FakeAnthropic, Path],
) -> None:
    stack, fake, tmp = env
    client = instrument(anthropic.Anthropic(base_url=fake.url, api_key="sk-test"))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="an", agent="an", spool_dir=tmp / "s1")
    with rec.task("an-sync", task_id="an-sync-1"):
        history: list[dict[str, Any]] = [{"role": "user", "content": USER}]
        first = client.messages.create(
            model="claude-test",
            max_tokens=100,
            system="Stay exact.",
            messages=history,
            tools=TOOLS,  # type: ignore[arg-type]
        )
        use = next(b for b in first.content if b.type == "tool_use")
        result = run_tool_use(use, {"get_order": get_order})
        history += [
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                          "content": json.dumps(result)}]},
        ]  # fmt: skip
        client.messages.create(model="claude-test", max_tokens=100, messages=history)  # type: ignore[arg-type]
    store(stack, rec)
    run = cli(stack, "runs", "--task-type", "an-sync")["runs"][0]
    assert run["outcome"] == "succeeded" and run["steps"] == 2
    assert [t["tool"] for t in run["tool_calls"]] == ["get_order"]
    # input = 10 per message sent + 4 read from the cache, per call
    assert run["input_tokens"] == (10 + 4) + (30 + 4) and run["cached_tokens"] == 8
    step1 = cli(stack, "replay", "an-sync-1", "--step", "1")["calls"][0]
    assert json.loads(step1["messages_json"]) == [
        {"role": "system", "content": "Stay exact."},
        {"role": "user", "content": USER},
    ]
    assert json.loads(step1["tool_calls_json"])[0]["id"] == use.id
    assert step1["finish_reason"] == "tool_use"
    assert step1["model_version"] == "claude-test-20250101"
    timeline = cli(stack, "replay", "an-sync-1")["events"]
    tool = next(e for e in timeline if e["family"] == "tool_span")
    assert f"[{use.id}]" in tool["summary"], "the span carries the tool_use block's id"


def test_async_streaming_and_a_limit_that_stops_the_agent(
    env: tuple[LocalStack, FakeAnthropic, Path],
) -> None:
    stack, fake, tmp = env
    client = instrument(anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-test"))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="an", agent="an", spool_dir=tmp / "s2")
    sent_before = len(fake.requests)

    async def agent() -> None:
        with rec.task("an-stream", task_id="an-stream-1", limits=Limits(max_steps=1)):
            msgs = [{"role": "user", "content": "hello"}]
            stream = await client.messages.create(
                model="claude-test",
                max_tokens=50,
                messages=msgs,
                stream=True,  # type: ignore[arg-type]
            )
            async for _ in stream:
                pass
            await client.messages.create(model="claude-test", max_tokens=50, messages=msgs)  # type: ignore[arg-type]

    with pytest.raises(TaskStopped):
        asyncio.run(agent())
    store(stack, rec)
    assert len(fake.requests) - sent_before == 1
    step = cli(stack, "replay", "an-stream-1", "--step", "1")["calls"][0]
    assert step["response_text"].startswith("answer ")
    assert step["ttft_ms"] is not None and step["output_tokens"] == 7
    assert step["finish_reason"] == "end_turn"
    run = cli(stack, "runs", "--task-type", "an-stream")["runs"][0]
    assert run["outcome"] == "limit_exceeded"


def test_sync_streaming_rebuilds_tool_use_with_its_id_and_time_to_first_token(
    env: tuple[LocalStack, FakeAnthropic, Path],
) -> None:
    stack, fake, tmp = env
    client = instrument(anthropic.Anthropic(base_url=fake.url, api_key="sk-test"))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="an", agent="an", spool_dir=tmp / "s3")
    with rec.task("an-sync-stream", task_id="an-sync-stream-1"):
        stream = client.messages.create(
            model="claude-test",
            max_tokens=100,
            messages=[{"role": "user", "content": USER}],
            tools=TOOLS,  # type: ignore[arg-type]
            stream=True,
        )
        started = [e.content_block for e in stream if e.type == "content_block_start"]
        text = client.messages.create(
            model="claude-test", max_tokens=100, stream=True,
            messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        )  # fmt: skip
        parts = [e.delta.text for e in text if e.type == "content_block_delta"]  # type: ignore[union-attr]
    store(stack, rec)
    (use,) = started
    step1 = cli(stack, "replay", "an-sync-stream-1", "--step", "1")["calls"][0]
    assert json.loads(step1["tool_calls_json"]) == [
        {"id": use.id, "name": "get_order", "arguments": {"order_id": "7294"}}  # type: ignore[union-attr]
    ]
    assert step1["finish_reason"] == "tool_use" and step1["ttft_ms"] is not None
    assert step1["input_tokens"] == 10 + 4 and step1["output_tokens"] == 7
    assert step1["model_version"] == "claude-test-20250101"
    step2 = cli(stack, "replay", "an-sync-stream-1", "--step", "2")["calls"][0]
    assert step2["response_text"] == "".join(parts) and parts
    assert step2["finish_reason"] == "end_turn"


def test_a_kill_mid_run_refuses_the_async_clients_next_request(
    env: tuple[LocalStack, FakeAnthropic, Path],
) -> None:
    stack, fake, tmp = env
    client = instrument(anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-test"))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="an", agent="an", spool_dir=tmp / "s4")
    first_done, go_on = threading.Event(), threading.Event()
    running: list[Task] = []
    outcome: list[str] = []
    msgs = [{"role": "user", "content": "hello"}]

    async def agent() -> None:
        try:
            with rec.task("an-kill", task_id="an-kill-1") as task:
                running.append(task)
                await client.messages.create(model="claude-test", max_tokens=50, messages=msgs)  # type: ignore[arg-type]
                first_done.set()
                await asyncio.to_thread(go_on.wait, 120)
                await client.messages.create(model="claude-test", max_tokens=50, messages=msgs)  # type: ignore[arg-type]
                outcome.append("sent")
        except TaskKilled:
            outcome.append("refused")

    thread = threading.Thread(target=lambda: asyncio.run(agent()))
    thread.start()
    assert first_done.wait(120), "the first call did not return"
    sent_before_kill = len(fake.requests)
    operator = OperatorKill(stack.bootstrap, "--task", "an-kill-1")
    wait_until(lambda: running[0].stopped is not None, timeout=60, what="the kill to be heard")
    go_on.set()
    thread.join(120)
    code, answer = operator.result()
    assert outcome == ["refused"] and len(fake.requests) == sent_before_kill
    assert code == 0 and [s["task_id"] for s in answer["stopped"]] == ["an-kill-1"]
    store(stack, rec)
    run = cli(stack, "runs", "--task-type", "an-kill")["runs"][0]
    assert run["outcome"] == "killed" and run["steps"] == 1


def test_the_stream_helper_is_recorded_however_the_stream_is_read(
    env: tuple[LocalStack, FakeAnthropic, Path],
) -> None:
    stack, fake, tmp = env
    sync_client = instrument(anthropic.Anthropic(base_url=fake.url, api_key="sk-test"))
    async_client = instrument(anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-test"))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="an", agent="an", spool_dir=tmp / "s5")
    sent_before = len(fake.requests)
    user = [{"role": "user", "content": USER}]

    async def tool_step() -> Any:
        async with async_client.messages.stream(
            model="claude-test",
            max_tokens=100,
            messages=user,
            tools=TOOLS,  # type: ignore[arg-type]
        ) as stream:
            return await stream.get_final_message()

    with pytest.raises(TaskStopped):
        with rec.task("an-helper", task_id="an-helper-1", limits=Limits(max_steps=2)):
            final = asyncio.run(tool_step())
            hello = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
            with sync_client.messages.stream(
                model="claude-test",
                max_tokens=100,
                messages=hello,  # type: ignore[arg-type]
            ) as stream:
                text = "".join(stream.text_stream)
            with sync_client.messages.stream(model="claude-test", max_tokens=9, messages=hello):  # type: ignore[arg-type]
                raise AssertionError("a stopped task's stream was opened")
    store(stack, rec)
    assert len(fake.requests) - sent_before == 2  # the third request never left
    (use,) = [b for b in final.content if b.type == "tool_use"]
    step1 = cli(stack, "replay", "an-helper-1", "--step", "1")["calls"][0]
    assert json.loads(step1["tool_calls_json"])[0]["id"] == use.id
    assert step1["finish_reason"] == "tool_use" and step1["ttft_ms"] is not None
    assert step1["input_tokens"] == 10 + 4 and step1["output_tokens"] == 7
    step2 = cli(stack, "replay", "an-helper-1", "--step", "2")["calls"][0]
    assert step2["response_text"] == text and text == f"answer {sent_before + 2}"
    assert step2["ttft_ms"] is not None and step2["finish_reason"] == "end_turn"
    run = cli(stack, "runs", "--task-type", "an-helper")["runs"][0]
    assert run["outcome"] == "limit_exceeded" and run["steps"] == 2


def test_parse_is_recorded(env: tuple[LocalStack, FakeAnthropic, Path]) -> None:
    stack, fake, tmp = env
    client = instrument(anthropic.Anthropic(base_url=fake.url, api_key="sk-test"))
    rec = Recorder(bootstrap=stack.bootstrap, tenant="an", agent="an", spool_dir=tmp / "s6")
    with rec.task("an-parse", task_id="an-parse-1"):
        reply = client.messages.parse(
            model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    store(stack, rec)
    step = cli(stack, "replay", "an-parse-1", "--step", "1")["calls"][0]
    assert step["response_text"] == reply.content[0].text  # type: ignore[union-attr]
    assert step["input_tokens"] == 10 + 4 and step["finish_reason"] == "end_turn"
