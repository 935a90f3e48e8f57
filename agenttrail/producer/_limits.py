"""Hard limits of a task: tokens, steps, wall-clock, spend. Hard stops, not warnings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Per-task hard limits; ``None`` means unlimited.

    A limit is checked at every SDK call of the task and when an LLM call ends (tokens,
    spend). When one is crossed the task stops at once: a ``limit_exceeded`` guard event
    and a ``limit_exceeded`` transition are recorded (once), the ``on_stop`` hooks run,
    and this and every later call of the task raises :class:`LimitExceeded`. Limits bind
    whether or not the recorder can record.

    Attributes:
        max_tokens: input plus output tokens over all LLM calls of the task.
        max_steps: agent-loop steps (LLM calls).
        max_wall_clock_s: seconds since the task started.
        max_spend_usd: summed ``cost_usd`` of the task's LLM calls.
    """

    max_tokens: int | None = None
    max_steps: int | None = None
    max_wall_clock_s: float | None = None
    max_spend_usd: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_steps", "max_wall_clock_s", "max_spend_usd"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Limits.{name} must be positive or None, got {value!r}.")


class TaskStopped(BaseException):
    """The task is stopped (a hard limit crossed, a kill); every later SDK call of it raises.

    Derives from ``BaseException``, like ``asyncio.CancelledError``: a framework's
    ``except Exception`` around a callback cannot swallow a hard stop. The task records
    its terminal state once, at the stop; each later call raises a fresh copy.

    Attributes:
        task_id: the task.
        state: the terminal state recorded (``limit_exceeded``, ``killed``).
    """

    state: str = "killed"

    def __init__(self, task_id: str, message: str):
        self.task_id = task_id
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_id, str(self)))

    def again(self) -> TaskStopped:
        """A fresh copy to raise from a later call (no traceback carried over)."""
        cls, args = self.__reduce__()[:2]
        copy: TaskStopped = cls(*args)
        return copy


class LimitExceeded(TaskStopped):
    """A task crossed one of its hard limits; the task is over.

    Attributes:
        task_id: the task.
        limit: ``tokens``, ``steps``, ``wall_clock`` or ``spend``.
        limit_value: the configured limit.
        observed: the value that crossed it.
    """

    state = "limit_exceeded"

    def __init__(self, task_id: str, limit: str, limit_value: float, observed: float):
        self.limit = limit
        self.limit_value = limit_value
        self.observed = observed
        super().__init__(
            task_id,
            f"Task {task_id} stopped: {limit} limit {limit_value:g} reached "
            f"(observed {observed:g}). Raise the limit in Limits(...) if this task "
            "legitimately needs more.",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_id, self.limit, self.limit_value, self.observed))
