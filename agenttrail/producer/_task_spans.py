"""What a Task's code records: LLM calls, tool spans and messages between agents.

The factories of :class:`TaskSpans` build the spans of :mod:`._spans` in both forms —
``with task.tool(...)`` and ``task.start_tool(...)`` … ``span.end(...)`` — after the
task's checks (a stopped task raises; an irreversible tool needs its confirmation;
arguments and payloads are redacted before anything is queued).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from agenttrail.events import SideEffect, new_span_id
from agenttrail.producer._json import to_json
from agenttrail.producer._spans import LlmCall, Span, ToolSpan
from agenttrail.producer._task_safety import TaskSafety

if TYPE_CHECKING:
    from agenttrail.producer._task import Task

P = ParamSpec("P")
S = TypeVar("S", LlmCall, ToolSpan)

_SIDE_EFFECTS = frozenset(s.value for s in SideEffect)
_NO_PATHS: list[str] = []
"""The ``redactions`` of every tool span that redacted nothing: one list, never changed
(a fresh one per span would be one more object per span for the garbage collector)."""
_IRREVERSIBLE = SideEffect.IRREVERSIBLE.value


def _opened(factory: Callable[P, S], doc: str) -> Callable[P, S]:
    """The start/end form of a span factory: the same arguments, the span started."""

    @functools.wraps(factory)
    def start(*args: P.args, **kwargs: P.kwargs) -> S:
        return factory(*args, **kwargs).start()

    start.__doc__ = doc
    start.__name__ = f"start_{factory.__name__}"
    start.__qualname__ = f"TaskSpans.{start.__name__}"
    return start


class TaskSpans(TaskSafety):
    """Span and message factories of a task (see the module docstring)."""

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
        parent: Span | TaskSpans | str | None = None,
    ) -> LlmCall:
        """A span for one LLM call, opened by ``with``; starts a new step. See :class:`LlmCall`."""
        return LlmCall(
            cast("Task", self),
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
        parent: Span | TaskSpans | str | None = None,
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
        task: Task = self  # type: ignore[assignment]  # TaskSpans is only ever a Task
        scrubber = self.safety.scrubber
        frozen = scrubber.frozen_args(args, name)
        if frozen is not None:
            # Nothing to redact, and values whose JSON cannot change: the worker writes
            # args_json (and the pipeline hashes it) off the agent's thread.
            return ToolSpan(
                task,
                name,
                None,
                None,
                _NO_PATHS,
                side_effect,
                tool_version,
                idempotency_key,
                attempt,
                tool_call_id,
                parent,
                frozen,
            )
        # redact(args, where="args", tool=name), without its call layer (the hot path).
        redacted, found = scrubber.scrub(args, name)
        if found:
            self._redacted(found, f"args:{name}")
            # Keyed: a plain hash of a short secret (a phone number) could be reversed.
            args_hash: str | None = scrubber.keyed_hash(to_json(args, sort_keys=True))
            args_json = to_json(redacted, sort_keys=True)
        else:
            args_json = to_json(args, sort_keys=True)
            args_hash = None  # the pipeline hashes args_json off the agent's thread
        return ToolSpan(
            task,
            name,
            args_json,
            args_hash,
            [r.path for r in found] if found else _NO_PATHS,
            side_effect,
            tool_version,
            idempotency_key,
            attempt,
            tool_call_id,
            parent,
        )

    start_llm_call = _opened(
        llm_call,
        """Open an LLM call now; record it with ``call.end()``, from any thread or task.

        Takes the arguments of :meth:`llm_call`; ``parent`` is the span (or span id) it
        belongs to, by default the innermost open ``with`` span of this context, else the
        task's root span.

        Raises:
            TaskStopped: the task is stopped, or this call would cross ``max_steps``.
        """,
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
        parent: Span | TaskSpans | str | None = None,
    ) -> ToolSpan:
        """Open a tool span now; record it with ``span.end(...)``, from any thread or task.

        Takes the arguments of :meth:`tool` (spelled out, not wrapped: callback-based
        integrations call this for every tool, and a wrapper's call costs them).

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
