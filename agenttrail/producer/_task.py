"""A recorded task: its boundary, its events, its limits, its stop."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agenttrail.events import (
    TERMINAL_STATES,
    GuardKind,
    LimitName,
    SideEffect,
    TaskState,
    new_span_id,
    new_trace_id,
)
from agenttrail.producer._context import current_span, current_task, enter, leave, live_tasks
from agenttrail.producer._json import to_json
from agenttrail.producer._limits import LimitExceeded, Limits, TaskStopped
from agenttrail.producer._spans import LlmCall, Span, ToolSpan, error_fields
from agenttrail.producer._task_safety import TaskSafety
from agenttrail.producer._trace import check_trace_id, parse_traceparent

if TYPE_CHECKING:
    from agenttrail.producer._recorder import Recorder

log = logging.getLogger("agenttrail.producer")

StopHook = Callable[["Task", TaskStopped], None]
"""Called once when a task is stopped, with the task and the stop (e.g. LimitExceeded).

Runs on the thread that noticed the stop; an integration uses it to cancel the running
asyncio task or thread's work. Exceptions it raises are logged, never propagated.
"""

_STOP_RECORD_WAIT_S = 5.0
"""How long a task's end waits for a stop that another thread is recording."""
_SIDE_EFFECTS = frozenset(s.value for s in SideEffect)
_IRREVERSIBLE = SideEffect.IRREVERSIBLE.value

__all__ = ["StopHook", "Task", "current_task"]


class Task(TaskSafety):
    """One task run. Created by :meth:`Recorder.task`; use it as a context manager.

    Entering records the ``started`` transition with the task boundary. Leaving
    normally records ``succeeded`` (unless a terminal state was already recorded);
    leaving with an exception records ``failed`` with the error and re-raises it. Spans
    still open when the task ends are recorded as abandoned first. Without ``with``:
    :meth:`start` and :meth:`end`.

    A crossed limit (or a kill) stops the task: the terminal state is recorded once,
    the ``on_stop`` hooks run, and every later span start, transition or message of the
    task raises :class:`TaskStopped` again — a framework that swallows the first
    raise cannot keep the task running.

    The guards (confirmations, escalation, injection flags, redaction, entry
    validation, kills, the wall-clock watchdog) are in :class:`TaskSafety`.

    Methods are safe to call from several threads and asyncio tasks at once (parallel
    tool calls): ``seq`` stays gapless and in submission order.
    """

    def __init__(
        self,
        recorder: Recorder,
        task_type: str,
        *,
        task_id: str | None,
        entry: Any,
        limits: Limits | None,
        tools: Iterable[str] | None,
        exit_condition: str | None,
        side_effect_budget: Iterable[str],
        escalation_path: str | None,
        trace_id: str | None = None,
        traceparent: str | None = None,
        on_stop: StopHook | None = None,
        entry_model: Any = None,
        injection_policy: str | None = None,
    ):
        self.recorder = recorder
        self.task_type = task_type
        self.task_id = task_id or f"tsk_{uuid.uuid4().hex[:16]}"
        self.entry = entry
        self.limits = limits
        self.tools = frozenset(tools) if tools is not None else None
        self.exit_condition = exit_condition
        self.side_effect_budget = list(side_effect_budget)
        self.escalation_path = escalation_path
        self.root_span_id = new_span_id()
        self.remote_parent_id: str | None = None
        if traceparent is not None:
            joined, self.remote_parent_id = parse_traceparent(traceparent)
            if trace_id is not None and check_trace_id(trace_id) != joined:
                raise ValueError(
                    f"trace_id {trace_id!r} differs from the traceparent's trace id {joined!r}; "
                    "pass one of them."
                )
            trace_id = joined
        self.trace_id = check_trace_id(trace_id) if trace_id is not None else new_trace_id()
        self.state: str | None = None
        self.step = 0
        self.tokens = 0
        self.spend_usd = 0.0
        self.tool_calls = 0
        self.lock = threading.Lock()
        """Held while an event takes its ``seq`` and is submitted, and while spans open
        and close: ``seq`` order is submission order, also across threads."""
        self.open_spans: dict[str, Span] = {}
        self.seqs = itertools.count()
        """Where each event's ``seq`` comes from; taken under :attr:`lock`."""
        self._started_at = time.monotonic()
        self.submit = recorder.pipeline_submit
        self.summary_chars = recorder.settings.result_summary_chars
        self.base = {
            "tenant": recorder.settings.tenant,
            "task_id": self.task_id,
            "task_type": task_type,
            "agent_name": recorder.settings.agent,
            "agent_version": recorder.settings.agent_version,
            "trace_id": self.trace_id,
        }
        self._stop_hooks = [h for h in (on_stop, recorder.on_stop) if h is not None]
        self._previous_task: Task | None = None
        self.stopped: TaskStopped | None = None
        """The stop, once the task is stopped (a crossed limit, a kill)."""
        self.stop_recorded = threading.Event()
        """Set once the stop's guard event and terminal state are submitted."""
        self._init_safety(entry_model, injection_policy)

    @property
    def traceparent(self) -> str:
        """W3C ``traceparent`` naming the task's root span, for calls the task makes."""
        return f"00-{self.trace_id}-{self.root_span_id}-01"

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Task:
        self.start()
        self._previous_task = enter(current_task, self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        leave(current_task, self, self._previous_task)
        self.acknowledge_kill()
        if self.stopped is not None:
            # Stopped from another thread (a kill, the watchdog) while the block ran: the
            # stop records the terminal state, maybe a moment from now; never a second one.
            self.stop_recorded.wait(_STOP_RECORD_WAIT_S)
            return
        if self.state in TERMINAL_STATES:
            return
        if exc is None:
            self.end(TaskState.SUCCEEDED)
        else:
            error_type, detail = error_fields(exc)
            self._finish(
                TaskState.FAILED,
                reason="exception",
                error_type=error_type,
                error_detail=self.redact_error(detail),
            )

    def start(self) -> None:
        """Record the ``started`` transition with the task boundary (done by ``with``)."""
        if self.state is not None:
            return
        live_tasks.add(self.task_id)
        lim = self.limits or Limits()
        entry, entry_paths = self.safety.scrubber.scrub(
            self.entry if self.entry is not None else {}
        )
        self._transition(
            TaskState.STARTED,
            boundary={
                "entry_json": to_json(entry),
                "exit_condition": self.exit_condition,
                "max_tokens": lim.max_tokens,
                "max_steps": lim.max_steps,
                "max_wall_clock_s": lim.max_wall_clock_s,
                "max_spend_usd": lim.max_spend_usd,
                "side_effect_budget": self.side_effect_budget,
                "escalation_path": self.escalation_path,
                "declared_tools": sorted(self.tools) if self.tools is not None else [],
            },
        )
        self._on_started(entry_paths)

    def end(self, state: str = TaskState.SUCCEEDED, reason: str | None = None) -> None:
        """End the task in a terminal state (``succeeded`` by default).

        Spans still open are recorded as abandoned first. On a stopped task this does
        nothing: its terminal state was recorded at the stop.
        """
        if state not in TERMINAL_STATES:
            raise ValueError(
                f"end() needs a terminal state ({', '.join(sorted(TERMINAL_STATES))}), "
                f"got {state!r}; use transition() for intermediate states."
            )
        if self.stopped is not None:
            self.acknowledge_kill()
            return
        self._finish(state, reason=reason)

    def transition(self, to_state: str, reason: str | None = None) -> None:
        """Record a state transition, e.g. ``waiting_confirmation`` with its reason.

        Raises:
            TaskStopped: the task is stopped.
        """
        self.check_open()
        if str(to_state) in TERMINAL_STATES:
            self._finish(to_state, reason=reason)
        else:
            self._transition(to_state, reason=reason)

    def _finish(self, state: str, **fields: Any) -> None:
        with self.lock:
            for span in list(self.open_spans.values()):
                span.abandon(f"still open when the task ended ({state})")
            self._transition_locked(state, **fields)
        live_tasks.discard(self.task_id)
        self._on_finished()

    def _transition(self, to_state: str, **fields: Any) -> None:
        with self.lock:
            self._transition_locked(to_state, **fields)

    def _transition_locked(
        self,
        to_state: str,
        *,
        reason: str | None = None,
        error_type: str | None = None,
        error_detail: str | None = None,
        boundary: dict[str, Any] | None = None,
    ) -> None:
        if self.state in TERMINAL_STATES:
            log.warning(
                "agenttrail: task %s is already %s; recording the transition to %s anyway",
                self.task_id,
                self.state,
                to_state,
            )
        self.emit_locked(
            {
                "event_type": "state_transition",
                "span_id": self.root_span_id,
                "parent_span_id": self.remote_parent_id,
                "ts": time.time_ns() // 1000,
                "from_state": self.state,
                "to_state": str(to_state),
                "reason": reason,
                "error_type": error_type,
                "error_detail": error_detail,
                "boundary": boundary,
            }
        )
        self.state = str(to_state)

    # -- spans -------------------------------------------------------------------------

    def llm_call(
        self,
        model: str,
        messages: list[Any],
        *,
        provider: str = "unknown",
        params: dict[str, Any] | None = None,
        model_version: str | None = None,
        prompt_version: str | None = None,
        system_prompt: str | None = None,
        context_window: int | None = None,
        parent: Span | Task | str | None = None,
    ) -> LlmCall:
        """A span for one LLM call, opened by ``with``; starts a new step. See :class:`LlmCall`."""
        return LlmCall(
            self,
            model=model,
            messages=messages,
            provider=provider,
            params=params,
            model_version=model_version,
            prompt_version=prompt_version,
            system_prompt=system_prompt,
            context_window=context_window,
            parent=parent,
        )

    def start_llm_call(
        self,
        model: str,
        messages: list[Any],
        *,
        provider: str = "unknown",
        params: dict[str, Any] | None = None,
        model_version: str | None = None,
        prompt_version: str | None = None,
        system_prompt: str | None = None,
        context_window: int | None = None,
        parent: Span | Task | str | None = None,
    ) -> LlmCall:
        """Open an LLM call now; record it with ``call.end()``, from any thread or task.

        Args:
            parent: the span (or span id) it belongs to; by default the innermost open
                ``with`` span of this context, else the task's root span.

        Raises:
            TaskStopped: the task is stopped, or this call would cross ``max_steps``.
        """
        return self.llm_call(
            model,
            messages,
            provider=provider,
            params=params,
            model_version=model_version,
            prompt_version=prompt_version,
            system_prompt=system_prompt,
            context_window=context_window,
            parent=parent,
        ).start()

    def tool(
        self,
        name: str,
        args: Any = None,
        *,
        side_effect: str = "read",
        tool_version: str | None = None,
        idempotency_key: str | None = None,
        attempt: int = 1,
        tool_call_id: str | None = None,
        parent: Span | Task | str | None = None,
    ) -> ToolSpan:
        """A span for one tool invocation, opened by ``with``. See :class:`ToolSpan`.

        Args:
            name: the tool as the agent called it.
            args: its arguments; sensitive keys are redacted before recording, and
                ``args_hash`` hashes the original canonical JSON.
            side_effect: ``read``, ``write`` or ``irreversible``.
            tool_version: version of the tool implementation.
            idempotency_key: the key passed to the tool, if any.
            attempt: 1 for the first attempt, 2 for the first retry, ...
            tool_call_id: the id the model gave this call in its response, so the span
                joins the LLM call that asked for it.
            parent: the span (or span id) it belongs to; by default the innermost open
                ``with`` span of this context, else the task's root span.

        Raises:
            ValueError: ``side_effect`` is not one of the three classes.
        """
        if side_effect not in _SIDE_EFFECTS:
            raise ValueError(
                f"side_effect must be one of read, write, irreversible; got {side_effect!r}."
            )
        if args is None:
            args = {}
        if side_effect == _IRREVERSIBLE:
            self.check_open()
            self.require_confirmation(name, args)
        redacted, paths = self.redact(args, where="args", tool=name)
        if paths:
            # Keyed: a plain hash of a short secret (a phone number) could be reversed.
            args_hash: str | None = self.safety.scrubber.keyed_hash(to_json(args, sort_keys=True))
            args_json = to_json(redacted, sort_keys=True)
        else:
            args_json = to_json(args, sort_keys=True)
            args_hash = None  # the pipeline hashes args_json off the agent's thread
        return ToolSpan(
            self,
            name,
            args_json,
            args_hash,
            paths,
            side_effect,
            tool_version,
            idempotency_key,
            attempt,
            tool_call_id,
            parent,
        )

    def start_tool(
        self,
        name: str,
        args: Any = None,
        *,
        side_effect: str = "read",
        tool_version: str | None = None,
        idempotency_key: str | None = None,
        attempt: int = 1,
        tool_call_id: str | None = None,
        parent: Span | Task | str | None = None,
    ) -> ToolSpan:
        """Open a tool span now; record it with ``span.end(...)``, from any thread or task.

        Takes the arguments of :meth:`tool`.

        Raises:
            TaskStopped: the task is stopped.
            ValueError: ``side_effect`` is not one of the three classes.
        """
        return self.tool(
            name,
            args,
            side_effect=side_effect,
            tool_version=tool_version,
            idempotency_key=idempotency_key,
            attempt=attempt,
            tool_call_id=tool_call_id,
            parent=parent,
        ).start()

    def resolve_parent(self, parent: Any) -> tuple[str, Span | None]:
        """(parent span id, parent span object when known) for a new span or event."""
        if parent is None:
            span = current_span.get()
            while span is not None and span.ended:
                span = span._parent_span
            if span is not None and span.task is self:
                return span.span_id, span
            return self.root_span_id, None
        if parent is self:
            return self.root_span_id, None
        if isinstance(parent, Span):
            if parent.task is not self:
                raise ValueError(
                    f"parent span {parent.span_id} belongs to task {parent.task.task_id}, "
                    f"not to {self.task_id}; pass a span of this task or its span id."
                )
            return parent.span_id, parent
        if isinstance(parent, str):
            return parent, None
        raise TypeError(
            f"parent must be a span, this task or a span id string, got {type(parent).__name__}."
        )

    def agent_message(
        self,
        *,
        sender: str,
        recipient: str,
        contract: str,
        version: str,
        payload: Any,
        direction: str = "sent",
        message_id: str | None = None,
        in_reply_to: str | None = None,
    ) -> str:
        """Record a message between an orchestrator and an agent; returns its message id.

        Args:
            sender: the agent that sent it.
            recipient: the agent it is for.
            contract: name of the message contract, e.g. ``coding.request``.
            version: version of the contract the sender used.
            payload: the message body (redacted like tool arguments).
            direction: ``sent`` or ``received``, seen from this agent.
            message_id: given, or generated.
            in_reply_to: message id this one answers.
        """
        self.check_open()
        if direction not in ("sent", "received"):
            raise ValueError(f"direction must be 'sent' or 'received', got {direction!r}.")
        message_id = message_id or f"msg_{uuid.uuid4().hex[:16]}"
        redacted, _ = self.redact(payload, where="agent_message")
        payload_json = to_json(redacted)
        self.emit(
            {
                "event_type": "agent_message",
                "span_id": new_span_id(),
                "parent_span_id": self.root_span_id,
                "ts": time.time_ns() // 1000,
                "message_id": message_id,
                "in_reply_to": in_reply_to,
                "sender": sender,
                "recipient": recipient,
                "direction": direction,
                "contract_name": contract,
                "contract_version": version,
                "payload_json": payload_json,
                "payload_size": len(payload_json.encode()),
            }
        )
        return message_id

    def guard(
        self,
        kind: str,
        *,
        limit_name: str | None = None,
        limit_value: float | None = None,
        observed_value: float | None = None,
        action: str | None = None,
        decision: str | None = None,
        decided_by: str | None = None,
        detail: str | None = None,
        original_hash: str | None = None,
    ) -> None:
        """Record a guard decision (a confirmation, an escalation, a rejected input, ...)."""
        self.emit(
            {
                "event_type": "guard_event",
                "span_id": new_span_id(),
                "parent_span_id": self.resolve_parent(None)[0],
                "ts": time.time_ns() // 1000,
                "kind": str(kind),
                "limit_name": limit_name,
                "limit_value": limit_value,
                "observed_value": observed_value,
                "action": action,
                "decision": decision,
                "decided_by": decided_by,
                "detail": detail,
                "original_hash": original_hash,
            }
        )

    # -- plumbing used by spans ----------------------------------------------------------

    def emit(self, fields: dict[str, Any]) -> None:
        """Add the envelope to ``fields`` and hand the event to the pipeline. Never raises."""
        with self.lock:
            self.emit_locked(fields)

    def emit_locked(self, fields: dict[str, Any]) -> None:
        """:meth:`emit` for a caller that holds :attr:`lock`."""
        self.submit({**self.base, "step": self.step, "seq": next(self.seqs), **fields})

    def declares(self, tool: str) -> bool:
        """False only when the task declared its tools and ``tool`` is not among them."""
        return self.tools is None or tool in self.tools

    def add_usage(self, tokens: int, cost_usd: float | None) -> None:
        """Count an ended LLM call's usage; stops the task at once if a limit is crossed."""
        with self.lock:
            self.tokens += tokens
            if cost_usd is not None:
                self.spend_usd += cost_usd
        lim = self.limits
        if lim is None or self.stopped is not None:
            return
        if lim.max_tokens is not None and self.tokens >= lim.max_tokens:
            self._breach(LimitName.TOKENS, lim.max_tokens, self.tokens)
        elif lim.max_spend_usd is not None and self.spend_usd >= lim.max_spend_usd:
            self._breach(LimitName.SPEND, lim.max_spend_usd, self.spend_usd)

    def check_open(self, new_step: bool = False) -> None:
        """Raise if the task is stopped, or stop it if a limit is crossed now.

        Raises:
            TaskStopped: a fresh copy of the stop, on every call after it.
        """
        if self.stopped is None:
            lim = self.limits
            if lim is None:
                return
            if new_step and lim.max_steps is not None and self.step + 1 > lim.max_steps:
                self._breach(LimitName.STEPS, lim.max_steps, self.step + 1)
            elif lim.max_tokens is not None and self.tokens >= lim.max_tokens:
                self._breach(LimitName.TOKENS, lim.max_tokens, self.tokens)
            elif lim.max_spend_usd is not None and self.spend_usd >= lim.max_spend_usd:
                self._breach(LimitName.SPEND, lim.max_spend_usd, self.spend_usd)
            elif lim.max_wall_clock_s is not None:
                elapsed = time.monotonic() - self._started_at
                if elapsed > lim.max_wall_clock_s:
                    self._breach(LimitName.WALL_CLOCK, lim.max_wall_clock_s, elapsed)
            if self.stopped is None:
                return
        self.acknowledge_kill()
        raise self.stopped.again()

    # Kept for integrations written against the earlier name.
    check_limits = check_open

    def _breach(self, limit: str, value: float, observed: float) -> None:
        error = LimitExceeded(self.task_id, str(limit), value, observed)
        self.stop(
            error,
            guard_kind=GuardKind.LIMIT_EXCEEDED,
            limit_name=str(limit),
            limit_value=float(value),
            observed_value=float(observed),
            decided_by="limits",
            reason=f"{limit} limit {value:g} reached",
        )

    def stop(
        self,
        error: TaskStopped,
        *,
        guard_kind: str,
        reason: str,
        decided_by: str,
        **guard_fields: Any,
    ) -> bool:
        """Stop the task: record the guard event and ``error.state`` once, run the hooks.

        The path every hard stop takes (limits now, the kill switch too). Open spans
        are recorded as abandoned; every later span start, transition or message of the
        task raises a copy of ``error``. Does not raise itself.

        Returns:
            True if this call stopped the task, False if it was already stopped.
        """
        with self.lock:
            if self.stopped is not None:
                return False
            self.stopped = error
        self.guard(
            guard_kind, decision="stop", decided_by=decided_by, detail=str(error), **guard_fields
        )
        self._finish(error.state, reason=reason)
        self.stop_recorded.set()
        for hook in self._stop_hooks:
            try:
                hook(self, error)
            except Exception:
                log.exception("agenttrail: on_stop hook of task %s failed", self.task_id)
        return True
