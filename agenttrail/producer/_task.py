"""A recorded task: its boundary, its events, its limits."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar, Token
from hashlib import sha256
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
from agenttrail.producer._limits import LimitExceeded, Limits
from agenttrail.producer._spans import LlmCall, ToolSpan, current_span, error_fields, to_json

if TYPE_CHECKING:
    from agenttrail.producer._recorder import Recorder

log = logging.getLogger("agenttrail.producer")

current_task: ContextVar[Task | None] = ContextVar("agenttrail_current_task", default=None)
"""The task whose ``with`` block is running in this context (used by ``@tool``)."""

_SIDE_EFFECTS = frozenset(s.value for s in SideEffect)


class Task:
    """One task run. Created by :meth:`Recorder.task`; use it as a context manager.

    Entering records the ``started`` transition with the task boundary. Leaving
    normally records ``succeeded`` (unless a terminal state was already recorded);
    leaving with an exception records ``failed`` with the error and re-raises it.
    A crossed limit raises :class:`LimitExceeded` from the next LLM or tool call.

    Methods are safe to call from several threads of the task (parallel tool calls):
    ``seq`` stays gapless.
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
        self.state: str | None = None
        self.step = 0
        self.tokens = 0
        self.spend_usd = 0.0
        self.tool_calls = 0
        self.seq = itertools.count()
        self._started_at = time.monotonic()
        self.submit = recorder.pipeline_submit
        self.summary_chars = recorder.settings.result_summary_chars
        self.base = {
            "tenant": recorder.settings.tenant,
            "task_id": self.task_id,
            "task_type": task_type,
            "agent_name": recorder.settings.agent,
            "agent_version": recorder.settings.agent_version,
            "trace_id": new_trace_id(),
        }
        self._token: Token[Task | None] | None = None
        self._limit_error: LimitExceeded | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Task:
        self.start()
        self._token = current_task.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            current_task.reset(self._token)
            self._token = None
        if self.state in TERMINAL_STATES:
            return
        if exc is None:
            self.end(TaskState.SUCCEEDED)
        else:
            error_type, detail = error_fields(exc)
            self._transition(
                TaskState.FAILED, reason="exception", error_type=error_type, error_detail=detail
            )

    def start(self) -> None:
        """Record the ``started`` transition with the task boundary (done by ``with``)."""
        if self.state is not None:
            return
        lim = self.limits or Limits()
        self._transition(
            TaskState.STARTED,
            boundary={
                "entry_json": to_json(self.entry if self.entry is not None else {}),
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

    def end(self, state: str = TaskState.SUCCEEDED, reason: str | None = None) -> None:
        """End the task in a terminal state (``succeeded`` by default)."""
        if state not in TERMINAL_STATES:
            raise ValueError(
                f"end() needs a terminal state ({', '.join(sorted(TERMINAL_STATES))}), "
                f"got {state!r}; use transition() for intermediate states."
            )
        self._transition(state, reason=reason)

    def transition(self, to_state: str, reason: str | None = None) -> None:
        """Record a state transition, e.g. ``waiting_confirmation`` with its reason."""
        self._transition(to_state, reason=reason)

    def _transition(
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
        self.emit(
            {
                "event_type": "state_transition",
                "span_id": self.root_span_id,
                "parent_span_id": None,
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
    ) -> LlmCall:
        """A span for one LLM call; starts a new step. See :class:`LlmCall`."""
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
        )

    def tool(
        self,
        name: str,
        args: Any = None,
        *,
        side_effect: str = "read",
        tool_version: str | None = None,
        idempotency_key: str | None = None,
        attempt: int = 1,
    ) -> ToolSpan:
        """A span for one tool invocation. See :class:`ToolSpan`.

        Args:
            name: the tool as the agent called it.
            args: its arguments; sensitive keys are redacted before recording, and
                ``args_hash`` hashes the original canonical JSON.
            side_effect: ``read``, ``write`` or ``irreversible``.
            tool_version: version of the tool implementation.
            idempotency_key: the key passed to the tool, if any.
            attempt: 1 for the first attempt, 2 for the first retry, ...

        Raises:
            ValueError: ``side_effect`` is not one of the three classes.
        """
        if side_effect not in _SIDE_EFFECTS:
            raise ValueError(
                f"side_effect must be one of read, write, irreversible; got {side_effect!r}."
            )
        if args is None:
            args = {}
        redacted, paths = self.recorder.args_redactor.redact(args)
        if paths:
            args_hash: str | None = sha256(to_json(args, sort_keys=True).encode()).hexdigest()
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
        if direction not in ("sent", "received"):
            raise ValueError(f"direction must be 'sent' or 'received', got {direction!r}.")
        message_id = message_id or f"msg_{uuid.uuid4().hex[:16]}"
        redacted, _ = self.recorder.args_redactor.redact(payload)
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
                "parent_span_id": current_span.get() or self.root_span_id,
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
        self.submit({**self.base, "step": self.step, "seq": next(self.seq), **fields})

    def declares(self, tool: str) -> bool:
        """False only when the task declared its tools and ``tool`` is not among them."""
        return self.tools is None or tool in self.tools

    def advance_step(self) -> int:
        self.step += 1
        return self.step

    def add_usage(self, tokens: int, cost_usd: float | None) -> None:
        self.tokens += tokens
        if cost_usd is not None:
            self.spend_usd += cost_usd

    def check_limits(self, new_step: bool) -> None:
        """Raise LimitExceeded (recording it once) when the next call would cross a limit."""
        if self._limit_error is not None:
            raise self._limit_error
        lim = self.limits
        if lim is None:
            return
        if new_step and lim.max_steps is not None and self.step + 1 > lim.max_steps:
            self._breach(LimitName.STEPS, lim.max_steps, self.step + 1)
        if lim.max_tokens is not None and self.tokens >= lim.max_tokens:
            self._breach(LimitName.TOKENS, lim.max_tokens, self.tokens)
        if lim.max_spend_usd is not None and self.spend_usd >= lim.max_spend_usd:
            self._breach(LimitName.SPEND, lim.max_spend_usd, self.spend_usd)
        if lim.max_wall_clock_s is not None:
            elapsed = time.monotonic() - self._started_at
            if elapsed > lim.max_wall_clock_s:
                self._breach(LimitName.WALL_CLOCK, lim.max_wall_clock_s, elapsed)

    def _breach(self, limit: str, value: float, observed: float) -> None:
        error = LimitExceeded(self.task_id, str(limit), value, observed)
        self.guard(
            GuardKind.LIMIT_EXCEEDED,
            limit_name=str(limit),
            limit_value=float(value),
            observed_value=float(observed),
            decision="stop",
            decided_by="limits",
            detail=str(error),
        )
        self._transition(TaskState.LIMIT_EXCEEDED, reason=f"{limit} limit {value:g} reached")
        self._limit_error = error
        raise error
