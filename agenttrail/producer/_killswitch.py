"""The recorder's kill switch: hears commands, stops the tasks in scope, refuses new ones.

One :class:`KillSwitch` per recorder. It folds every verified command into a
:class:`KillState`; a kill in force stops every running task of the recorder in its
scope (through the task's ``kill``: the stop is recorded, the ``on_stop`` hooks run,
the next SDK call raises :class:`TaskKilled`) and refuses every new task in its scope
until a lift. It sends a receipt naming the tasks it is stopping, and an
acknowledgement per task when the task has stopped.

Safety does not depend on recording: the switch works the same with a disabled
recorder, and a command reaches it whether or not events can be delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from agenttrail.producer._control import (
    CommandVerifier,
    ControlMessage,
    KillState,
)
from agenttrail.producer._control_channel import ControlChannel
from agenttrail.producer._limits import TaskStopped

log = logging.getLogger("agenttrail.producer")


class TaskKilled(TaskStopped):
    """The task was stopped by a kill command (``agenttrail kill``), or refused to start
    because its scope is killed.

    A :class:`TaskStopped` (a ``BaseException``): a framework's ``except Exception``
    cannot swallow it, and every later SDK call of the task raises it again.

    Attributes:
        task_id: the task.
        command_id: the command that stopped it.
        issued_by: who issued the command.
        reason: why, as the operator wrote it.
        scope: the command's scope in words.
        refused: True when the task was refused at its start.
    """

    state = "killed"

    def __init__(self, task_id: str, command: ControlMessage, *, refused: bool = False):
        self.command = command
        self.command_id = command.command_id
        self.issued_by = command.issued_by
        self.reason = command.reason
        self.scope = command.scope.describe()
        self.refused = refused
        what = "refused: its scope is killed" if refused else "killed"
        because = f" because {command.reason!r}" if command.reason else ""
        super().__init__(
            task_id,
            f"Task {task_id} {what} by {command.issued_by or 'an operator'}{because} "
            f"(kill {command.command_id}, scope {self.scope}). Lift it with "
            "`agenttrail kill --lift` and the same scope before starting it again.",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_killed, (self.task_id, self.command.encode(), self.refused))


def _rebuild_killed(task_id: str, command: bytes, refused: bool) -> TaskKilled:
    return TaskKilled(task_id, ControlMessage.decode(command), refused=refused)


class Killable(Protocol):
    """What the switch needs of a running task."""

    task_id: str
    task_type: str

    @property
    def tenant(self) -> str: ...

    @property
    def agent(self) -> str: ...

    def kill(self, command: ControlMessage, heard_at: float) -> None:
        """Stop the task for ``command`` (heard at ``time.monotonic()`` ``heard_at``).

        Called on the switch's thread; must not block for long."""


class KillSwitch:
    """Follows the control channel for one recorder. Thread-safe.

    Args:
        channel: where commands come from and replies go (None: no control topic; the
            switch then only refuses nothing and kills nothing).
        verifier: which commands to act on.
        producer_id: the recorder's id, named in receipts and acknowledgements.
        catch_up_s: how long the first new task waits for the commands already on the
            topic before starting (bounded, so an unreachable broker delays it only
            once; the task is then stopped as soon as a kill for it arrives).
    """

    def __init__(
        self,
        channel: ControlChannel | None,
        verifier: CommandVerifier,
        producer_id: str,
        catch_up_s: float = 5.0,
    ):
        self.channel = channel
        self.verifier = verifier
        self.producer_id = producer_id
        self.catch_up_s = catch_up_s
        self.state = KillState()
        self.rejected = 0
        self._running: dict[str, Killable] = {}
        self._lock = threading.Lock()
        self._caught_up = channel is None
        if channel is not None:
            channel.start(self.on_message)

    # -- the channel's side ----------------------------------------------------------------

    def on_message(self, message: ControlMessage) -> None:
        """Handle one message from the channel (receipts and acks of others are ignored)."""
        if not message.is_command:
            return
        heard_at = time.monotonic()
        if not self.verifier.accepts(message):
            self.rejected += 1
            log.warning(
                "agenttrail: ignored %s command %s from %r: not signed by a configured "
                "control key (AGENTTRAIL_CONTROL_PUBLIC_KEYS)",
                message.type,
                message.command_id,
                message.issued_by,
            )
            return
        with self._lock:
            in_force = self.state.apply(message)
            if not in_force:
                return
            targets = [
                t
                for t in self._running.values()
                if message.scope.matches(
                    task_id=t.task_id, task_type=t.task_type, agent=t.agent, tenant=t.tenant
                )
            ]
        log.warning(
            "agenttrail: kill %s by %s (%s): stopping %d task(s)",
            message.command_id,
            message.issued_by,
            message.scope.describe(),
            len(targets),
        )
        if self.channel is not None:
            self.channel.publish(
                ControlMessage(
                    type="receipt",
                    command_id=message.command_id,
                    producer_id=self.producer_id,
                    tasks=tuple(t.task_id for t in targets),
                )
            )
        for task in targets:
            try:
                task.kill(message, heard_at)
            except Exception:  # one task's failure must not spare the others
                log.exception("agenttrail: stopping task %s failed", task.task_id)

    # -- the tasks' side -------------------------------------------------------------------

    def admit(self, task: Killable) -> ControlMessage | None:
        """Register a starting task; returns the kill in force for it (the task must then
        refuse to start), else None and the task is running."""
        if not self._caught_up and self.channel is not None:
            if not self.channel.wait_caught_up(self.catch_up_s):
                log.warning(
                    "agenttrail: the control topic did not answer within %.1fs; starting "
                    "tasks without knowing earlier kills (a kill still stops them when heard)",
                    self.catch_up_s,
                )
            self._caught_up = True
        with self._lock:
            kill = self.state.kill_for(
                task_id=task.task_id, task_type=task.task_type, agent=task.agent, tenant=task.tenant
            )
            if kill is None:
                self._running[task.task_id] = task
            return kill

    def leave(self, task_id: str) -> None:
        """The task ended; it is no longer a target."""
        with self._lock:
            self._running.pop(task_id, None)

    def acknowledge(self, task_id: str, command: ControlMessage, latency_ms: float) -> None:
        """Tell the operator that ``task_id`` stopped for ``command``."""
        if self.channel is not None:
            self.channel.publish(
                ControlMessage(
                    type="ack",
                    command_id=command.command_id,
                    producer_id=self.producer_id,
                    task_id=task_id,
                    latency_ms=round(latency_ms, 3),
                )
            )

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
