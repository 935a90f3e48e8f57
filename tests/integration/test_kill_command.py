"""``agenttrail kill`` against the real embedded broker and real Kafka listeners.

Each test uses a control topic of its own (the kill state is a fold over the whole topic,
so a shared topic would leak one test's kills into the next).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from agenttrail.cli import main
from agenttrail.embedded import EmbeddedBroker
from agenttrail.producer._control import CommandVerifier, ControlMessage
from agenttrail.producer._control_channel import KafkaControlChannel
from agenttrail.producer._killswitch import KillSwitch
from tests.deadline import wait_until


@pytest.fixture
def control_topic(broker: EmbeddedBroker) -> str:
    name = f"control-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
        admin.wait_for_topics([name], timeout_ms=30_000)
    finally:
        admin.close()
    return name


@dataclass
class StubTask:
    """A running task as the switch sees it; acknowledges as soon as it is told to stop."""

    task_id: str
    task_type: str
    switch: KillSwitch | None = None
    tenant: str = "acme"
    agent: str = "agent"
    killed: list[str] = field(default_factory=list)

    def kill(self, command: ControlMessage, heard_at: float) -> None:
        self.killed.append(command.command_id)
        assert self.switch is not None
        self.switch.acknowledge(self.task_id, command, 0.1)


def _switch(broker: EmbeddedBroker, topic: str, **kw: Any) -> KillSwitch:
    switch = KillSwitch(KafkaControlChannel(broker.bootstrap, topic), CommandVerifier(**kw), "p")
    assert switch.channel is not None and switch.channel.wait_caught_up(30.0)
    return switch


def _kill(broker: EmbeddedBroker, topic: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        main, ["kill", *args, "--bootstrap", broker.bootstrap, "--topic", topic, "--json"]
    )
    return result.exit_code, json.loads(result.output.strip().splitlines()[-1])


def test_kill_stops_the_tasks_in_scope_and_reports_their_acknowledgements(
    broker: EmbeddedBroker, control_topic: str
) -> None:
    switch = _switch(broker, control_topic)
    try:
        tasks = [StubTask(f"t{i}", "refund" if i % 2 else "invoice") for i in range(6)]
        for t in tasks:
            t.switch = switch
            assert switch.admit(t) is None
        code, out = _kill(
            broker, control_topic, "--task-type", "refund", "--reason", "loop", "--wait", "30"
        )
        assert code == 0, out
        assert sorted(s["task_id"] for s in out["stopped"]) == ["t1", "t3", "t5"]
        assert out["not_stopped"] == [] and out["recorders"] == 1 and out["reason"] == "loop"
        assert [t.task_id for t in tasks if t.killed] == ["t1", "t3", "t5"]
    finally:
        switch.close()


def test_a_task_that_does_not_acknowledge_makes_the_command_exit_1(
    broker: EmbeddedBroker, control_topic: str
) -> None:
    switch = _switch(broker, control_topic)
    try:
        silent = StubTask("stuck", "x")
        silent.kill = lambda command, heard_at: None  # type: ignore[method-assign]
        switch.admit(silent)
        code, out = _kill(broker, control_topic, "--all", "--wait", "2")
        assert code == 1 and out["not_stopped"] == ["stuck"]
    finally:
        switch.close()


def test_a_killed_scope_refuses_new_tasks_in_a_recorder_started_later_until_lifted(
    broker: EmbeddedBroker, control_topic: str
) -> None:
    code, _ = _kill(broker, control_topic, "--tenant", "acme", "--wait", "0")
    assert code == 0
    late = _switch(broker, control_topic)
    try:
        assert late.admit(StubTask("new", "x")) is not None
        assert late.admit(StubTask("other", "x", tenant="globex")) is None
        code, out = _kill(broker, control_topic, "--lift", "--tenant", "acme")
        assert code == 0 and out["type"] == "lift"
        wait_until(lambda: late.admit(StubTask("after", "x")) is None, what="the lift to be heard")
    finally:
        late.close()


def test_with_a_public_key_only_commands_signed_by_its_private_key_stop_tasks(
    broker: EmbeddedBroker, control_topic: str, tmp_path: Any
) -> None:
    key = tmp_path / "ops.pem"
    result = CliRunner().invoke(main, ["kill", "--new-key", str(key), "--json"])
    public = json.loads(result.output)["public_key"]
    switch = _switch(broker, control_topic, public_keys=[public])
    try:
        task = StubTask("t", "x", switch)
        switch.admit(task)
        code, out = _kill(broker, control_topic, "--all", "--wait", "1.5")
        assert task.killed == [] and out["recorders"] == 0  # unsigned: ignored
        wait_until(lambda: switch.rejected == 1, what="the unsigned command to be rejected")
        code, out = _kill(broker, control_topic, "--all", "--wait", "30", "--signing-key", str(key))
        assert code == 0 and [s["task_id"] for s in out["stopped"]] == ["t"] and out["signed"]
    finally:
        switch.close()


def test_kill_needs_a_scope_and_a_broker() -> None:
    result = CliRunner().invoke(main, ["kill", "--reason", "x", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2 and "Name the scope" in result.output
    result = CliRunner().invoke(
        main, ["kill", "--all", "--task", "t", "--bootstrap", "127.0.0.1:1"]
    )
    assert result.exit_code == 2
