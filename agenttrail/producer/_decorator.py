"""``@tool``: turn a function into a recorded tool."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from agenttrail.producer._task import current_task

F = TypeVar("F", bound=Callable[..., Any])


def tool(
    name: str | None = None,
    *,
    side_effect: str = "read",
    tool_version: str | None = None,
) -> Callable[[F], F]:
    """Record every call of the decorated function as a tool span of the current task.

    Called inside ``with recorder.task(...)``, each call records a span with the bound
    arguments, the result and the latency; an exception marks the span failed and
    propagates. Called outside any task, the function just runs.

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

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                task = current_task.get()
                if task is None:
                    return await fn(*args, **kwargs)
                with task.tool(
                    tool_name,
                    bound_args(args, kwargs),
                    side_effect=side_effect,
                    tool_version=tool_version,
                ) as span:
                    result = await fn(*args, **kwargs)
                    span.result(result)
                    return result

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            task = current_task.get()
            if task is None:
                return fn(*args, **kwargs)
            with task.tool(
                tool_name,
                bound_args(args, kwargs),
                side_effect=side_effect,
                tool_version=tool_version,
            ) as span:
                result = fn(*args, **kwargs)
                span.result(result)
                return result

        return cast(F, wrapper)

    return decorate
