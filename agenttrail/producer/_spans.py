"""Spans a task records: LLM calls and tool invocations. Used through ``Task``."""

from __future__ import annotations

import json
import time
from contextvars import ContextVar, Token
from hashlib import sha256
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agenttrail.events import new_span_id

if TYPE_CHECKING:
    from agenttrail.producer._task import Task

current_span: ContextVar[str | None] = ContextVar("agenttrail_current_span", default=None)
"""Span id of the innermost open span in this context; tool spans nest under it."""

_ERROR_DETAIL_CHARS = 4000


# Built once: json.dumps with non-default options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_SORTED_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=str, sort_keys=True
)


def _c_encoder(sort_keys: bool) -> Any:
    # The C encoder made once; JSONEncoder.encode rebuilds it on every call, which is
    # most of the cost for the small objects tool arguments usually are.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    return make({}, str, json.encoder.encode_basestring, None, ":", ",", sort_keys, False, True)


_C_PLAIN = _c_encoder(False)
_C_SORTED = _c_encoder(True)


def to_json(value: Any, sort_keys: bool = False) -> str:
    """Compact JSON; unknown objects become their ``str`` so recording never fails."""
    fast = _C_SORTED if sort_keys else _C_PLAIN
    if fast is not None:
        try:
            return "".join(fast(value, 0))
        except (ValueError, TypeError, RecursionError):
            pass  # circular or odd values: the careful encoder below explains them
    try:
        return (_SORTED_ENCODER if sort_keys else _ENCODER).encode(value)
    except (ValueError, TypeError, RecursionError) as exc:
        return json.dumps(f"<unserialisable {type(value).__name__}: {exc}>")


def error_fields(exc: BaseException | str | None) -> tuple[str | None, str | None]:
    """(error_type, error_detail) of an exception or message, detail bounded."""
    if exc is None:
        return None, None
    if isinstance(exc, str):
        return "Error", exc[:_ERROR_DETAIL_CHARS]
    return type(exc).__name__, str(exc)[:_ERROR_DETAIL_CHARS]


class _Span:
    """What every span shares: ids, nesting under the current span, start and duration,
    and the failure recorded from an exception."""

    __slots__ = (
        "_t0",
        "_token",
        "error_detail",
        "error_type",
        "parent_span_id",
        "span_id",
        "success",
        "task",
        "ts",
    )

    task: Task

    def _open(self) -> None:
        """Start the span as the current one of this context (at ``__enter__``)."""
        self.span_id = new_span_id()
        self.parent_span_id = current_span.get() or self.task.root_span_id
        self._token: Token[str | None] = current_span.set(self.span_id)
        self.ts = time.time_ns() // 1000
        self._t0 = time.perf_counter()

    def _close(self, exc: BaseException | None) -> float:
        """End the span (at ``__exit__``); returns its duration in milliseconds."""
        latency_ms = (time.perf_counter() - self._t0) * 1000.0
        current_span.reset(self._token)
        if exc is not None:
            self.success = False
            self.error_type, self.error_detail = error_fields(exc)
        return latency_ms


class ToolSpan(_Span):
    """One tool invocation. Use as ``with task.tool(...) as span: span.result(value)``.

    Entering checks the task's limits (and raises ``LimitExceeded`` before the tool
    runs); leaving records the span. An exception inside marks the span failed, is
    recorded with its message, and propagates unchanged.
    """

    __slots__ = (
        "_result_size",
        "_result_summary",
        "args_hash",
        "args_json",
        "attempt",
        "idempotency_key",
        "name",
        "redactions",
        "side_effect",
        "tool_version",
    )

    def __init__(
        self,
        task: Task,
        name: str,
        args_json: str,
        args_hash: str | None,
        redactions: list[str],
        side_effect: str,
        tool_version: str | None,
        idempotency_key: str | None,
        attempt: int,
    ):
        self.task = task
        self.name = name
        self.args_json = args_json
        self.args_hash = args_hash
        self.redactions = redactions
        self.side_effect = side_effect
        self.tool_version = tool_version
        self.idempotency_key = idempotency_key
        self.attempt = attempt
        self.success = True
        self.error_type: str | None = None
        self.error_detail: str | None = None
        self._result_summary: str | None = None
        self._result_size = 0

    def __enter__(self) -> ToolSpan:
        self.task.check_limits(new_step=False)
        self._open()
        return self

    def result(self, value: Any) -> None:
        """Record the tool's result: its size, and a summary bounded by the settings."""
        text = value if type(value) is str else to_json(value)
        self._result_size = len(text) if text.isascii() else len(text.encode())
        limit = self.task.summary_chars
        self._result_summary = text if len(text) <= limit else text[:limit] + "…"

    def fail(self, error: BaseException | str) -> None:
        """Mark the span failed without raising (the tool returned an error value)."""
        self.success = False
        self.error_type, self.error_detail = error_fields(error)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        latency_ms = self._close(exc)
        task = self.task
        tools = task.tools
        # One dict literal with the envelope spelled out: this is the hottest path of
        # the SDK, so it avoids Task.emit's extra merge.
        task.submit(
            {
                **task.base,
                "step": task.step,
                "seq": next(task.seq),
                "event_type": "tool_span",
                "span_id": self.span_id,
                "parent_span_id": self.parent_span_id,
                "ts": self.ts,
                "tool": self.name,
                "tool_version": self.tool_version,
                "args_json": self.args_json,
                "args_hash": self.args_hash,
                "idempotency_key": self.idempotency_key,
                "attempt": self.attempt,
                "side_effect": self.side_effect,
                "declared": tools is None or self.name in tools,
                "result_summary": self._result_summary,
                "result_size": self._result_size,
                "latency_ms": latency_ms,
                "success": self.success,
                "error_type": self.error_type,
                "error_detail": self.error_detail,
                "redactions": self.redactions,
            }
        )
        task.tool_calls += 1


class LlmCall(_Span):
    """One LLM call. Use as ``with task.llm_call(...) as call: call.respond(...)``.

    Entering checks the task's limits and advances the task's step; the message
    history is serialised at that moment, so later changes to the caller's list do
    not alter what is recorded. Leaving records the call and adds its tokens and cost
    to the task; an exception marks the call failed and propagates.
    """

    def __init__(
        self,
        task: Task,
        *,
        model: str,
        messages: list[Any],
        provider: str,
        params: dict[str, Any] | None,
        model_version: str | None,
        prompt_version: str | None,
        system_prompt: str | None,
        context_window: int | None,
    ):
        self.task = task
        self.model = model
        self.provider = provider
        self.model_version = model_version
        self.prompt_version = prompt_version
        self.context_window = context_window
        redactor = task.recorder.content_redactor
        self.redactions: list[str] = []
        if redactor is not None:
            messages, self.redactions = redactor.redact(messages)
        self.messages_json = to_json(messages)
        self.message_count = len(messages)
        self.prompt_hash = sha256(self.messages_json.encode()).hexdigest()
        if system_prompt is None:
            system_prompt = _system_prompt_of(messages)
        self.system_prompt_hash = (
            sha256(system_prompt.encode()).hexdigest() if system_prompt is not None else None
        )
        self.params_json = to_json(params or {}, sort_keys=True)
        self.response_text: str | None = None
        self.response_json: str | None = None
        self.tool_calls_json: str | None = None
        self.finish_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens = 0
        self.cost_usd: float | None = None
        self.ttft_ms: float | None = None
        self.success = True
        self.error_type: str | None = None
        self.error_detail: str | None = None

    def __enter__(self) -> LlmCall:
        self.task.check_limits(new_step=True)
        self.step = self.task.advance_step()
        self._open()
        return self

    def respond(
        self,
        content: str | None = None,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        finish_reason: str | None = None,
        tool_calls: list[Any] | None = None,
        raw: Any = None,
        model_version: str | None = None,
        cost_usd: float | None = None,
        ttft_ms: float | None = None,
    ) -> None:
        """Record the model's answer and usage. Call once, inside the ``with`` block.

        Args:
            content: the text of the response.
            input_tokens: prompt tokens billed.
            output_tokens: completion tokens billed.
            cached_tokens: prompt tokens served from the provider's cache.
            finish_reason: why the model stopped.
            tool_calls: tool calls the model asked for, e.g. ``[{"name": ..., "arguments": ...}]``.
            raw: the provider's raw response (anything JSON-serialisable).
            model_version: the exact model version the provider reported.
            cost_usd: the call's cost, when known; it counts toward ``max_spend_usd``.
            ttft_ms: time to first token for streamed calls.
        """
        for name, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cached_tokens", cached_tokens),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
        self.response_text = content
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cached_tokens = cached_tokens
        self.finish_reason = finish_reason
        self.tool_calls_json = to_json(tool_calls) if tool_calls is not None else None
        self.response_json = to_json(raw) if raw is not None else None
        if model_version is not None:
            self.model_version = model_version
        self.cost_usd = float(cost_usd) if cost_usd is not None else None
        self.ttft_ms = ttft_ms

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        latency_ms = self._close(exc)
        task = self.task
        task.emit(
            {
                "event_type": "llm_call",
                "span_id": self.span_id,
                "parent_span_id": self.parent_span_id,
                "ts": self.ts,
                "step": self.step,
                "provider": self.provider,
                "model": self.model,
                "model_version": self.model_version,
                "system_prompt_hash": self.system_prompt_hash,
                "prompt_version": self.prompt_version,
                "prompt_hash": self.prompt_hash,
                "messages_json": self.messages_json,
                "message_count": self.message_count,
                "params_json": self.params_json,
                "response_text": self.response_text,
                "response_json": self.response_json,
                "tool_calls_json": self.tool_calls_json,
                "finish_reason": self.finish_reason,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cached_tokens": self.cached_tokens,
                "context_window": self.context_window,
                "cost_usd": self.cost_usd,
                "latency_ms": latency_ms,
                "ttft_ms": self.ttft_ms,
                "success": self.success,
                "error_type": self.error_type,
                "error_detail": self.error_detail,
                "redactions": self.redactions,
            }
        )
        task.add_usage(self.input_tokens + self.output_tokens, self.cost_usd)


def _system_prompt_of(messages: list[Any]) -> str | None:
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "system":
            content = m.get("content")
            return content if isinstance(content, str) else to_json(content)
    return None
