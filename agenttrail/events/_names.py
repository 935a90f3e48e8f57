"""The single source of names: topics, event families, task states, guard kinds.

SQL, dashboards and code all use these spellings; change them here or nowhere.
"""

from __future__ import annotations

from enum import StrEnum

EVENTS_TOPIC = "agenttrail.events"
"""Topic that carries every event, keyed by task id."""

CONTROL_TOPIC = "agenttrail.control"
"""Topic that carries kill commands to running agents."""

TOPICS: tuple[str, ...] = (EVENTS_TOPIC, CONTROL_TOPIC)


class EventType(StrEnum):
    """Event families. Each has its own schema directory and ClickHouse table."""

    LLM_CALL = "llm_call"
    TOOL_SPAN = "tool_span"
    STATE_TRANSITION = "state_transition"
    AGENT_MESSAGE = "agent_message"
    GUARD_EVENT = "guard_event"
    CHECKPOINT = "checkpoint"
    """How far one producer got (its count and chain heads); see ``schemas/checkpoint``."""


class TaskState(StrEnum):
    """States a task moves through. The last four are terminal."""

    STARTED = "started"
    RUNNING = "running"
    WAITING_CONFIRMATION = "waiting_confirmation"
    ESCALATED = "escalated"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LIMIT_EXCEEDED = "limit_exceeded"
    KILLED = "killed"


TERMINAL_STATES: frozenset[str] = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.LIMIT_EXCEEDED, TaskState.KILLED}
)


class SideEffect(StrEnum):
    """What a tool does to the outside world."""

    READ = "read"
    WRITE = "write"
    IRREVERSIBLE = "irreversible"


class GuardKind(StrEnum):
    """Decisions of the safety plane recorded as guard events."""

    LIMIT_EXCEEDED = "limit_exceeded"
    CONFIRMATION_REQUESTED = "confirmation_requested"
    CONFIRMATION_GRANTED = "confirmation_granted"
    CONFIRMATION_DENIED = "confirmation_denied"
    ESCALATION = "escalation"
    KILL_REQUESTED = "kill_requested"
    KILL_ACKNOWLEDGED = "kill_acknowledged"
    INPUT_REJECTED = "input_rejected"
    INJECTION_SUSPECTED = "injection_suspected"
    REDACTION_APPLIED = "redaction_applied"


class LimitName(StrEnum):
    """The hard limits a task can carry."""

    TOKENS = "tokens"
    STEPS = "steps"
    WALL_CLOCK = "wall_clock"
    SPEND = "spend"


class MessageDirection(StrEnum):
    """Direction of an agent message, seen from the emitting agent."""

    SENT = "sent"
    RECEIVED = "received"
