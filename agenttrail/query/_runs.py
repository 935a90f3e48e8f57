"""Task runs: the task-run record of each task, read from the derived ``task_runs`` views.

The records are maintained by materialized views as events arrive (migration 0006);
reading them never scans the raw event tables. Costs are priced at read time from
``model_prices`` (migration 0004), so they follow the current prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agenttrail.events import TERMINAL_STATES
from agenttrail.query._time import QueryError
from agenttrail.store import Store

OUTCOMES: tuple[str, ...] = (*sorted(str(s) for s in TERMINAL_STATES), "running")
"""Values of a run's ``outcome``: its first terminal state, or ``running`` while none."""


@dataclass(frozen=True)
class ToolCall:
    """One tool span of a run, as the field note's record lists it."""

    seq: int
    step: int
    tool: str
    latency_ms: float
    success: bool


@dataclass(frozen=True)
class TaskRun:
    """The task-run record of one task (see migration 0006 for each definition).

    ``end_time`` and ``duration_ms`` are None while the task has no terminal transition;
    ``outcome`` is then ``running``. ``cost_usd`` covers every call that has a reported
    cost or a price; ``unpriced_calls`` counts the calls that have neither.
    """

    tenant: str
    task_id: str
    task_type: str
    agent_name: str
    agent_version: str
    start_time: datetime
    end_time: datetime | None
    last_event_at: datetime
    duration_ms: float | None
    outcome: str
    error: str | None
    steps: int
    events: int
    max_seq: int
    llm_calls: int
    llm_failures: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    llm_latency_ms: float
    models: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    tool_failures: int
    agent_messages: int
    guard_events: int
    cost_usd: float
    unpriced_calls: int

    @property
    def complete(self) -> bool:
        """Whether every seq from 0 to the highest one seen is stored (no gap)."""
        return self.events == self.max_seq + 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; times are ISO 8601 strings in UTC."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif name == "tool_calls":
                value = [vars(call) for call in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


_RECORD_COLUMNS = (
    "tenant, task_id, task_type, agent_name, agent_version, start_time, end_time, "
    "last_event_at, duration_ms, outcome, error, steps, events, max_seq, llm_calls, "
    "llm_failures, input_tokens, output_tokens, cached_tokens, llm_latency_ms, models, "
    "tool_calls, tool_failures, agent_messages, guard_events"
)


def list_runs(
    store: Store,
    *,
    task_type: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    tenant: str | None = None,
    agent: str | None = None,
    limit: int = 50,
) -> list[TaskRun]:
    """The most recently started runs matching every given filter, newest first.

    Blocks on three queries: the keys of the matching runs (only the filtered and
    sorted aggregates are merged, over every task), then the full records and the costs
    of those keys (index ranges). Values are bound by the driver.

    Args:
        task_type: only this task type.
        outcome: only this outcome (one of :data:`OUTCOMES`).
        since: only runs that started at or after this time.
        tenant: only this tenant.
        agent: only runs recorded by this agent name.
        limit: at most this many runs (1 or more).

    Raises:
        QueryError: ``outcome`` is not one of :data:`OUTCOMES`, or ``limit`` < 1.
        StoreUnavailable: the store failed the query (e.g. not migrated).
    """
    if outcome is not None and outcome not in OUTCOMES:
        raise QueryError(f"Outcome {outcome!r} is unknown; use one of {', '.join(OUTCOMES)}.")
    if limit < 1:
        raise QueryError(f"limit must be 1 or more, got {limit}.")
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    for column, value, placeholder in (
        ("tenant", tenant, "{tenant:String}"),
        ("task_type", task_type, "{task_type:String}"),
        ("agent_name", agent, "{agent:String}"),
        ("outcome", outcome, "{outcome:String}"),
        ("start_time", since, "{since:DateTime64(6, 'UTC')}"),
    ):
        if value is not None:
            op = ">=" if column == "start_time" else "="
            where.append(f"{column} {op} {placeholder}")
            params[placeholder[1:].split(":")[0]] = value
    keys = [
        (str(r[0]), str(r[1]))
        for r in store.query(
            f"SELECT tenant, task_id FROM {store.database}.task_run_records"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY start_time DESC, task_id LIMIT {limit:UInt32}",
            params,
        )
    ]
    runs = {(r.tenant, r.task_id): r for r in _records(store, keys)}
    return [runs[k] for k in keys if k in runs]


def _records(store: Store, keys: list[tuple[str, str]]) -> list[TaskRun]:
    """The full records (with cost) of ``keys``, in no particular order."""
    if not keys:
        return []
    records = store.query(
        f"SELECT {_RECORD_COLUMNS} FROM {store.database}.task_run_records "
        "WHERE (tenant, task_id) IN {keys:Array(Tuple(String, String))}",
        {"keys": keys},
    )
    costs = _costs(store, keys)
    return [_run(row, *costs.get((str(row[0]), str(row[1])), (0.0, 0))) for row in records]


def get_run(store: Store, task_id: str, tenant: str | None = None) -> list[TaskRun]:
    """The record of ``task_id`` (one per tenant that has the id; usually one or none).

    Blocks on three small queries (keys, record, cost).

    Raises:
        StoreUnavailable: the store failed the query.
    """
    sql = (
        f"SELECT DISTINCT tenant, task_id FROM {store.database}.task_index "
        "WHERE task_id = {t:String}"
    )
    params: dict[str, Any] = {"t": task_id}
    if tenant is not None:
        sql += " AND tenant = {tenant:String}"
        params["tenant"] = tenant
    keys = [(str(r[0]), str(r[1])) for r in store.query(sql, params)]
    return sorted(_records(store, keys), key=lambda r: r.tenant)


def _costs(store: Store, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, int]]:
    rows = store.query(
        "SELECT tenant, task_id, cost_usd, unpriced_calls "
        f"FROM {store.database}.task_costs "
        "WHERE (tenant, task_id) IN {keys:Array(Tuple(String, String))}",
        {"keys": keys},
    )
    # Rounded to a nano-dollar: float sums differ in their last bits between reads.
    return {(str(r[0]), str(r[1])): (round(float(r[2]), 9), int(r[3])) for r in rows}


def _run(row: tuple[Any, ...], cost_usd: float, unpriced_calls: int) -> TaskRun:
    (tenant, task_id, task_type, agent_name, agent_version, start_time, end_time,
     last_event_at, duration_ms, outcome, error, steps, events, max_seq, llm_calls,
     llm_failures, input_tokens, output_tokens, cached_tokens, llm_latency_ms, models,
     tool_calls, tool_failures, agent_messages, guard_events) = row  # fmt: skip
    return TaskRun(
        tenant=str(tenant),
        task_id=str(task_id),
        task_type=str(task_type),
        agent_name=str(agent_name),
        agent_version=str(agent_version),
        start_time=_utc(start_time),
        end_time=_utc(end_time) if end_time is not None else None,
        last_event_at=_utc(last_event_at),
        duration_ms=float(duration_ms) if duration_ms is not None else None,
        outcome=str(outcome),
        error=str(error) if error is not None else None,
        steps=int(steps),
        events=int(events),
        max_seq=int(max_seq),
        llm_calls=int(llm_calls),
        llm_failures=int(llm_failures),
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cached_tokens=int(cached_tokens),
        llm_latency_ms=round(float(llm_latency_ms), 9),  # a float sum: see _costs
        models=tuple(str(m) for m in models),
        tool_calls=tuple(_tool_call(t) for t in tool_calls),
        tool_failures=int(tool_failures),
        agent_messages=int(agent_messages),
        guard_events=int(guard_events),
        cost_usd=cost_usd,
        unpriced_calls=unpriced_calls,
    )


def _tool_call(value: Any) -> ToolCall:
    # clickhouse-connect returns a named Tuple as a dict (a plain tuple on older versions).
    if isinstance(value, dict):
        value = tuple(value[k] for k in ("seq", "step", "tool", "latency_ms", "success"))
    seq, step, tool, latency_ms, success = value
    return ToolCall(int(seq), int(step), str(tool), float(latency_ms), bool(success))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
