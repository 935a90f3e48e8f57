"""Validation of decoded records: the contract's rules beyond what Avro itself enforces.

The rules are derived once from the pydantic models in ``agenttrail.events`` (lower
bounds, enumerations, literal values), so the models stay the one source; checking a
record then costs a few comparisons instead of a full model validation. On top of the
models: ``event_type`` and ``schema_version`` must match the schema the message was
framed with, ``ts`` must lie in the range the store can hold, and floats must be
finite (a NaN latency or cost is a producer bug, not a measurement).
"""

from __future__ import annotations

import enum
import math
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import annotated_types
from pydantic import BaseModel

from agenttrail.consumers._errors import ConsumerError
from agenttrail.events import (
    AgentMessage,
    GuardEvent,
    LlmCall,
    SchemaEntry,
    StateTransition,
    ToolSpan,
)

_MODELS: dict[str, type[BaseModel]] = {
    "llm_call": LlmCall,
    "tool_span": ToolSpan,
    "state_transition": StateTransition,
    "agent_message": AgentMessage,
    "guard_event": GuardEvent,
}

# DateTime64(6) holds 1900-01-01 .. 2299-12-31; anything outside is a producer bug.
TS_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)


class InvalidRecord(ConsumerError):
    """A record decoded but breaks the contract. ``reason`` goes to ``dead_letters.reason``."""

    reason = "invalid_record"


@dataclass(frozen=True)
class Rules:
    """Per-family rules: lower bounds, allowed values, fields that must be finite."""

    lower_bounds: tuple[tuple[str, float], ...]
    choices: tuple[tuple[str, frozenset[str]], ...]
    finite: tuple[str, ...]


def _rules_of(model: type[BaseModel]) -> Rules:
    bounds: list[tuple[str, float]] = []
    choices: list[tuple[str, frozenset[str]]] = []
    finite: list[str] = []
    for name, info in model.model_fields.items():
        if name == "event_type":
            continue  # checked against the framing schema instead
        for meta in info.metadata:
            if isinstance(meta, annotated_types.Ge):
                bounds.append((name, float(typing.cast(Any, meta.ge))))
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            choices.append((name, frozenset(str(m.value) for m in annotation)))
        elif typing.get_origin(annotation) is typing.Literal:
            choices.append((name, frozenset(str(a) for a in typing.get_args(annotation))))
        if annotation is float or annotation == float | None:
            finite.append(name)
    return Rules(tuple(bounds), tuple(choices), tuple(finite))


_RULES: dict[str, Rules] = {family: _rules_of(model) for family, model in _MODELS.items()}


def rules_for(family: str) -> Rules | None:
    """The rules of a family, or None for a family without a model."""
    return _RULES.get(family)


def validate_record(entry: SchemaEntry, record: dict[str, Any]) -> None:
    """Check one decoded record against the contract. Pure and cheap.

    Raises:
        InvalidRecord: naming the first field that breaks a rule and the rule.
    """
    family = entry.event_type
    if record.get("event_type") != family:
        raise InvalidRecord(
            f"event_type is {record.get('event_type')!r} but the message is framed with the "
            f"{family} schema (id {entry.schema_id})."
        )
    if record.get("schema_version") != entry.version:
        raise InvalidRecord(
            f"schema_version is {record.get('schema_version')!r} but the message is framed "
            f"with {family} v{entry.version} (id {entry.schema_id})."
        )
    ts = record.get("ts")
    if not isinstance(ts, datetime) or not TS_MIN <= ts <= TS_MAX:
        raise InvalidRecord(f"ts {ts!r} is outside {TS_MIN:%Y-%m-%d}..{TS_MAX:%Y-%m-%d}.")
    rules = _RULES.get(family)
    if rules is None:
        return
    for name, low in rules.lower_bounds:
        value = record.get(name)
        if value is not None and value < low:
            raise InvalidRecord(f"{family}.{name} is {value!r}; it must be >= {low:g}.")
    for name, allowed in rules.choices:
        value = record.get(name)
        if value is not None and value not in allowed:
            raise InvalidRecord(
                f"{family}.{name} is {value!r}; allowed: {', '.join(sorted(allowed))}."
            )
    for name in rules.finite:
        value = record.get(name)
        if value is not None and not math.isfinite(value):
            raise InvalidRecord(f"{family}.{name} is {value!r}; it must be a finite number.")
