"""A LangChain / LangGraph callback handler that records chat model calls and tools.

Pass it in ``config={"callbacks": [handler]}`` (or to a model or graph) inside
``with rec.task(...) as task``: every chat model run becomes an LLM call of the task
(messages as the model got them, model, provider, answer, tool calls with their ids,
tokens incl. cached, finish reason, time to first token when streamed), every tool run
a tool span with the ``tool_call_id`` LangChain gives it, nested under the span of the
nearest recorded ancestor run. Runs start and end in separate callbacks, on any
thread or asyncio task: spans are opened with ``start_llm_call`` / ``start_tool`` and
closed with ``end``, keyed by run id, so parallel tool calls are recorded each on its own.

The SDK checks the task when a run starts: a stopped task (a crossed limit, a kill)
raises :class:`~agenttrail.producer.TaskStopped` — a ``BaseException``, which
LangChain's callback manager does not swallow — so the model or tool never runs and the
agent stops. Use :class:`AsyncAgenttrailCallbackHandler` for async graphs.

Example:
    >>> with rec.task("research", limits=Limits(max_steps=8)) as task:   # doctest: +SKIP
    ...     graph.invoke(inputs, config={"callbacks": [AgenttrailCallbackHandler(task)]})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from agenttrail.producer import LlmCall, Span, Task, ToolSpan, current_task

__all__ = ["AgenttrailCallbackHandler", "AsyncAgenttrailCallbackHandler", "message_dict"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def message_dict(m: BaseMessage) -> dict[str, Any]:
    """A LangChain message as a chat message dict (role, content, tool calls, tool call id)."""
    out: dict[str, Any] = {"role": _ROLES.get(m.type, m.type), "content": m.content}
    calls = getattr(m, "tool_calls", None)
    if calls:
        out["tool_calls"] = [
            {"id": c.get("id"), "name": c["name"], "args": c["args"]} for c in calls
        ]
    call_id = getattr(m, "tool_call_id", None)
    if call_id:
        out["tool_call_id"] = call_id
    if m.name:
        out["name"] = m.name
    return out


class _Recorder:
    """The handler's state and logic, shared by the sync and the async handler."""

    def __init__(self, task: Task | None):
        self._task = task
        self._lock = threading.Lock()
        self._spans: dict[UUID, Span] = {}
        self._parents: dict[UUID, UUID | None] = {}
        self._started: dict[UUID, float] = {}
        self._ttft: dict[UUID, float] = {}

    def task(self) -> Task | None:
        return self._task if self._task is not None else current_task.get()

    def _parent_span(self, parent_run_id: UUID | None) -> Span | None:
        with self._lock:
            run = parent_run_id
            while run is not None:
                span = self._spans.get(run)
                if span is not None:
                    return span
                run = self._parents.get(run)
        return None

    def chain_start(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        with self._lock:
            self._parents[run_id] = parent_run_id

    def chain_end(self, run_id: UUID) -> None:
        with self._lock:
            self._parents.pop(run_id, None)

    def chat_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        task = self.task()
        if task is None:
            return
        meta = metadata or {}
        invocation = dict(kwargs.get("invocation_params") or {})
        model = str(
            meta.get("ls_model_name")
            or invocation.get("model")
            or invocation.get("model_name")
            or (serialized or {}).get("name")
            or "unknown"
        )
        params = {
            k: v
            for k, v in invocation.items()
            if k not in ("model", "model_name", "_type", "stop") and v is not None
        }
        call = task.start_llm_call(
            model,
            [message_dict(m) for m in (messages[0] if messages else [])],
            provider=str(meta.get("ls_provider") or "unknown"),
            params=params,
            parent=self._parent_span(parent_run_id),
        )
        with self._lock:
            self._spans[run_id] = call
            self._parents[run_id] = parent_run_id
            self._started[run_id] = time.perf_counter()

    def new_token(self, run_id: UUID) -> None:
        with self._lock:
            if run_id not in self._ttft and run_id in self._started:
                self._ttft[run_id] = (time.perf_counter() - self._started[run_id]) * 1000.0

    def _take(self, run_id: UUID) -> tuple[Span | None, float | None]:
        with self._lock:
            self._parents.pop(run_id, None)
            self._started.pop(run_id, None)
            return self._spans.pop(run_id, None), self._ttft.pop(run_id, None)

    def llm_end(self, response: LLMResult, run_id: UUID) -> None:
        span, ttft = self._take(run_id)
        if not isinstance(span, LlmCall):
            return
        generation = (
            response.generations[0][0] if response.generations and response.generations[0] else None
        )
        message = getattr(generation, "message", None)
        usage = getattr(message, "usage_metadata", None) or {}
        details = usage.get("input_token_details") or {}
        meta = getattr(message, "response_metadata", None) or {}
        info = getattr(generation, "generation_info", None) or {}
        calls = getattr(message, "tool_calls", None) or []
        content = (
            getattr(message, "content", None)
            if message is not None
            else getattr(generation, "text", None)
        )
        span.respond(
            content if isinstance(content, str) or content is None else str(content),
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cached_tokens=int(details.get("cache_read") or 0),
            finish_reason=meta.get("finish_reason") or info.get("finish_reason"),
            tool_calls=[
                {"id": c.get("id"), "name": c["name"], "arguments": c["args"]} for c in calls
            ]
            or None,
            model_version=meta.get("model_name"),
            ttft_ms=ttft,
        )
        span.end()

    def tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        inputs: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        task = self.task()
        if task is None:
            return
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
        span = task.start_tool(
            name,
            args=inputs if inputs is not None else {"input": input_str},
            tool_call_id=kwargs.get("tool_call_id"),
            parent=self._parent_span(parent_run_id),
        )
        with self._lock:
            self._spans[run_id] = span
            self._parents[run_id] = parent_run_id

    def tool_end(self, output: Any, run_id: UUID) -> None:
        span, _ = self._take(run_id)
        if isinstance(span, ToolSpan):
            span.end(getattr(output, "content", output))

    def error(self, error: BaseException, run_id: UUID) -> None:
        span, _ = self._take(run_id)
        if isinstance(span, LlmCall | ToolSpan) and not span.ended:
            span.end(error=error)


class _Callbacks:
    """LangChain's callbacks, each handing its run to the shared :class:`_Recorder`.

    Written once: the sync handler inherits them as they are, the async handler gets an
    ``async def`` twin of each (see :func:`_async_twin`), awaited in the run's own task.
    """

    _rec: _Recorder

    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kw: Any,
    ) -> None:
        self._rec.chain_start(run_id, parent_run_id)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self._rec.chain_end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self._rec.chain_end(run_id)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        self._rec.chat_start(serialized, messages, run_id, parent_run_id, metadata, kw)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kw: Any) -> None:
        self._rec.new_token(run_id)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kw: Any) -> None:
        self._rec.llm_end(response, run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self._rec.error(error, run_id)

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        self._rec.tool_start(serialized, input_str, run_id, parent_run_id, inputs, kw)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kw: Any) -> None:
        self._rec.tool_end(output, run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self._rec.error(error, run_id)


_CALLBACKS = tuple(name for name in vars(_Callbacks) if name.startswith("on_"))


class AgenttrailCallbackHandler(_Callbacks, BaseCallbackHandler):
    """Records LangChain runs into ``task`` (default: the task current at each callback)."""

    def __init__(self, task: Task | None = None):
        self._rec = _Recorder(task)


class AsyncAgenttrailCallbackHandler(AsyncCallbackHandler):
    """The async twin of :class:`AgenttrailCallbackHandler` (awaited in the run's task)."""

    def __init__(self, task: Task | None = None):
        self._rec = _Recorder(task)


def _async_twin(name: str) -> Callable[..., Coroutine[Any, Any, None]]:
    sync = getattr(_Callbacks, name)

    async def callback(self: Any, *args: Any, **kwargs: Any) -> None:
        sync(self, *args, **kwargs)

    callback.__name__ = callback.__qualname__ = name
    callback.__doc__ = sync.__doc__
    return callback


for _name in _CALLBACKS:
    setattr(AsyncAgenttrailCallbackHandler, _name, _async_twin(_name))
