"""The ``anthropic`` client, recorded: every Messages API call becomes an LLM call of the task.

``instrument(client)`` wraps ``client.messages.create``, ``.parse`` and ``.stream`` of
one ``Anthropic`` or ``AsyncAnthropic`` client (nothing global is patched). Inside
``with rec.task(...)`` each call is recorded with the messages as sent (the ``system``
prompt first, as a system message), the parameters, the model version, the answer
text, the ``tool_use`` blocks (their ids), tokens (``cache_read_input_tokens`` as
cached; input counts the cached and cache-creation tokens too), the stop reason and,
for ``stream=True`` and the ``stream(...)`` helper (however its stream is read), the
time to first token. Outside a task the client behaves exactly as before.

Before the request is sent the SDK checks the task: a stopped task raises
:class:`~agenttrail.producer.TaskStopped` and the request is never made.
:func:`run_tool_use` runs one ``tool_use`` block as a tool span with its ``tool_call_id``.
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
    wrap_stream_helper,
)
from agenttrail.producer import LlmCall, current_task

__all__ = ["instrument", "run_tool_use"]

C = TypeVar("C")
_REQUEST_KEYS = ("model", "messages", "system", "stream", "tools")


def instrument(client: C) -> C:
    """Record the Messages API calls of ``client`` (``Anthropic`` or ``AsyncAnthropic``).

    Idempotent: instrumenting a client twice wraps it once.
    """
    messages: Any = client.messages  # type: ignore[attr-defined]
    for method in ("create", "parse"):
        wrap_create(messages, client, _open_call, _respond, _Accumulator, method)
    wrap_stream_helper(
        messages, _open_call, _respond, "current_message_snapshot", "content_block_delta"
    )
    return client


def _open_call(kwargs: Mapping[str, Any]) -> LlmCall | None:
    task = current_task.get()
    if task is None:
        return None
    history = list(kwargs.get("messages") or [])
    system = kwargs.get("system")
    system_text: str | None = None
    if system is not None:
        history.insert(0, {"role": "system", "content": system})
        system_text = system if isinstance(system, str) else json.dumps(system)
    return task.start_llm_call(
        str(kwargs.get("model")),
        history,
        provider="anthropic",
        params=request_params(kwargs, _REQUEST_KEYS),
        system_prompt=system_text,
    )


def _tokens(usage: Any) -> tuple[int, int, int]:
    cached = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    created = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    fresh = int(getattr(usage, "input_tokens", 0) or 0)
    return fresh + cached + created, int(getattr(usage, "output_tokens", 0) or 0), cached


def _respond(call: LlmCall, response: Any, *, ttft_ms: float | None = None) -> None:
    texts = [b.text for b in response.content if b.type == "text"]
    uses = [
        {"id": b.id, "name": b.name, "arguments": b.input}
        for b in response.content
        if b.type == "tool_use"
    ]
    tokens_in, tokens_out, cached = _tokens(response.usage)
    call.respond(
        "".join(texts) if texts else None,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_tokens=cached,
        finish_reason=response.stop_reason,
        tool_calls=uses or None,
        raw=response.model_dump(),
        model_version=response.model,
        ttft_ms=ttft_ms,
    )


class _Accumulator(StreamAccumulator):
    """Rebuilds a streamed message from its server-sent events."""

    def __init__(self, call: LlmCall, t0: float):
        super().__init__(call, t0)
        self.text: list[str] = []
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.output_tokens = 0
        self.stop: str | None = None
        self.model: str | None = None

    def add(self, event: Any) -> None:
        kind = event.type
        if kind == "message_start":
            self.usage = event.message.usage
            self.model = event.message.model
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.blocks[event.index] = {"id": block.id, "name": block.name, "json": ""}
        elif kind == "content_block_delta":
            self.first_token()
            delta = event.delta
            if delta.type == "text_delta":
                self.text.append(delta.text)
            elif delta.type == "input_json_delta" and event.index in self.blocks:
                self.blocks[event.index]["json"] += delta.partial_json
        elif kind == "message_delta":
            self.stop = event.delta.stop_reason or self.stop
            self.output_tokens = int(getattr(event.usage, "output_tokens", 0) or 0)

    def respond(self) -> None:
        tokens_in, _, cached = _tokens(self.usage)
        uses = [
            {"id": b["id"], "name": b["name"], "arguments": json.loads(b["json"] or "{}")}
            for _, b in sorted(self.blocks.items())
        ]
        self.call.respond(
            "".join(self.text) if self.text else None,
            input_tokens=tokens_in,
            output_tokens=self.output_tokens,
            cached_tokens=cached,
            finish_reason=self.stop,
            tool_calls=uses or None,
            model_version=self.model,
            ttft_ms=self.ttft_ms,
        )


def run_tool_use(
    block: Any, tools: Mapping[str, Callable[..., Any]], *, side_effect: str = "read"
) -> Any:
    """Run one ``tool_use`` block as a tool span with its ``tool_call_id``; returns the result.

    Raises:
        KeyError: the model asked for a tool not in ``tools`` (recorded as a failed span).
        TaskStopped: the task is stopped; the tool does not run.
    """
    return run_tool(block.name, dict(block.input or {}), block.id, tools, side_effect)
