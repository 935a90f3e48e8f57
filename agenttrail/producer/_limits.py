"""Hard limits of a task: tokens, steps, wall-clock, spend. Hard stops, not warnings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-task hard limits; ``None`` means unlimited.

    When a limit is crossed, the next LLM call or tool call of the task raises
    :class:`LimitExceeded` before doing anything, after recording a ``limit_exceeded``
    guard event and a ``limit_exceeded`` transition.

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


class LimitExceeded(RuntimeError):
    """A task crossed one of its hard limits; the task is over.

    Attributes:
        task_id: the task.
        limit: ``tokens``, ``steps``, ``wall_clock`` or ``spend``.
        limit_value: the configured limit.
        observed: the value that crossed it.
    """

    def __init__(self, task_id: str, limit: str, limit_value: float, observed: float):
        self.task_id = task_id
        self.limit = limit
        self.limit_value = limit_value
        self.observed = observed
        super().__init__(
            f"Task {task_id} stopped: {limit} limit {limit_value:g} reached "
            f"(observed {observed:g}). Raise the limit in Limits(...) if this task "
            "legitimately needs more."
        )
