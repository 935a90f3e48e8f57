"""The safety plane on the one-machine stack (real embedded broker, real Kafka listeners):
``agenttrail kill --all`` stops 50 concurrent tasks (threads and asyncio) and every one
acknowledges; a killed scope refuses new tasks until lifted; generated personal data
never reaches the broker."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from agenttrail.cli import main
from agenttrail.embedded import EmbeddedBroker
from agenttrail.events import EventCodec
from agenttrail.producer import Recorder, TaskKilled, cancel_on_stop
from tests import pii
from tests.deadline import wait_until

THREADS = 25
ASYNC_TASKS = 25


def _topics(bootstrap: str) -> tuple[str, str]:
    events, control = f"events-{uuid.uuid4().hex[:10]}", f"control-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(events, 4, 1), NewTopic(control, 1, 1)])
        admin.wait_for_topics([events, control], timeout_ms=30_000)
    finally:
        admin.close()
    return events, control


def _raw(bootstrap: str, topic: str, partitions: int = 4) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[bytes] = []
        while True:
            batch = consumer.poll(timeout_ms=1500)
            if not batch:
                return out
            for records in batch.values():
                out.extend((r.key or b"") + (r.value or b"") for r in records)
    finally:
        consumer.close()


def _kill(bootstrap: str, control: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        main, ["kill", *args, "--bootstrap", bootstrap, "--topic", control, "--json"]
    )
    return result.exit_code, json.loads(result.output.strip().splitlines()[-1])


def test_kill_all_stops_50_concurrent_tasks_and_each_acknowledges(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    events, control = _topics(broker.bootstrap)
    rec = Recorder(
        bootstrap=broker.bootstrap, topic=events, control_topic=control, spool_dir=tmp_path
    )
    running = threading.Semaphore(0)
    outcomes: list[str] = []
    lock = threading.Lock()

    def thread_agent(i: int) -> None:
        try:
            with rec.task("crawl", task_id=f"thread-{i}") as task:
                running.release()
                while True:  # a loop of short tool calls: the next one raises
                    with task.tool("fetch"):
                        threading.Event().wait(0.01)
        except TaskKilled:
            with lock:
                outcomes.append("thread killed")

    async def async_agent(i: int) -> None:
        try:
            with rec.task("research", task_id=f"async-{i}", on_stop=cancel_on_stop()):
                running.release()
                await asyncio.sleep(3600)  # inside a long LLM call: cancelled at once
        except asyncio.CancelledError:
            with lock:
                outcomes.append("async cancelled")

    async def async_main(ready: threading.Event) -> None:
        tasks = [asyncio.create_task(async_agent(i)) for i in range(ASYNC_TASKS)]
        ready.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)

    threads = [threading.Thread(target=thread_agent, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    ready = threading.Event()
    loop_thread = threading.Thread(target=lambda: asyncio.run(async_main(ready)))
    loop_thread.start()
    for _ in range(THREADS + ASYNC_TASKS):
        assert running.acquire(timeout=60), "a task did not start"

    code, out = _kill(broker.bootstrap, control, "--all", "--reason", "test", "--wait", "60")

    for t in [*threads, loop_thread]:
        t.join(120)
    assert code == 0, out
    assert len(out["stopped"]) == THREADS + ASYNC_TASKS and out["not_stopped"] == []
    assert sorted(outcomes) == ["async cancelled"] * ASYNC_TASKS + ["thread killed"] * THREADS

    # A new task in the killed scope is refused until the kill is lifted.
    try:
        with rec.task("crawl"):
            raise AssertionError("a task ran in a killed scope")
    except TaskKilled:
        pass
    code, _ = _kill(broker.bootstrap, control, "--lift", "--all")
    assert code == 0
    wait_until(lambda: rec.safety.kill_switch.state.active() == [], what="the lift to be heard")
    with rec.task("crawl", task_id="after-lift") as task:
        with task.tool("fetch"):
            pass
    assert rec.close().complete

    # Ground truth from the events topic: every task recorded its kill and acknowledged.
    codec = EventCodec()
    decoded: list[dict[str, Any]] = []
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(events, p) for p in range(4)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while batch := consumer.poll(timeout_ms=1500):
            for records in batch.values():
                decoded.extend(codec.decode(r.value) for r in records)
    finally:
        consumer.close()
    acks = {e["task_id"] for e in decoded if e.get("kind") == "kill_acknowledged"}
    killed = {e["task_id"] for e in decoded if e.get("to_state") == "killed"}
    expected = {f"thread-{i}" for i in range(THREADS)} | {f"async-{i}" for i in range(ASYNC_TASKS)}
    assert acks == expected and expected <= killed
    assert any(e["task_id"] == "after-lift" and e.get("to_state") == "succeeded" for e in decoded)


def test_generated_pii_never_reaches_the_broker(broker: EmbeddedBroker, tmp_path: Path) -> None:
    events, control = _topics(broker.bootstrap)
    rec = Recorder(
        bootstrap=broker.bootstrap,
        topic=events,
        control_topic=control,
        spool_dir=tmp_path,
        redact_content=True,
    )
    placed: list[str] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=pii.json_with_pii())
    def record(case: tuple[object, str]) -> None:
        value, secret = case
        placed.append(secret)
        with rec.task("t", entry={"v": value}) as task:
            with task.tool("lookup", args={"q": value}) as span:
                span.result(value)
            with task.llm_call(model="m", messages=[{"role": "user", "content": value}]) as call:
                call.respond(str(value))
            task.agent_message(sender="a", recipient="b", contract="c", version="1", payload=value)

    record()
    assert rec.close().complete
    written = b"\n".join(_raw(broker.bootstrap, events))
    assert len(placed) >= 20 and written
    leaked = [s for s in placed if s.encode() in written]
    assert leaked == []
