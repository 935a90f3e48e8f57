"""Spans a task records: LLM calls and tool invocations.

Two forms, one implementation. ``task.start_tool(...)`` / ``span.end(...)`` (and
``start_llm_call`` / ``call.end``) open and close a span in separate calls, possibly
on other threads, asyncio tasks or Contexts, with an explicit ``parent=``; the
``with task.tool(...)`` form is sugar over them that also makes the span the current
one of its context, so spans opened inside nest under it.

Guarantees: a span is recorded exactly once — when it is ended, or, if still open
when its task ends, as abandoned (``success`` false, ``error_type`` ``abandoned``);
ending it a second time raises :class:`SpanAlreadyEnded`. The parent is the one
given, else the innermost open ``with`` span of this context belonging to the same
task, else the task's root span.
"""

from __future__ import annotations

import time
from hashlib import sha256
from time import perf_counter, time_ns
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from agenttrail.events import new_span_id
from agenttrail.producer._build_fallback import fallback_event
from agenttrail.producer._context import current_span
from agenttrail.producer._json import to_json

if TYPE_CHECKING:
    from agenttrail.producer._task import Task

_ERROR_DETAIL_CHARS = 4000
ABANDONED = "abandoned"
"""``error_type`` of a span that was still open when its task ended."""

_UNSET: Any = object()


class SpanAlreadyEnded(RuntimeError):
    """``end()`` (or ``respond``/``result`` after it) on a span that is already recorded."""


def error_fields(exc: BaseException | str | None) -> tuple[str | None, str | None]:
    """(error_type, error_detail) of an exception or message, detail bounded."""
    if exc is None:
        return None, None
    if isinstance(exc, str):
        return "Error", exc[:_ERROR_DETAIL_CHARS]
    return type(exc).__name__, str(exc)[:_ERROR_DETAIL_CHARS]


class Span:
    """What every span shares: ids, its parent, start and duration, failure, ending once."""

    __slots__ = (
        "_ended",
        "_latency_ms",
        "_parent_arg",
        "_parent_span",
        "_previous",
        "_seq",
        "_t0",
        "error_detail",
        "error_type",
        "parent_span_id",
        "span_id",
        "step",
        "success",
        "task",
        "ts",
    )

    task: Task
    span_id: str
    parent_span_id: str
    _parent_span: Span | None
    _ended: bool

    def _init_common(self, task: Task, parent: Any) -> None:
        self.task = task
        self._parent_arg = parent
        self._ended = False
        self.success = True
        self.error_type: str | None = None
        self.error_detail: str | None = None

    @property
    def ended(self) -> bool:
        """Whether the span is recorded (ended or abandoned)."""
        return self._ended

    @property
    def traceparent(self) -> str:
        """W3C ``traceparent`` naming this span, to pass to a service it calls."""
        return f"00-{self.task.trace_id}-{self.span_id}-01"

    def _begin(self) -> None:
        """Give the span its id and parent and start its clock."""
        self.span_id = new_span_id()
        if self._parent_arg is None and current_span.get() is None:
            self.parent_span_id, self._parent_span = self.task.root_span_id, None  # fast path
        else:
            self.parent_span_id, self._parent_span = self.task.resolve_parent(self._parent_arg)
        self.ts = time.time_ns() // 1000
        self._t0 = time.perf_counter()
        self.task.open_spans[self.span_id] = self

    def fail(self, error: BaseException | str) -> None:
        """Mark the span failed without raising (the work returned an error value).

        Raises:
            SpanAlreadyEnded: the span is already recorded.
        """
        self._check_open("fail()")
        self.success = False
        self.error_type, self.error_detail = error_fields(error)

    def _claim(self) -> float:
        """Mark the span ended (task lock held); its duration in milliseconds.

        Raises:
            SpanAlreadyEnded: it was ended before.
        """
        if self._ended:
            raise SpanAlreadyEnded(
                f"{type(self).__name__} {self.span_id} of task {self.task.task_id} is already "
                "ended; a span is recorded once, so call end() once."
            )
        self._ended = True
        self.task.open_spans.pop(self.span_id, None)
        return (time.perf_counter() - self._t0) * 1000.0

    _family: ClassVar[str]
    """The event family the span records (``tool_span``, ``llm_call``)."""

    def _event(self, latency_ms: float, seq: int) -> dict[str, Any]:
        """The whole event, envelope included; built by the pipeline's worker.

        Never raises: a failed build gives the span's fallback record under the same
        ``seq`` (see :mod:`._build_fallback`).
        """
        try:
            return self._full_event(latency_ms, seq)
        except Exception as exc:  # an SDK bug (or a custom detector's): keep seq gapless
            return fallback_event(self, self._family, latency_ms, seq, exc)

    def __call__(self) -> dict[str, Any]:
        """The span is its own Deferred event (see ``_pipeline``): submitted as it is, with
        its duration and ``seq`` in its slots, so that no tuple or bound method is made
        per span for the collector to walk while the event waits in the queue."""
        return self._event(self._latency_ms, self._seq)

    def _full_event(self, latency_ms: float, seq: int) -> dict[str, Any]:
        raise NotImplementedError

    def _record(self) -> None:
        task = self.task
        with task.lock:
            if self._ended and self.error_type == ABANDONED:
                # Its task was stopped (a kill, the watchdog) from another thread between
                # the block's end and this record: the span is already recorded abandoned.
                return
            # The worker builds the event dict (see Deferred): nothing it reads changes
            # once the span is claimed, since every mutator checks that it is open.
            self._latency_ms = self._claim()
            self._seq = next(task.seqs)
            task.submit(self)
        self._recorded()

    def _recorded(self) -> None:
        """After the event is submitted (lock released): account for the span."""

    def abandon(self, why: str) -> None:
        """Record the span as abandoned (task lock held); called when its task ends."""
        self.success = False
        self.error_type, self.error_detail = ABANDONED, why
        self._latency_ms = self._claim()
        self._seq = next(self.task.seqs)
        self.task.submit(self)

    def _check_open(self, what: str) -> None:
        if self._ended:
            raise SpanAlreadyEnded(
                f"{what} on {type(self).__name__} {self.span_id} of task {self.task.task_id}: "
                "the span is already ended; record results before end(), and end it once."
            )

    # -- the ``with`` form --------------------------------------------------------------

    def _enter_context(self) -> None:
        # enter()/leave() of ._context, inlined: this runs for every ``with`` span.
        self._previous = current_span.get()
        current_span.set(self)

    def _exit(self, exc: BaseException | None) -> None:
        if current_span.get() is self:  # never reset a Token: see ._context
            current_span.set(self._previous)
        if self._ended:  # ended explicitly inside the block, or abandoned by its task
            return
        if exc is not None:
            self.fail(exc)
        self._record()


class ToolSpan(Span):
    """One tool invocation.

    ``with task.tool(...) as span: span.result(value)``, or
    ``span = task.start_tool(...)`` … ``span.end(result=value)`` / ``span.end(error=exc)``.
    Starting checks the task (a stopped task raises before the tool runs).
    """

    _family = "tool_span"
    __slots__ = (
        "_args",
        "_result_size",
        "_result_summary",
        "args_hash",
        "args_json",
        "attempt",
        "idempotency_key",
        "name",
        "redactions",
        "side_effect",
        "tool_call_id",
        "tool_version",
    )

    def __init__(
        self,
        task: Task,
        name: str,
        args_json: str | None,
        args_hash: str | None,
        redactions: list[str],
        side_effect: str,
        tool_version: str | None,
        idempotency_key: str | None,
        attempt: int,
        tool_call_id: str | None = None,
        parent: Any = None,
        args: dict[str, Any] | None = None,
    ):
        # _init_common, inlined: this runs for every tool span.
        self.task = task
        self._parent_arg = parent
        self._ended = False
        self.success = True
        self.error_type = None
        self.error_detail = None
        self.name = name
        # args_json is None when the arguments are a frozen copy of flat scalars (see
        # Scrubber.frozen_args): the worker writes their JSON, as the agent's thread would.
        self.args_json = args_json
        self._args = args
        self.args_hash = args_hash
        self.redactions = redactions
        self.side_effect = side_effect
        self.tool_version = tool_version
        self.idempotency_key = idempotency_key
        self.attempt = attempt
        self.tool_call_id = tool_call_id
        self._result_summary: str | None = None
        self._result_size = 0

    # The methods below run for every tool span, so Span's helpers (_begin, _exit,
    # _record, _claim) are spelled out in them: each call saved is about 5 % of what a
    # span costs the agent's thread. They keep those helpers' semantics exactly.

    def start(self) -> ToolSpan:
        """Open the span (``Task.start_tool`` does this). Raises if the task is stopped."""
        task = self.task
        if task.limits is not None or task.stopped is not None:
            task.check_open()
        # No lock needed: reading the step and adding to open_spans are atomic, and
        # the span's seq is taken (under the lock) when it is recorded.
        self.step = task.step
        self.span_id = span_id = new_span_id()
        parent = self._parent_arg
        if parent is None and current_span.get() is None:
            self.parent_span_id, self._parent_span = task.root_span_id, None
        else:
            self.parent_span_id, self._parent_span = task.resolve_parent(parent)
        self.ts = time_ns() // 1000
        self._t0 = perf_counter()
        task.open_spans[span_id] = self
        return self

    def __enter__(self) -> ToolSpan:
        # start() and _enter_context(), sharing one read of the current span.
        task = self.task
        if task.limits is not None or task.stopped is not None:
            task.check_open()
        self.step = task.step
        self.span_id = span_id = new_span_id()
        self._previous = previous = current_span.get()
        parent = self._parent_arg
        if parent is None and previous is None:
            self.parent_span_id, self._parent_span = task.root_span_id, None
        else:
            self.parent_span_id, self._parent_span = task.resolve_parent(parent)
        self.ts = time_ns() // 1000
        self._t0 = perf_counter()
        task.open_spans[span_id] = self
        current_span.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if current_span.get() is self:  # never reset a Token: see ._context
            current_span.set(self._previous)
        if self._ended:  # ended explicitly inside the block, or abandoned by its task
            return
        if exc is not None:
            self.fail(exc)
        self._submit()

    def result(self, value: Any) -> None:
        """Record the tool's result: its size, and a summary bounded by the settings.

        The result is screened for prompt injection and scrubbed here, on the caller's
        thread: a ``block`` policy raises :class:`InjectionBlocked` before this returns,
        and a redaction's guard event takes its ``seq`` before the span's.
        """
        if self._ended:
            self._check_open("result()")
        text = value if type(value) is str else to_json(value)
        task = self.task
        if text.isascii():
            self._result_size = len(text)
            text = task.inspect_ascii_result(self.name, text)
        else:
            self._result_size = len(text.encode())
            text = task.inspect_result(self.name, text)  # injection flags, then redaction
        limit = task.summary_chars
        self._result_summary = text if len(text) <= limit else text[:limit] + "…"

    def end(self, result: Any = _UNSET, *, error: BaseException | str | None = None) -> None:
        """Record the span now, with its result or its error. Call once.

        Raises:
            SpanAlreadyEnded: the span was already ended.
        """
        if result is not _UNSET:
            self.result(result)
        if error is not None:
            self.fail(error)
        self._submit()

    def _submit(self) -> None:
        """:meth:`Span._record` for a tool span: claim it and submit it under the lock."""
        task = self.task
        lock = task.lock
        lock.acquire()  # not ``with``: half the cost (try/finally costs nothing here)
        try:
            ended = self._ended
            if not ended:
                self._ended = True
                task.open_spans.pop(self.span_id, None)
                self._latency_ms = (perf_counter() - self._t0) * 1000.0
                self._seq = next(task.seqs)
                task.submit(self)
                task.tool_calls += 1
        finally:
            lock.release()
        if ended:  # ended by another thread meanwhile: its stop, or a second end()
            self._record()  # returns for an abandoned span, raises SpanAlreadyEnded else

    def _recorded(self) -> None:
        self.task.tool_calls += 1

    def _full_event(self, latency_ms: float, seq: int) -> dict[str, Any]:
        tools = self.task.tools
        args_json = self.args_json
        if args_json is None:
            args_json = to_json(self._args, sort_keys=True)
        return {
            **self.task.base,
            "seq": seq,
            "event_type": "tool_span",
            "step": self.step,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "ts": self.ts,
            "tool": self.name,
            "tool_version": self.tool_version,
            "args_json": args_json,
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
            "error_detail": self.task.redact_error(self.error_detail),
            "redactions": self.redactions,
            "tool_call_id": self.tool_call_id,
        }


class LlmCall(Span):
    """One LLM call.

    ``with task.llm_call(...) as call: call.respond(...)``, or
    ``call = task.start_llm_call(...)`` … ``call.respond(...)``; ``call.end()`` (or
    ``call.end(error=exc)``). Starting checks the task's limits and advances its step;
    the message history is serialised at that moment, so later changes to the caller's
    list do not alter what is recorded. Ending adds the call's tokens and cost to the
    task; crossing a limit there stops the task at once (the next call raises).
    """

    _family = "llm_call"
    __slots__ = (
        "cached_tokens",
        "context_window",
        "cost_usd",
        "finish_reason",
        "input_tokens",
        "message_count",
        "messages_json",
        "model",
        "model_version",
        "output_tokens",
        "params_json",
        "prompt_hash",
        "prompt_version",
        "provider",
        "redactions",
        "response_json",
        "response_text",
        "system_prompt_hash",
        "tool_calls_json",
        "ttft_ms",
    )

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
        parent: Any = None,
    ):
        self._init_common(task, parent)
        self.model = model
        self.provider = provider
        self.model_version = model_version
        self.prompt_version = prompt_version
        self.context_window = context_window
        messages, self.redactions = task.redact_content(messages, "messages")
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

    def start(self) -> LlmCall:
        """Open the call (``Task.start_llm_call`` does this): checks limits, next step.

        Raises:
            TaskStopped: the task is stopped, or this call would cross ``max_steps``.
        """
        task = self.task
        task.check_open(new_step=True)
        with task.lock:
            task.step += 1
            self.step = task.step
            self._begin()
        return self

    def __enter__(self) -> LlmCall:
        self.start()
        self._enter_context()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

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
        """Record the model's answer and usage. Call once, before the call ends.

        Args:
            content: the text of the response.
            input_tokens: prompt tokens billed.
            output_tokens: completion tokens billed.
            cached_tokens: prompt tokens served from the provider's cache.
            finish_reason: why the model stopped.
            tool_calls: tool calls the model asked for, e.g.
                ``[{"id": "call_1", "name": ..., "arguments": ...}]``; pass each ``id`` as
                ``tool_call_id`` of the tool span that runs it.
            raw: the provider's raw response (anything JSON-serialisable).
            model_version: the exact model version the provider reported.
            cost_usd: the call's cost, when known; it counts toward ``max_spend_usd``.
            ttft_ms: time to first token for streamed calls.
        """
        self._check_open("respond()")
        for name, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cached_tokens", cached_tokens),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
        content, paths = self.task.redact_content(content, "response")
        tool_calls, call_paths = self.task.redact_content(tool_calls, "tool_calls")
        raw, raw_paths = self.task.redact_content(raw, "raw")
        self.redactions = [
            *self.redactions,
            *(f"response{p[1:]}" for p in paths),
            *(f"tool_calls{p[1:]}" for p in call_paths),
            *(f"raw{p[1:]}" for p in raw_paths),
        ]
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

    def end(self, *, error: BaseException | str | None = None) -> None:
        """Record the call now (after :meth:`respond`, or with ``error=``). Call once.

        Raises:
            SpanAlreadyEnded: the call was already ended.
        """
        if error is not None:
            self.fail(error)
        self._record()

    def _full_event(self, latency_ms: float, seq: int) -> dict[str, Any]:
        return {
            **self.task.base,
            "seq": seq,
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
            "error_detail": self.task.redact_error(self.error_detail),
            "redactions": self.redactions,
        }

    def _recorded(self) -> None:
        cost = self.cost_usd
        if cost is None:  # spend binds without a reported cost: the shipped price table
            cost = self.task.price(
                self.model, self.input_tokens, self.output_tokens, self.cached_tokens
            )
        self.task.add_usage(self.input_tokens + self.output_tokens, cost)


def _system_prompt_of(messages: list[Any]) -> str | None:
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "system":
            content = m.get("content")
            return content if isinstance(content, str) else to_json(content)
    return None
