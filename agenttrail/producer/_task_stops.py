"""Hard stops of a Task: limits checked at every call, and the one path every stop takes.

A crossed limit (tokens, steps, spend, wall clock) or a kill stops the task through
:meth:`TaskStops.stop`: the guard event and the terminal state are recorded once, the
``on_stop`` hooks run, and every later span start, transition or message of the task
raises a copy of the stop — a framework that swallows the first raise cannot keep the
task running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from agenttrail.events import GuardKind, LimitName
from agenttrail.producer._limits import LimitExceeded, Limits, TaskStopped
from agenttrail.producer._task_events import TaskEvents

if TYPE_CHECKING:
    from agenttrail.producer._task import Task

log = logging.getLogger("agenttrail.producer")

StopHook = Callable[["Task", TaskStopped], None]
"""Called once when a task is stopped, with the task and the stop (e.g. LimitExceeded).

Runs on the thread that noticed the stop; an integration uses it to cancel the running
asyncio task or thread's work. Exceptions it raises are logged, never propagated.
"""


class TaskStops(TaskEvents):
    """Limits and stops of a task (see the module docstring). Thread-safe."""

    # Set by Task.__init__.
    limits: Limits | None
    tokens: int
    spend_usd: float
    _started_at: float
    _stop_hooks: list[StopHook]
    stopped: TaskStopped | None
    """The stop, once the task is stopped (a crossed limit, a kill)."""
    stop_recorded: threading.Event
    """Set once the stop's guard event and terminal state are submitted."""

    def acknowledge_kill(self) -> None:
        """Acknowledge a kill the task has met (the kill switch's part; see TaskSafety)."""

    def add_usage(self, tokens: int, cost_usd: float | None) -> None:
        """Count an ended LLM call's usage; stops the task at once if a limit is crossed."""
        with self.lock:
            self.tokens += tokens
            if cost_usd is not None:
                self.spend_usd += cost_usd
        lim = self.limits
        if lim is None or self.stopped is not None:
            return
        if lim.max_tokens is not None and self.tokens >= lim.max_tokens:
            self._breach(LimitName.TOKENS, lim.max_tokens, self.tokens)
        elif lim.max_spend_usd is not None and self.spend_usd >= lim.max_spend_usd:
            self._breach(LimitName.SPEND, lim.max_spend_usd, self.spend_usd)

    def check_open(self, new_step: bool = False) -> None:
        """Raise if the task is stopped, or stop it if a limit is crossed now.

        Raises:
            TaskStopped: a fresh copy of the stop, on every call after it.
        """
        if self.stopped is None:
            lim = self.limits
            if lim is None:
                return
            if new_step and lim.max_steps is not None and self.step + 1 > lim.max_steps:
                self._breach(LimitName.STEPS, lim.max_steps, self.step + 1)
            elif lim.max_tokens is not None and self.tokens >= lim.max_tokens:
                self._breach(LimitName.TOKENS, lim.max_tokens, self.tokens)
            elif lim.max_spend_usd is not None and self.spend_usd >= lim.max_spend_usd:
                self._breach(LimitName.SPEND, lim.max_spend_usd, self.spend_usd)
            elif lim.max_wall_clock_s is not None:
                elapsed = time.monotonic() - self._started_at
                if elapsed > lim.max_wall_clock_s:
                    self._breach(LimitName.WALL_CLOCK, lim.max_wall_clock_s, elapsed)
            if self.stopped is None:
                return
        self.acknowledge_kill()
        raise self.stopped.again()

    # Kept for integrations written against the earlier name.
    check_limits = check_open

    def _breach(self, limit: str, value: float, observed: float) -> None:
        error = LimitExceeded(self.task_id, str(limit), value, observed)
        self.stop(
            error,
            guard_kind=GuardKind.LIMIT_EXCEEDED,
            limit_name=str(limit),
            limit_value=float(value),
            observed_value=float(observed),
            decided_by="limits",
            reason=f"{limit} limit {value:g} reached",
        )

    def stop(
        self,
        error: TaskStopped,
        *,
        guard_kind: str,
        reason: str,
        decided_by: str,
        **guard_fields: Any,
    ) -> bool:
        """Stop the task: record the guard event and ``error.state`` once, run the hooks.

        The path every hard stop takes (limits now, the kill switch too). Open spans
        are recorded as abandoned; every later span start, transition or message of the
        task raises a copy of ``error``. Does not raise itself.

        Returns:
            True if this call stopped the task, False if it was already stopped.
        """
        with self.lock:
            if self.stopped is not None:
                return False
            self.stopped = error
        self.guard(
            guard_kind, decision="stop", decided_by=decided_by, detail=str(error), **guard_fields
        )
        self._finish(error.state, reason=reason)
        self.stop_recorded.set()
        for hook in self._stop_hooks:
            try:
                hook(cast("Task", self), error)
            except Exception:
                log.exception("agenttrail: on_stop hook of task %s failed", self.task_id)
        return True
