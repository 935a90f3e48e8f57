"""Pydantic models of the events: validation for anything that did not come from the SDK.

The SDK builds plain dicts on the agent's thread for speed; these models are for
consumers, tests and tools that want typed access, and for validating foreign input.
``parse_event`` accepts what :class:`~agenttrail.events.EventCodec` decodes;
``to_record`` gives back what it encodes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter

from agenttrail.events._names import SideEffect

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _as_str(value: Any) -> Any:
    # fastavro returns uuid.UUID for logicalType uuid; the models keep text.
    return str(value) if value is not None and not isinstance(value, str) else value


def _as_utc(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH + timedelta(microseconds=value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def to_micros(ts: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive means UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


Text = Annotated[str, BeforeValidator(_as_str)]
Timestamp = Annotated[datetime, BeforeValidator(_as_utc)]


class Envelope(BaseModel):
    """Fields every event carries (architecture.md, Events)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Text
    event_type: str
    schema_version: int = 1
    tenant: str
    task_id: str
    task_type: str
    agent_name: str
    agent_version: str
    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    step: int = Field(ge=0)
    seq: int = Field(ge=0)
    ts: Timestamp
    producer_id: str
    producer_seq: int = Field(ge=0)
    prev_hash: str = ""
    hash: str = ""

    def to_record(self) -> dict[str, Any]:
        """The Avro record of this event (timestamps as microseconds)."""
        record = self.model_dump()
        record["ts"] = to_micros(self.ts)
        return record


class LlmCall(Envelope):
    """One call to a language model."""

    event_type: Literal["llm_call"] = "llm_call"
    provider: str
    model: str
    model_version: str | None = None
    system_prompt_hash: str | None = None
    prompt_version: str | None = None
    prompt_hash: str
    messages_json: str
    message_count: int = Field(ge=0)
    params_json: str = "{}"
    response_text: str | None = None
    response_json: str | None = None
    tool_calls_json: str | None = None
    finish_reason: str | None = None
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    context_window: int | None = None
    cost_usd: float | None = None
    latency_ms: float = Field(ge=0)
    ttft_ms: float | None = None
    success: bool = True
    error_type: str | None = None
    error_detail: str | None = None
    redactions: list[str] = Field(default_factory=list)


class ToolSpan(Envelope):
    """One tool invocation."""

    event_type: Literal["tool_span"] = "tool_span"
    tool: str
    tool_version: str | None = None
    args_json: str
    args_hash: str
    idempotency_key: str | None = None
    attempt: int = Field(default=1, ge=1)
    side_effect: SideEffect = SideEffect.READ
    declared: bool = True
    result_summary: str | None = None
    result_size: int = Field(default=0, ge=0)
    latency_ms: float = Field(ge=0)
    success: bool
    error_type: str | None = None
    error_detail: str | None = None
    redactions: list[str] = Field(default_factory=list)
    tool_call_id: str | None = None


class TaskBoundary(BaseModel):
    """The task boundary recorded on a task's first transition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry_json: str = "{}"
    exit_condition: str | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    max_wall_clock_s: float | None = None
    max_spend_usd: float | None = None
    side_effect_budget: list[str] = Field(default_factory=list)
    escalation_path: str | None = None
    declared_tools: list[str] = Field(default_factory=list)


class StateTransition(Envelope):
    """A task moved between states."""

    event_type: Literal["state_transition"] = "state_transition"
    from_state: str | None = None
    to_state: str
    reason: str | None = None
    error_type: str | None = None
    error_detail: str | None = None
    boundary: TaskBoundary | None = None


class AgentMessage(Envelope):
    """A message between an orchestrator and an agent."""

    event_type: Literal["agent_message"] = "agent_message"
    message_id: str
    in_reply_to: str | None = None
    sender: str
    recipient: str
    direction: Literal["sent", "received"]
    contract_name: str
    contract_version: str
    payload_json: str
    payload_size: int = Field(ge=0)


class GuardEvent(Envelope):
    """A decision of the safety plane."""

    event_type: Literal["guard_event"] = "guard_event"
    kind: str
    limit_name: str | None = None
    limit_value: float | None = None
    observed_value: float | None = None
    action: str | None = None
    decision: str | None = None
    decided_by: str | None = None
    detail: str | None = None
    original_hash: str | None = None


class Checkpoint(Envelope):
    """How far one producer got: its sealed count and the chain heads that moved.

    The ``head_*`` lists are parallel, one entry per task.
    """

    event_type: Literal["checkpoint"] = "checkpoint"
    final: bool
    interval_s: float = Field(ge=0)
    head_tenants: list[str] = Field(default_factory=list)
    head_task_ids: list[str] = Field(default_factory=list)
    head_task_types: list[str] = Field(default_factory=list)
    head_seqs: list[int] = Field(default_factory=list)
    head_hashes: list[str] = Field(default_factory=list)
    head_ts: list[int] = Field(default_factory=list)
    head_closed: list[bool] = Field(default_factory=list)
    key_id: str | None = None
    signature: str | None = None


Event = Annotated[
    LlmCall | ToolSpan | StateTransition | AgentMessage | GuardEvent | Checkpoint,
    Field(discriminator="event_type"),
]
_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(record: dict[str, Any]) -> Event:
    """Validate a record (decoded or hand-built) into the model of its family.

    Raises:
        pydantic.ValidationError: naming each field that is wrong.
    """
    return _EVENT_ADAPTER.validate_python(record)
