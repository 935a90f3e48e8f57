"""A recorded task: its construction and its lifecycle (start, end, transitions).

What it records and how it guards itself are the parts it is made of: see
:class:`Task`.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agenttrail.events import TERMINAL_STATES, TaskState, new_span_id, new_trace_id
from agenttrail.producer._context import current_task, enter, leave, live_tasks
from agenttrail.producer._json import to_json
from agenttrail.producer._limits import Limits, TaskStopped
from agenttrail.producer._spans import Span, error_fields
from agenttrail.producer._task_spans import TaskSpans
from agenttrail.producer._task_stops import StopHook
from agenttrail.producer._trace import check_trace_id, parse_traceparent

if TYPE_CHECKING:
    from agenttrail.producer._recorder import Recorder

_STOP_RECORD_WAIT_S = 5.0
"""How long a task's end waits for a stop that another thread is recording."""

__all__ = ["StopHook", "Task", "current_task"]


class Task(TaskSpans):
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

    Built of small parts, each in its own module: the envelope, ``seq`` and the task's
    own events (:class:`TaskEvents`), limits and stops (:class:`TaskStops`), the guards —
    confirmations, escalation, injection flags, redaction, entry validation, kills, the
    wall-clock watchdog — (:class:`TaskSafety`), and the span factories
    (:class:`TaskSpans`). This module holds its construction and its lifecycle.

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
        self.open_spans: dict[str, Span] = {}
        self.seqs = itertools.count()
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
        self.stop_recorded = threading.Event()
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
