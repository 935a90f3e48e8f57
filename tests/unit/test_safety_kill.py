"""The kill switch inside the SDK, on an in-memory control bus: thread and asyncio tasks stop
and acknowledge, a killed scope refuses new tasks until lifted, the stop cannot be
swallowed, and kills bind with recording disabled."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from agenttrail.producer import Recorder, TaskKilled, cancel_on_stop
from agenttrail.producer._control import Scope, new_command
from agenttrail.producer._control_channel import InMemoryControlBus
from agenttrail.producer.testing import InMemoryExporter
from tests.deadline import wait_until


def _rec(tmp_path: Path, bus: InMemoryControlBus, **kw: Any) -> tuple[Recorder, InMemoryExporter]:
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path / "spool", control=bus.channel(), **kw)
    return rec, exporter


def _kill(bus: InMemoryControlBus, kind: str = "kill", **scope: str) -> str:
    command = new_command(kind, Scope(**scope), issued_by="ops@test", reason="runaway")  # type: ignore[arg-type]
    bus.send(command)
    return command.command_id


def test_thread_tasks_in_scope_stop_at_their_next_call_and_acknowledge(tmp_path: Path) -> None:
    bus = InMemoryControlBus()
    rec, exporter = _rec(tmp_path, bus)
    started = threading.Barrier(9)
    outcomes: dict[str, str] = {}

    def agent(i: int) -> None:
        kind = "refund" if i % 2 else "invoice"
        try:
            with rec.task(kind, task_id=f"t{i}") as task:
                started.wait(120)
                while True:
                    with task.tool("step"):
                        pass
                    if kind == "invoice" and task.tool_calls >= 50:
                        break
            outcomes[f"t{i}"] = "done"
        except TaskKilled:
            outcomes[f"t{i}"] = "killed"

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    started.wait(120)
    command_id = _kill(bus, task_type="refund")
    for t in threads:
        t.join(180)
    rec.close()
    assert outcomes == {f"t{i}": "killed" if i % 2 else "done" for i in range(8)}
    (receipt,) = bus.of_type("receipt")
    assert sorted(receipt.tasks) == ["t1", "t3", "t5", "t7"]
    assert sorted(a.task_id or "" for a in bus.of_type("ack")) == ["t1", "t3", "t5", "t7"]
    for i in (1, 3, 5, 7):
        events = exporter.events_of(f"t{i}")
        kinds = [
            e.get("kind") or e.get("to_state") for e in events if e["event_type"] != "tool_span"
        ]
        assert kinds[-3:] == ["kill_requested", "killed", "kill_acknowledged"], kinds
        assert events[-1]["action"] == command_id and events[-1]["decided_by"] == "ops@test"


def test_asyncio_tasks_are_cancelled_at_once_through_on_stop(tmp_path: Path) -> None:
    bus = InMemoryControlBus()
    rec, _ = _rec(tmp_path, bus)

    async def agent(i: int, ready: asyncio.Event) -> str:
        try:
            with rec.task("research", task_id=f"a{i}", on_stop=cancel_on_stop()):
                ready.set()
                await asyncio.sleep(3600)  # a long LLM call: no SDK call to notice the kill
        except asyncio.CancelledError:
            return "cancelled"
        return "ran out"

    async def main() -> list[str]:
        ready = [asyncio.Event() for _ in range(20)]
        tasks = [asyncio.create_task(agent(i, ready[i])) for i in range(20)]
        for r in ready:
            await r.wait()
        await asyncio.to_thread(_kill, bus)  # the control listener runs on its own thread
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)

    assert asyncio.run(main()) == ["cancelled"] * 20
    rec.close()
    assert len(bus.of_type("ack")) == 20


def test_a_killed_scope_refuses_new_tasks_until_lifted_also_in_a_new_recorder(
    tmp_path: Path,
) -> None:
    bus = InMemoryControlBus()
    rec, exporter = _rec(tmp_path, bus)
    _kill(bus, tenant="default")
    with pytest.raises(TaskKilled, match="refused"):
        with rec.task("t", task_id="refused-1"):
            pytest.fail("a task in a killed scope ran")
    later, _ = _rec(tmp_path / "later", bus)  # started after the kill
    with pytest.raises(TaskKilled):
        with later.task("t"):
            pytest.fail("a task in a killed scope ran in a new recorder")
    _kill(bus, "lift", tenant="other")  # lifting another scope changes nothing
    with pytest.raises(TaskKilled):
        rec.task("t").start()
    _kill(bus, "lift", tenant="default")
    for r in (rec, later):
        with r.task("t") as task:
            with task.tool("works"):
                pass
    rec.close()
    later.close()
    kinds = [e.get("kind") or e.get("to_state") for e in exporter.events_of("refused-1")]
    assert kinds == ["started", "kill_requested", "killed"]


def test_kills_bind_with_recording_disabled_and_cannot_be_swallowed(tmp_path: Path) -> None:
    bus = InMemoryControlBus()
    rec = Recorder(enabled=False, control=bus.channel())
    caught = 0
    with pytest.raises(TaskKilled):
        with rec.task("t") as task:
            _kill(bus)
            for _ in range(3):
                try:
                    with task.tool("x"):
                        pass
                except BaseException:  # a framework that swallows everything
                    caught += 1
            task.transition("running")  # still raises: the task is over
    assert caught == 3
    wait_until(lambda: bus.of_type("ack"), what="the acknowledgement")
    rec.close()


def test_a_task_that_meets_its_kill_while_the_stop_is_being_recorded_ends_killed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill switch's thread marks the task stopped, then records kill_requested and
    the terminal state. An agent thread that meets the stop in between (its next SDK
    call raises, its ``with`` block ends) must not record a second terminal state
    (``failed``) nor acknowledge before the stop is recorded."""
    from agenttrail.events import GuardKind
    from agenttrail.producer._task import Task

    bus = InMemoryControlBus()
    rec, exporter = _rec(tmp_path, bus)
    agent_leaving = threading.Event()
    original_guard, original_ack = Task.guard, Task.acknowledge_kill

    def slow_guard(self: Task, kind: str, **fields: Any) -> None:
        if kind == GuardKind.KILL_REQUESTED:
            agent_leaving.wait(30)  # hold the stop half-recorded until the agent leaves
        original_guard(self, kind, **fields)

    def ack(self: Task) -> None:  # the agent met the stop (its call raises, or it leaves)
        agent_leaving.set()
        original_ack(self)

    monkeypatch.setattr(Task, "guard", slow_guard)
    monkeypatch.setattr(Task, "acknowledge_kill", ack)
    outcome: list[str] = []

    def agent() -> None:
        try:
            with rec.task("refund", task_id="t1") as task:
                while True:
                    with task.tool("step"):
                        pass
        except TaskKilled:
            outcome.append("killed")

    thread = threading.Thread(target=agent)
    thread.start()
    wait_until(lambda: exporter.events_of("t1"), timeout=60)
    _kill(bus, task_type="refund")
    thread.join(120)
    rec.close()
    assert outcome == ["killed"]
    events = exporter.events_of("t1")
    kinds = [e.get("kind") or e.get("to_state") for e in events if e["event_type"] != "tool_span"]
    assert kinds == ["started", "kill_requested", "killed", "kill_acknowledged"], kinds
