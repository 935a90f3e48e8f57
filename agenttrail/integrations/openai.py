"""The ``openai`` client, recorded: every chat completion becomes an LLM call of the current task.

``instrument(client)`` wraps ``client.chat.completions.create`` and ``.parse`` of one
``OpenAI`` or ``AsyncOpenAI`` client (nothing global is patched; ``.stream()`` goes
through ``create``). Inside ``with rec.task(...)`` each
call is recorded with the messages as sent, the parameters, the model version the
provider reported, the answer, tokens (cached ones too), finish reason, the tool calls
the model asked for (their ids) and, for streamed calls, the time to first token.
Outside a task the client behaves exactly as before.

Before the request is sent the SDK checks the task: a stopped task (a crossed limit, a
kill) raises :class:`~agenttrail.producer.TaskStopped` and the request is never made.
:func:`run_tool_call` runs one tool call the model asked for as a tool span carrying
its ``tool_call_id``.

Example:
    >>> from openai import OpenAI
    >>> client = instrument(OpenAI())
    >>> with rec.task("support") as task:                            # doctest: +SKIP
    ...     reply = client.chat.completions.create(model="gpt-4.1", messages=msgs, tools=tools)
    ...     for call in reply.choices[0].message.tool_calls or []:
    ...         result = run_tool_call(call, {"get_order": get_order})
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from agenttrail.integrations._client import (
    StreamAccumulator,
    request_params,
    run_tool,
    wrap_create,
)
from agenttrail.producer import LlmCall, current_task

__all__ = ["instrument", "run_tool_call"]

C = TypeVar("C")
_REQUEST_KEYS = ("model", "messages", "stream", "tools", "tool_choice", "stream_options")


def instrument(client: C) -> C:
    """Record the chat completions of ``client`` (``OpenAI`` or ``AsyncOpenAI``); returns it.

    Idempotent: instrumenting a client twice wraps it once.
    """
    completions: Any = client.chat.completions  # type: ignore[attr-defined]
    for method in ("create", "parse"):  # .stream() goes through create
        wrap_create(completions, client, _open_call, _respond, _Accumulator, method)
    return client


def _open_call(kwargs: Mapping[str, Any]) -> LlmCall | None:
    task = current_task.get()
    if task is None:
        return None
    messages = [_plain(m) for m in kwargs.get("messages") or []]
    return task.start_llm_call(
        str(kwargs.get("model")),
        messages,
        provider="openai",
        params=request_params(kwargs, _REQUEST_KEYS),
    )


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


def _usage(usage: Any) -> tuple[int, int, int]:
    if usage is None:
        return 0, 0, 0
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", 0) or 0
    return int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0), int(cached)


def _tool_calls(calls: Any) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    return [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in calls]


def _respond(call: LlmCall, response: Any, *, ttft_ms: float | None = None) -> None:
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else None
    tokens_in, tokens_out, cached = _usage(response.usage)
    call.respond(
        getattr(message, "content", None),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_tokens=cached,
        finish_reason=getattr(choice, "finish_reason", None),
        tool_calls=_tool_calls(getattr(message, "tool_calls", None)),
        raw=response.model_dump(),
        model_version=response.model,
        ttft_ms=ttft_ms,
    )


class _Accumulator(StreamAccumulator):
    """Rebuilds a streamed chat completion from its chunks (text, tool-call deltas, usage)."""

    def __init__(self, call: LlmCall, t0: float):
        super().__init__(call, t0)
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.model: str | None = None
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        self.first_token()
        self.model = chunk.model or self.model
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                self.text.append(delta.content)
            for tc in delta.tool_calls or ():
                slot = self.calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function is not None:
                    slot["name"] = tc.function.name or slot["name"]
                    slot["arguments"] += tc.function.arguments or ""
            if choice.finish_reason:
                self.finish = choice.finish_reason

    def respond(self) -> None:
        tokens_in, tokens_out, cached = _usage(self.usage)
        self.call.respond(
            "".join(self.text) if self.text else None,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cached_tokens=cached,
            finish_reason=self.finish,
            tool_calls=[self.calls[i] for i in sorted(self.calls)] or None,
            model_version=self.model,
            ttft_ms=self.ttft_ms,
        )


def run_tool_call(
    tool_call: Any,
    tools: Mapping[str, Callable[..., Any]],
    *,
    side_effect: str = "read",
) -> Any:
    """Run one tool call the model asked for as a tool span with its ``tool_call_id``.

    The tool is ``tools[name]``, called with the parsed JSON arguments as keywords; its
    return value is recorded as the result and returned. Outside a task it just runs.

    Raises:
        KeyError: the model asked for a tool not in ``tools`` (recorded as a failed,
            undeclared-looking span first).
        TaskStopped: the task is stopped; the tool does not run.
    """
    args = json.loads(tool_call.function.arguments or "{}")
    return run_tool(tool_call.function.name, args, tool_call.id, tools, side_effect)
