"""Which task and span the running code belongs to, and how that follows the work.

Two context variables carry it: ``current_task`` (set by ``with recorder.task(...)``)
and ``current_span`` (set by the ``with`` form of a span). Python copies context
variables into every asyncio task (``asyncio.gather``, ``TaskGroup``,
``create_task``) and into ``asyncio.to_thread``, so spans and ``@tool`` there find
their task and parent without help. A thread pool (``ThreadPoolExecutor.submit``,
``loop.run_in_executor``) runs the callable in the worker's own context: wrap the
callable with :func:`bind` — the one call needed — to carry the context along.

Leaving a ``with`` block restores the previous value only when the variable still
holds what the block set, instead of resetting a ``Token``: a span closed from another
Context (an async framework's callback, a finalised async generator) never raises
``ValueError: <Token> was created in a different Context``.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from agenttrail.producer._spans import Span
    from agenttrail.producer._task import Task

P = ParamSpec("P")
R = TypeVar("R")

current_task: ContextVar[Task | None] = ContextVar("agenttrail_current_task", default=None)
"""The task whose ``with`` block is running in this context (used by ``@tool``)."""

current_span: ContextVar[Span | None] = ContextVar("agenttrail_current_span", default=None)
"""The innermost span opened with ``with`` in this context; new spans nest under it."""


live_tasks: set[str] = set()
"""Ids of tasks started and not yet ended in this process (for ``@tool``'s warning)."""


def bind(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to the caller's current task and span, to run on another thread.

    Thread pools do not carry context variables into their workers; this does. Each
    call runs in a fresh copy of the context captured here, so one bound callable may
    run on several workers at once.

    Example:
        >>> with rec.task("research") as task:                        # doctest: +SKIP
        ...     futures = [pool.submit(bind(search), q) for q in queries]
        ...     await loop.run_in_executor(None, bind(fetch), url)
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_bound


def enter(var: ContextVar[Any], value: Any) -> Any:
    """Make ``value`` current; return the value it replaces (for :func:`leave`)."""
    previous = var.get()
    var.set(value)
    return previous


def leave(var: ContextVar[Any], value: Any, previous: Any) -> None:
    """Restore ``previous`` if ``var`` still holds ``value`` in this context."""
    if var.get() is value:
        var.set(previous)
