"""Replay a task: its timeline across every family, and exactly what the model saw at a step.

The timeline comes from the parameterised view ``task_replay`` (migration 0008), the
step from ``llm_calls`` itself: ``messages_json`` is returned exactly as stored, which
is exactly as the SDK serialised it when the call was made (its SHA-256 is the
recorded ``prompt_hash``).

Both first look the task up in ``task_index`` (migration 0009: tenant, first and last
event time, by task id) and then read each family table with ``tenant`` and ``ts``
bounds as well as the task id: parts outside the task's time span are skipped and each
remaining part is read over the task's index range only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agenttrail.query._time import QueryError
from agenttrail.store import Store


class TaskNotFound(QueryError):
    """The store holds no event of the task (or of the step asked for)."""


@dataclass(frozen=True)
class TimelineEvent:
    """One event of a task's timeline.

    Attributes:
        ok: False for a failed call or span, a failing terminal state, or a guard
            event that stopped or refused something.
        summary: one line, at most 100 characters.
    """

    tenant: str
    task_id: str
    seq: int
    step: int
    ts: datetime
    family: str
    span_id: str
    parent_span_id: str | None
    ok: bool
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``ts`` as ISO 8601)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["ts"] = self.ts.isoformat()
        return out


@dataclass(frozen=True)
class TaskLocation:
    """Where a task's events are: its tenant and the time span of its stored events."""

    tenant: str
    first_ts: datetime
    last_ts: datetime

    def params(self) -> dict[str, Any]:
        """Bound values of the condition :func:`_within` (naive UTC, as the driver expects)."""
        return {
            "tenant": self.tenant,
            "first_ts": self.first_ts.astimezone(UTC).replace(tzinfo=None),
            "last_ts": self.last_ts.astimezone(UTC).replace(tzinfo=None),
        }


def _within(alias: str = "") -> str:
    """The condition that confines a family table to a :class:`TaskLocation`."""
    return (
        f"{alias}tenant = {{tenant:String}} AND {alias}ts >= {{first_ts:DateTime64(6, 'UTC')}} "
        f"AND {alias}ts <= {{last_ts:DateTime64(6, 'UTC')}}"
    )


def locate_task(store: Store, task_id: str, tenant: str | None = None) -> list[TaskLocation]:
    """The tenants holding ``task_id`` (usually one) and the span of its events' ``ts``.

    Blocks on one query over ``task_index`` (one granule per part).

    Raises:
        StoreUnavailable: the store failed the query (e.g. not migrated).
    """
    sql = (
        f"SELECT tenant, min(first_ts), max(last_ts) FROM {store.database}.task_index "
        "WHERE task_id = {task_id:String}"
    )
    params: dict[str, Any] = {"task_id": task_id}
    if tenant is not None:
        sql += " AND tenant = {tenant:String}"
        params["tenant"] = tenant
    rows = store.query(sql + " GROUP BY tenant ORDER BY tenant", params)
    return [TaskLocation(str(r[0]), _utc(r[1]), _utc(r[2])) for r in rows]


def replay_task(store: Store, task_id: str, tenant: str | None = None) -> list[TimelineEvent]:
    """Every stored event of ``task_id``, ordered by tenant and seq.

    Blocks on two queries (the location, then the events), plus one per further tenant
    holding the same id.

    Raises:
        TaskNotFound: no event of the task is stored (in ``tenant``, when given).
        StoreUnavailable: the store failed the query (e.g. not migrated).
    """
    sql = (
        "SELECT tenant, task_id, seq, step, ts, family, span_id, parent_span_id, ok, summary "
        f"FROM {store.database}.task_replay(task_id = {{task_id:String}}) "
        f"WHERE {_within()} ORDER BY seq"
    )
    rows = []
    for where in locate_task(store, task_id, tenant):
        rows += store.query(sql, {"task_id": task_id, **where.params()})
    if not rows:
        raise TaskNotFound(_not_found(store, task_id, tenant))
    return [
        TimelineEvent(
            tenant=str(r[0]),
            task_id=str(r[1]),
            seq=int(r[2]),
            step=int(r[3]),
            ts=_utc(r[4]),
            family=str(r[5]),
            span_id=str(r[6]),
            parent_span_id=str(r[7]) if r[7] is not None else None,
            ok=bool(r[8]),
            summary=str(r[9]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ModelInput:
    """One LLM call as the model saw it, and what it answered.

    Attributes:
        messages_json: the message history exactly as sent (as the SDK serialised it,
            after any configured redaction).
        params_json: the request parameters (temperature, tools, ...).
        prompt_hash: SHA-256 of ``messages_json``.
        cost_usd: the call's cost; ``cost_source`` says whether the agent reported it
            (``agent``), it was priced from the price table (``price``), or neither
            (``unpriced``, cost None).
    """

    tenant: str
    task_id: str
    step: int
    seq: int
    ts: datetime
    provider: str
    model: str
    model_version: str | None
    prompt_version: str | None
    system_prompt_hash: str | None
    prompt_hash: str
    message_count: int
    messages_json: str
    params_json: str
    response_text: str | None
    response_json: str | None
    tool_calls_json: str | None
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    context_window: int | None
    latency_ms: float
    ttft_ms: float | None
    success: bool
    error_type: str | None
    error_detail: str | None
    redactions: tuple[str, ...]
    cost_usd: float | None
    cost_source: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``ts`` as ISO 8601); strings are unchanged."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["ts"] = self.ts.isoformat()
        out["redactions"] = list(self.redactions)
        return out


_STEP_COLUMNS = (
    "tenant", "task_id", "step", "seq", "ts", "provider", "model", "model_version",
    "prompt_version", "system_prompt_hash", "prompt_hash", "message_count", "messages_json",
    "params_json", "response_text", "response_json", "tool_calls_json", "finish_reason",
    "input_tokens", "output_tokens", "cached_tokens", "context_window", "latency_ms",
    "ttft_ms", "success", "error_type", "error_detail", "redactions",
)  # fmt: skip


def model_input_at_step(
    store: Store, task_id: str, step: int, tenant: str | None = None
) -> list[ModelInput]:
    """The LLM call(s) of ``task_id`` at ``step``: the messages as sent and the answer.

    The SDK starts a new step with every LLM call, so a step has one call; several are
    returned only when the id exists in several tenants. Blocks on two queries (the
    location, then the call), plus one per further tenant holding the same id.

    Raises:
        TaskNotFound: the task has no LLM call at ``step`` (the message lists the steps
            it has, or says the task is unknown).
        StoreUnavailable: the store failed the query.
    """
    db = store.database
    cols = ", ".join(f"l.{c}" for c in _STEP_COLUMNS)
    sql = (
        f"SELECT {cols}, k.cost_usd, k.cost_source FROM {db}.llm_calls AS l "
        "LEFT JOIN (SELECT tenant, seq, cost_usd, cost_source "
        f"FROM {db}.llm_call_costs WHERE task_id = {{task_id:String}} AND step = {{step:Int32}}"
        f" AND {_within()}) AS k ON l.tenant = k.tenant AND l.seq = k.seq "
        f"WHERE l.task_id = {{task_id:String}} AND l.step = {{step:Int32}} "
        f"AND {_within('l.')} "
        "ORDER BY l.seq"
    )
    rows = []
    for where in locate_task(store, task_id, tenant):
        rows += store.query(sql, {"task_id": task_id, "step": step, **where.params()})
    if not rows:
        raise TaskNotFound(_no_step(store, task_id, step, tenant))
    out = []
    for row in rows:
        values = dict(zip(_STEP_COLUMNS, row, strict=False))
        values["ts"] = _utc(values["ts"])
        values["redactions"] = tuple(values["redactions"])
        cost, source = row[len(_STEP_COLUMNS)], row[len(_STEP_COLUMNS) + 1]
        out.append(
            ModelInput(
                **values,
                cost_usd=float(cost) if cost is not None else None,
                cost_source=str(source) if source else "unpriced",
            )
        )
    return out


def _not_found(store: Store, task_id: str, tenant: str | None) -> str:
    where = f" in tenant {tenant!r}" if tenant is not None else ""
    return (
        f"No events of task {task_id!r}{where} in store {store.location}. Check the id "
        "(`agenttrail runs` lists recent tasks) and the store (--data / --clickhouse)."
    )


def _no_step(store: Store, task_id: str, step: int, tenant: str | None) -> str:
    params: dict[str, Any] = {"task_id": task_id}
    sql = f"SELECT DISTINCT step FROM {store.database}.llm_calls WHERE task_id = {{task_id:String}}"
    if tenant is not None:
        sql += " AND tenant = {tenant:String}"
        params["tenant"] = tenant
    steps = sorted(int(r[0]) for r in store.query(sql, params))
    if not steps:
        return _not_found(store, task_id, tenant).replace("No events", "No LLM calls", 1)
    return (
        f"Task {task_id!r} has no LLM call at step {step}; its steps are "
        f"{_ranges(steps)}. `agenttrail replay {task_id}` shows the timeline."
    )


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 5]`` → ``1-3, 5``."""
    parts: list[str] = []
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
