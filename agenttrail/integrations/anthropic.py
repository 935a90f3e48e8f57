"""The ``anthropic`` client, recorded: every Messages API call becomes an LLM call of the task.

``instrument(client)`` wraps ``client.messages.create`` of one ``Anthropic`` or
``AsyncAnthropic`` client (nothing global is patched). Inside ``with rec.task(...)``
each call is recorded with the messages as sent (the ``system`` prompt first, as a
system message), the parameters, the model version, the answer text, the ``tool_use``
blocks (their ids), tokens (``cache_read_input_tokens`` as cached; input counts the
cached and cache-creation tokens too), the stop reason and, for ``stream=True``, the
time to first token. Outside a task the client behaves exactly as before.

Before the request is sent the SDK checks the task: a stopped task raises
:class:`~agenttrail.producer.TaskStopped` and the request is never made.
:func:`run_tool_use` runs one ``tool_use`` block as a tool span with its ``tool_call_id``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

from agenttrail.producer import LlmCall, current_task

C = TypeVar("C")
_REQUEST_KEYS = ("model", "messages", "system", "stream", "tools")


def instrument(client: C) -> C:
    """Record the Messages API calls of ``client`` (``Anthropic`` or ``AsyncAnthropic``)."""
    messages: Any = client.messages  # type: ignore[attr-defined]
    if getattr(messages.create, "__agenttrail__", False):
        return client
    original = messages.create
    is_async = type(client).__name__.startswith("Async")
    wrapper = _async_create(original) if is_async else _sync_create(original)
    wrapper.__agenttrail__ = True  # type: ignore[attr-defined]
    messages.create = wrapper
    return client


def _open_call(kwargs: Mapping[str, Any]) -> LlmCall | None:
    task = current_task.get()
    if task is None:
        return None
    params = {k: v for k, v in kwargs.items() if k not in _REQUEST_KEYS and v is not None}
    if kwargs.get("tools"):
        params["tools"] = kwargs["tools"]
    if kwargs.get("stream"):
        params["stream"] = True
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
        params=params,
        system_prompt=system_text,
    )


def _sync_create(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(*args: Any, **kwargs: Any) -> Any:
        call = _open_call(kwargs)
        if call is None:
            return original(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            response = original(*args, **kwargs)
        except BaseException as exc:
            call.end(error=exc)
            raise
        if kwargs.get("stream"):
            return _SyncStream(response, _Accumulator(call, t0))
        _respond(call, response)
        call.end()
        return response

    return create


def _async_create(original: Callable[..., Any]) -> Callable[..., Any]:
    async def create(*args: Any, **kwargs: Any) -> Any:
        call = _open_call(kwargs)
        if call is None:
            return await original(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            response = await original(*args, **kwargs)
        except BaseException as exc:
            call.end(error=exc)
            raise
        if kwargs.get("stream"):
            return _AsyncStream(response, _Accumulator(call, t0))
        _respond(call, response)
        call.end()
        return response

    return create


def _tokens(usage: Any) -> tuple[int, int, int]:
    cached = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    created = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    fresh = int(getattr(usage, "input_tokens", 0) or 0)
    return fresh + cached + created, int(getattr(usage, "output_tokens", 0) or 0), cached


def _respond(call: LlmCall, response: Any) -> None:
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
    )


class _Accumulator:
    """Rebuilds a streamed message from its server-sent events."""

    def __init__(self, call: LlmCall, t0: float):
        self.call = call
        self.t0 = t0
        self.ttft_ms: float | None = None
        self.text: list[str] = []
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.output_tokens = 0
        self.stop: str | None = None
        self.model: str | None = None
        self.done = False

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
            if self.ttft_ms is None:
                self.ttft_ms = (time.perf_counter() - self.t0) * 1000.0
            delta = event.delta
            if delta.type == "text_delta":
                self.text.append(delta.text)
            elif delta.type == "input_json_delta" and event.index in self.blocks:
                self.blocks[event.index]["json"] += delta.partial_json
        elif kind == "message_delta":
            self.stop = event.delta.stop_reason or self.stop
            self.output_tokens = int(getattr(event.usage, "output_tokens", 0) or 0)

    def finish_call(self, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        if error is not None:
            self.call.end(error=error)
            return
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
        self.call.end()


class _SyncStream:
    def __init__(self, stream: Any, acc: _Accumulator):
        self._stream = stream
        self._acc = acc

    def __iter__(self) -> Iterator[Any]:
        try:
            for event in self._stream:
                self._acc.add(event)
                yield event
        except BaseException as exc:
            self._acc.finish_call(exc)
            raise
        self._acc.finish_call()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _AsyncStream:
    def __init__(self, stream: Any, acc: _Accumulator):
        self._stream = stream
        self._acc = acc

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            async for event in self._stream:
                self._acc.add(event)
                yield event
        except BaseException as exc:
            self._acc.finish_call(exc)
            raise
        self._acc.finish_call()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def run_tool_use(
    block: Any, tools: Mapping[str, Callable[..., Any]], *, side_effect: str = "read"
) -> Any:
    """Run one ``tool_use`` block as a tool span with its ``tool_call_id``; returns the result.

    Raises:
        KeyError: the model asked for a tool not in ``tools`` (recorded as a failed span).
        TaskStopped: the task is stopped; the tool does not run.
    """
    args = dict(block.input or {})
    task = current_task.get()
    if task is None:
        return tools[block.name](**args)
    with task.tool(block.name, args=args, side_effect=side_effect, tool_call_id=block.id) as span:
        if block.name not in tools:
            raise KeyError(
                f"the model asked for tool {block.name!r}, which this agent does not have"
            )
        result = tools[block.name](**args)
        span.result(result)
        return result
