"""The recording core of a Task: the envelope, ``seq``, and the events every part records.

:class:`TaskEvents` is the base of :class:`agenttrail.producer.Task`: it gives each event
the task's envelope and its ``seq`` under the task lock (``seq`` order is submission
order, across threads), records state transitions, guard decisions, and the end of a
task (spans still open are recorded abandoned first). The stops, the guards and the
span factories build on it (:mod:`._task_stops`, :mod:`._task_safety`,
:mod:`._task_spans`); :mod:`._task` puts them together.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agenttrail.events import TERMINAL_STATES, new_span_id
from agenttrail.producer._context import current_span, live_tasks
from agenttrail.producer._spans import Span

if TYPE_CHECKING:
    from agenttrail.producer._pipeline import Unsealed
    from agenttrail.producer._recorder import Recorder

log = logging.getLogger("agenttrail.producer")


class TaskEvents:
    """Envelope, ``seq`` and the task's own events. Thread-safe."""

    # Set by Task.__init__.
    recorder: Recorder
    task_id: str
    task_type: str
    entry: Any
    escalation_path: str | None
    tools: frozenset[str] | None
    base: dict[str, Any]
    root_span_id: str
    remote_parent_id: str | None
    trace_id: str
    state: str | None
    step: int
    lock: threading.Lock
    """Held while an event takes its ``seq`` and is submitted, and while spans open
    and close: ``seq`` order is submission order, also across threads."""
    seqs: itertools.count[int]
    """Where each event's ``seq`` comes from; taken under :attr:`lock`."""
    open_spans: dict[str, Span]
    submit: Callable[[Unsealed], None]

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

    # -- transitions -----------------------------------------------------------------

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

    def _on_finished(self) -> None:
        """After the terminal state is submitted (lock released); the guards' hook."""
