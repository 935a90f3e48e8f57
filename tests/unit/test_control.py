"""The control protocol: message round-trips, scopes, the kill/lift fold, Ed25519 signing,
and the kill switch's decisions, all without a broker."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.producer._control import (
    CommandVerifier,
    ControlMessage,
    ControlMessageError,
    KillState,
    Scope,
    new_command,
    new_signing_key,
    sign,
)
from agenttrail.producer._control_channel import InMemoryControlBus
from agenttrail.producer._killswitch import KillSwitch


def _kill(scope: Scope, at: int, kind: str = "kill") -> ControlMessage:
    return dataclasses.replace(
        new_command(kind, scope, issued_by="t", reason=None),  # type: ignore[arg-type]
        issued_at_us=at,
    )


names = st.text("abc", min_size=1, max_size=3)
scopes = st.builds(
    Scope, st.none() | names, st.none() | names, st.none() | names, st.none() | names
)


@given(scopes, st.sampled_from(["kill", "lift"]), st.text(max_size=20) | st.none())
def test_commands_round_trip(scope: Scope, kind: str, reason: str | None) -> None:
    m = new_command(kind, scope, issued_by="ops@h", reason=reason)  # type: ignore[arg-type]
    assert ControlMessage.decode(m.encode()) == m


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b'{"v": 2, "type": "kill", "command_id": "x"}',
        b'{"v": 1, "type": "boom", "command_id": "x"}',
        b'{"v": 1, "type": "kill", "command_id": "x", "issued_at_us": "soon"}',
        b'{"v": 1, "type": "kill", "command_id": "x", "issued_at_us": 1, "scope": {"host": "a"}}',
    ],
)
def test_malformed_messages_are_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(ControlMessageError):
        ControlMessage.decode(data)


def test_scope_matching_needs_every_named_field() -> None:
    s = Scope(task_type="refund", tenant="acme")
    assert s.matches(task_id="t", task_type="refund", agent="a", tenant="acme")
    assert not s.matches(task_id="t", task_type="refund", agent="a", tenant="other")
    assert Scope().is_all and Scope().matches(task_id="t", task_type="x", agent="a", tenant="b")


def test_a_kill_holds_until_a_later_lift_of_its_scope_in_any_order() -> None:
    refund = Scope(task_type="refund")
    kill, lift, old_kill = _kill(refund, 10), _kill(refund, 20, "lift"), _kill(refund, 5)
    for order in ([kill, lift, old_kill], [lift, old_kill, kill], [old_kill, kill, lift]):
        state = KillState()
        for m in order:
            state.apply(m)
        assert state.active() == []  # a lift after both kills lifts both
    state = KillState()
    state.apply(lift)
    assert state.apply(_kill(refund, 30))  # a newer kill is in force again
    assert state.kill_for(task_id="t", task_type="refund", agent="a", tenant="x") is not None
    assert state.kill_for(task_id="t", task_type="other", agent="a", tenant="x") is None


def test_lifting_another_scope_does_not_lift_a_kill_but_lifting_all_does() -> None:
    state = KillState()
    state.apply(_kill(Scope(task_type="refund"), 10))
    state.apply(_kill(Scope(task_type="other"), 20, "lift"))
    assert len(state.active()) == 1
    state.apply(_kill(Scope(), 30, "lift"))
    assert state.active() == []


def test_signed_commands_verify_and_tampering_is_refused() -> None:
    pem, public = new_signing_key()
    _, other_public = new_signing_key()
    signed = sign(new_command("kill", Scope(), issued_by="ops", reason="r"), pem)
    assert CommandVerifier([public]).accepts(signed)
    assert not CommandVerifier([other_public]).accepts(signed)
    assert not CommandVerifier([public]).accepts(
        dataclasses.replace(signed, scope=Scope(tenant="x"))
    )
    assert not CommandVerifier([public]).accepts(dataclasses.replace(signed, signature=None))
    assert CommandVerifier().accepts(dataclasses.replace(signed, signature=None))
    with pytest.raises(ValueError, match="32 bytes"):
        CommandVerifier(["bm90IGEga2V5"])


@dataclass
class FakeTask:
    task_id: str
    task_type: str
    tenant: str = "acme"
    agent: str = "a"
    kills: list[str] = field(default_factory=list)

    def kill(self, command: ControlMessage, heard_at: float) -> None:
        self.kills.append(command.command_id)


def test_the_switch_stops_tasks_in_scope_refuses_new_ones_and_sends_a_receipt() -> None:
    bus = InMemoryControlBus()
    switch = KillSwitch(bus.channel(), CommandVerifier(), producer_id="p1")
    a, b = FakeTask("t1", "refund"), FakeTask("t2", "invoice")
    assert switch.admit(a) is None and switch.admit(b) is None
    kill = new_command("kill", Scope(task_type="refund"), issued_by="ops", reason="loop")
    bus.send(kill)
    assert a.kills == [kill.command_id] and b.kills == []
    assert [m.tasks for m in bus.of_type("receipt")] == [("t1",)]
    assert switch.admit(FakeTask("t3", "refund")) == kill
    bus.send(new_command("lift", Scope(task_type="refund"), issued_by="ops", reason=None))
    assert switch.admit(FakeTask("t4", "refund")) is None


def test_a_switch_started_later_knows_the_kills_already_on_the_topic() -> None:
    bus = InMemoryControlBus()
    bus.send(new_command("kill", Scope(), issued_by="ops", reason=None))
    switch = KillSwitch(bus.channel(), CommandVerifier(), producer_id="p2")
    assert switch.admit(FakeTask("t", "x")) is not None


def test_with_a_key_configured_unsigned_and_forged_commands_are_ignored() -> None:
    pem, public = new_signing_key()
    forger, _ = new_signing_key()
    bus = InMemoryControlBus()
    switch = KillSwitch(bus.channel(), CommandVerifier([public]), producer_id="p")
    task = FakeTask("t", "x")
    switch.admit(task)
    bus.send(new_command("kill", Scope(), issued_by="intruder", reason=None))
    bus.send(sign(new_command("kill", Scope(), issued_by="intruder", reason=None), forger))
    assert task.kills == [] and switch.rejected == 2
    bus.send(sign(new_command("kill", Scope(), issued_by="ops", reason=None), pem))
    assert len(task.kills) == 1
