"""Task metrics per task type, agent or model, and the step-count regression warning.

Read from the hourly aggregates ``task_metrics_hourly`` and ``llm_metrics_hourly``
(migration 0007), merging their states over the hours asked for; the raw event tables
are never read. Time ranges select whole hours: the hour containing ``since`` is in.

Task figures (tasks, outcomes, steps, duration) count each task in the hour it ended;
LLM figures (calls, tokens, cost, latency) count each call in its own hour. By model
there are only LLM figures: a task may use several models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agenttrail.query._time import QueryError
from agenttrail.store import Store

GROUPINGS: tuple[str, ...] = ("task_type", "agent", "model")
"""What ``task_metrics`` can group by."""

_GROUP_COLUMNS = {
    "task_type": ("task_type",),
    "agent": ("agent_name", "agent_version"),
    "model": ("model",),
}
_QUANTILES = "quantilesMerge(0.5, 0.9, 0.95, 0.99)"


def _stable(value: float) -> float:
    """A float sum to 9 decimals (a nano-dollar, a nanosecond of a millisecond).

    The engine adds floats in whatever order its threads and parts give, so the last
    bits of a sum differ between two reads of the same rows; rounded, the same rows
    always print the same figures.
    """
    return round(value, 9)


@dataclass(frozen=True)
class MetricsRow:
    """Metrics of one group over the chosen hours.

    Attributes:
        group: the grouping columns and their values, e.g. ``{"task_type": "invoice"}``.
        tasks: tasks that ended (None when grouped by model).
        outcomes: tasks per terminal state.
        success_rate: succeeded / tasks.
        mean_steps: mean of the tasks' step counts.
        duration_p50_ms, duration_p95_ms, mean_duration_ms: task duration.
        llm_calls, llm_failures: LLM calls and failed ones.
        input_tokens, output_tokens, cached_tokens: token sums of the calls.
        cost_usd: reported or priced cost of the calls; ``unpriced_calls`` have neither.
        llm_latency_p50_ms, llm_latency_p95_ms, mean_llm_latency_ms: LLM call latency.
    """

    group: dict[str, str]
    tasks: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    success_rate: float | None = None
    mean_steps: float | None = None
    duration_p50_ms: float | None = None
    duration_p95_ms: float | None = None
    mean_duration_ms: float | None = None
    llm_calls: int = 0
    llm_failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    llm_latency_p50_ms: float | None = None
    llm_latency_p95_ms: float | None = None
    mean_llm_latency_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _hour_filter(
    since: datetime | None, until: datetime | None, tenant: str | None
) -> tuple[str, dict[str, Any]]:
    where: list[str] = ["1"]
    params: dict[str, Any] = {}
    if since is not None:
        where.append("hour >= toStartOfHour({since:DateTime('UTC')})")
        params["since"] = since.astimezone(UTC).replace(tzinfo=None)
    if until is not None:
        where.append("hour < {until:DateTime('UTC')}")
        params["until"] = until.astimezone(UTC).replace(tzinfo=None)
    if tenant is not None:
        where.append("tenant = {tenant:String}")
        params["tenant"] = tenant
    return " AND ".join(where), params


def task_metrics(
    store: Store,
    by: str = "task_type",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant: str | None = None,
) -> list[MetricsRow]:
    """Metrics per group over the hours from ``since`` (default: all) to ``until``.

    Blocks on one or two queries over the hourly aggregates.

    Args:
        by: ``task_type``, ``agent`` (name and version) or ``model``.
        since: first hour included (the hour containing it).
        until: hours starting at or after it are excluded (default: none).
        tenant: only this tenant.

    Raises:
        QueryError: ``by`` is not one of :data:`GROUPINGS`.
        StoreUnavailable: the store failed a query (e.g. not migrated).
    """
    if by not in GROUPINGS:
        raise QueryError(f"Cannot group metrics by {by!r}; use one of {', '.join(GROUPINGS)}.")
    columns = _GROUP_COLUMNS[by]
    where, params = _hour_filter(since, until, tenant)
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    if by != "model":
        for key, values in _task_part(store, columns, where, params).items():
            rows.setdefault(key, {}).update(values)
    for key, values in _llm_part(store, columns, where, params).items():
        rows.setdefault(key, {}).update(values)
    return [
        MetricsRow(group=dict(zip(columns, key, strict=True)), **values)
        for key, values in sorted(rows.items())
    ]


def _task_part(
    store: Store, columns: tuple[str, ...], where: str, params: dict[str, Any]
) -> dict[tuple[str, ...], dict[str, Any]]:
    keys = ", ".join(columns)
    sql = (
        f"SELECT {keys}, sum(tasks), sum(succeeded), sum(failed), sum(limit_exceeded), "
        f"sum(killed), sum(steps_sum), sum(timed_tasks), sum(duration_ms_sum), "
        f"{_QUANTILES}(duration_ms_state) "
        f"FROM {store.database}.task_metrics_hourly WHERE {where} GROUP BY {keys}"
    )
    out = {}
    n = len(columns)
    for row in store.query(sql, params):
        tasks, ok, failed, limit, killed, steps, timed, duration_sum, q = row[n:]
        out[tuple(str(v) for v in row[:n])] = {
            "tasks": int(tasks),
            "outcomes": {
                "succeeded": int(ok),
                "failed": int(failed),
                "limit_exceeded": int(limit),
                "killed": int(killed),
            },
            "success_rate": int(ok) / int(tasks) if tasks else None,
            "mean_steps": int(steps) / int(tasks) if tasks else None,
            "mean_duration_ms": _stable(float(duration_sum) / int(timed)) if timed else None,
            "duration_p50_ms": float(q[0]) if timed else None,
            "duration_p95_ms": float(q[2]) if timed else None,
        }
    return out


def _llm_part(
    store: Store, columns: tuple[str, ...], where: str, params: dict[str, Any]
) -> dict[tuple[str, ...], dict[str, Any]]:
    keys = ", ".join(f"m.{c}" for c in columns)  # qualified: p has a model column too
    # Priced per (model, day) before grouping: the price depends on both.
    inner_keys = ", ".join(dict.fromkeys((*columns, "model")))
    sql = f"""
        SELECT {keys}, sum(m.calls), sum(m.failures), sum(m.input_tokens),
               sum(m.output_tokens), sum(m.cached_tokens),
               sum(m.reported_cost_usd) + sum(if(p.priced = 1,
                   agenttrail_priced_cost(m.uncached_in, m.cached_in, m.unreported_out,
                       p.input_usd_per_mtok, p.cached_usd_per_mtok, p.output_usd_per_mtok),
                   0)),
               sum(if(p.priced = 1, 0, m.unreported_calls)),
               sum(m.latency_sum), {_QUANTILES}(m.latency_state)
        FROM (
            SELECT {inner_keys}, toDate(hour) AS day,
                   sum(calls) AS calls, sum(failures) AS failures,
                   sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                   sum(cached_tokens) AS cached_tokens,
                   sum(reported_cost_usd) AS reported_cost_usd,
                   sum(unreported_calls) AS unreported_calls,
                   sum(unreported_uncached_input_tokens) AS uncached_in,
                   sum(unreported_cached_tokens) AS cached_in,
                   sum(unreported_output_tokens) AS unreported_out,
                   sum(latency_ms_sum) AS latency_sum,
                   quantilesMergeState(0.5, 0.9, 0.95, 0.99)(latency_ms_state) AS latency_state
            FROM {store.database}.llm_metrics_hourly
            WHERE {where}
            GROUP BY {inner_keys}, day
        ) AS m
        ASOF LEFT JOIN {store.database}.model_prices_current AS p
            ON m.model = p.model AND m.day >= p.effective_from
        GROUP BY {keys}
    """
    out = {}
    n = len(columns)
    for row in store.query(sql, params):
        calls, failures, tin, tout, tcached, cost, unpriced, latency_sum, q = row[n:]
        out[tuple(str(v) for v in row[:n])] = {
            "llm_calls": int(calls),
            "llm_failures": int(failures),
            "input_tokens": int(tin),
            "output_tokens": int(tout),
            "cached_tokens": int(tcached),
            "cost_usd": _stable(float(cost)),
            "unpriced_calls": int(unpriced),
            "mean_llm_latency_ms": _stable(float(latency_sum) / int(calls)) if calls else None,
            "llm_latency_p50_ms": float(q[0]) if calls else None,
            "llm_latency_p95_ms": float(q[2]) if calls else None,
        }
    return out


@dataclass(frozen=True)
class StepTrend:
    """Mean steps of one task type in the latest window and the window before it.

    Attributes:
        task_type: the task type.
        previous_tasks, latest_tasks: tasks that ended in each window.
        previous_mean_steps, latest_mean_steps: their mean step counts (None: no task).
        change: latest / previous - 1 (None when either window is empty).
        regressed: both windows have at least the minimum tasks and ``change`` is at
            least the threshold: steps grew, often a prompt regression before it shows
            in the success rate.
    """

    task_type: str
    previous_tasks: int
    latest_tasks: int
    previous_mean_steps: float | None
    latest_mean_steps: float | None
    change: float | None
    regressed: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class StepWindows:
    """The two windows compared: [previous_start, latest_start) and [latest_start, end)."""

    previous_start: datetime
    latest_start: datetime
    end: datetime

    @classmethod
    def ending_at(cls, until: datetime, window: timedelta) -> StepWindows:
        """Windows of ``window`` (whole hours) ending with the hour that contains ``until``.

        Raises:
            QueryError: ``window`` is not a whole number of hours.
        """
        hours = window / timedelta(hours=1)
        if hours < 1 or hours != int(hours):
            raise QueryError(
                f"The regression window must be a whole number of hours (the metrics are "
                f"hourly), got {window}."
            )
        end = until.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        end += timedelta(hours=1)
        return cls(end - 2 * window, end - window, end)

    def to_dict(self) -> dict[str, str]:
        """ISO 8601 bounds."""
        return {k: getattr(self, k).isoformat() for k in ("previous_start", "latest_start", "end")}


def step_trends(
    store: Store,
    windows: StepWindows,
    *,
    threshold: float = 0.2,
    min_tasks: int = 20,
    tenant: str | None = None,
) -> list[StepTrend]:
    """Mean step count per task type in the two windows; flags growth of ``threshold``.

    Blocks on one query over ``task_metrics_hourly``.

    Args:
        windows: the windows to compare (:meth:`StepWindows.ending_at`).
        threshold: relative growth that counts as a regression (0.2 = 20 % more steps).
        min_tasks: tasks each window needs before a change is judged.
        tenant: only this tenant.

    Raises:
        StoreUnavailable: the store failed the query.
    """
    sql = (
        "SELECT task_type, "
        "sumIf(tasks, hour < {mid:DateTime('UTC')}), "
        "sumIf(steps_sum, hour < {mid:DateTime('UTC')}), "
        "sumIf(tasks, hour >= {mid:DateTime('UTC')}), "
        "sumIf(steps_sum, hour >= {mid:DateTime('UTC')}) "
        f"FROM {store.database}.task_metrics_hourly "
        "WHERE hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}"
    )
    params: dict[str, Any] = {
        "start": windows.previous_start.replace(tzinfo=None),
        "mid": windows.latest_start.replace(tzinfo=None),
        "end": windows.end.replace(tzinfo=None),
    }
    if tenant is not None:
        sql += " AND tenant = {tenant:String}"
        params["tenant"] = tenant
    trends = []
    for task_type, prev_n, prev_steps, last_n, last_steps in store.query(
        sql + " GROUP BY task_type ORDER BY task_type", params
    ):
        prev_mean = int(prev_steps) / int(prev_n) if prev_n else None
        last_mean = int(last_steps) / int(last_n) if last_n else None
        change = last_mean / prev_mean - 1 if prev_mean and last_mean is not None else None
        trends.append(
            StepTrend(
                task_type=str(task_type),
                previous_tasks=int(prev_n),
                latest_tasks=int(last_n),
                previous_mean_steps=prev_mean,
                latest_mean_steps=last_mean,
                change=change,
                regressed=(
                    change is not None
                    and int(prev_n) >= min_tasks
                    and int(last_n) >= min_tasks
                    and change >= threshold
                ),
            )
        )
    return trends
