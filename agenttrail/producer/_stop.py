"""Ready-made ``on_stop`` hooks for integrations."""

from __future__ import annotations

import asyncio

from agenttrail.producer._limits import TaskStopped
from agenttrail.producer._task import StopHook, Task


def cancel_on_stop(target: asyncio.Task[object] | None = None) -> StopHook:
    """An ``on_stop`` hook that cancels ``target`` (the current asyncio task by default).

    The cancellation is scheduled on the task's own loop, so the hook may fire on any
    thread. The cancelled code sees ``asyncio.CancelledError`` at its next ``await``
    with the stop's message.

    Raises:
        RuntimeError: no target given and no asyncio task is running.

    Example:
        >>> async def run(rec):                                      # doctest: +SKIP
        ...     with rec.task("research", on_stop=cancel_on_stop()) as task:
        ...         await agent.ainvoke(...)
    """
    task = target if target is not None else asyncio.current_task()
    if task is None:
        raise RuntimeError(
            "cancel_on_stop() needs an asyncio task: call it inside a coroutine, or pass one."
        )
    loop = task.get_loop()

    def cancel(stopped: Task, error: TaskStopped) -> None:
        loop.call_soon_threadsafe(task.cancel, str(error))

    return cancel
