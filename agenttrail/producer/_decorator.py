"""``@tool``: turn a function into a recorded tool."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, TypeVar, cast

from agenttrail.producer._context import current_task, live_tasks

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("agenttrail.producer")
_warned: set[str] = set()


def tool(
    name: str | None = None,
    *,
    side_effect: str = "read",
    tool_version: str | None = None,
) -> Callable[[F], F]:
    """Record every call of the decorated function as a tool span of the current task.

    Called inside ``with recorder.task(...)`` (also in asyncio tasks and
    ``asyncio.to_thread`` started from it), each call records a span with the bound
    arguments, the result and the latency; an exception marks the span failed and
    propagates. Generator functions (sync or async, e.g. streaming) are recorded over
    the whole iteration, with the yielded items as result. Called outside any task,
    the function just runs — with a one-time warning when tasks are running
    elsewhere, since that usually means a thread pool lost the context: wrap the
    callable with :func:`agenttrail.producer.bind`.

    Example:
        >>> @tool("create_invoice", side_effect="write")
        ... def create_invoice(order_id: str) -> dict:
        ...     return {"invoice_id": "inv_1"}
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        tool_name = name or fn.__name__

        def bound_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            try:
                return dict(signature.bind_partial(*args, **kwargs).arguments)
            except TypeError:
                return {"args": list(args), "kwargs": kwargs}

        def task_or_warn() -> Any:
            task = current_task.get()
            if task is None and live_tasks and tool_name not in _warned:
                _warned.add(tool_name)
                log.warning(
                    "agenttrail: @tool %s ran outside any task's context while tasks are "
                    "running, so it is not recorded; a thread pool or run_in_executor does "
                    "not carry context: submit agenttrail.producer.bind(fn) instead of fn.",
                    tool_name,
                )
            return task

        def span_of(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return task.tool(
                tool_name,
                bound_args(args, kwargs),
                side_effect=side_effect,
                tool_version=tool_version,
            )

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def async_gen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                task = task_or_warn()
                if task is None:
                    async for item in fn(*args, **kwargs):
                        yield item
                    return
                with span_of(task, args, kwargs) as span:
                    items = []
                    async for item in fn(*args, **kwargs):
                        items.append(item)
                        yield item
                    span.result(items)

            return cast(F, async_gen_wrapper)

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                task = task_or_warn()
                if task is None:
                    returned = yield from fn(*args, **kwargs)
                    return returned
                with span_of(task, args, kwargs) as span:
                    items: list[Any] = []
                    for item in fn(*args, **kwargs):
                        items.append(item)
                        yield item
                    span.result(items)
                return None

            return cast(F, gen_wrapper)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                task = task_or_warn()
                if task is None:
                    return await fn(*args, **kwargs)
                with span_of(task, args, kwargs) as span:
                    result = await fn(*args, **kwargs)
                    span.result(result)
                    return result

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            task = task_or_warn()
            if task is None:
                return fn(*args, **kwargs)
            with span_of(task, args, kwargs) as span:
                result = fn(*args, **kwargs)
                span.result(result)
                return result

        return cast(F, wrapper)

    return decorate
