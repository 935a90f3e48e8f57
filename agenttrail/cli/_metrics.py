"""``agenttrail metrics``: task metrics per task type, agent or model; step-count warnings."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from agenttrail.cli._common import (
    chosen_format,
    fail,
    fmt_ms,
    fmt_usd,
    format_options,
    open_or_exit,
    render_table,
    since_option,
    store_failure,
    to_csv,
)
from agenttrail.query import (
    GROUPINGS,
    MetricsRow,
    QueryError,
    StepTrend,
    StepWindows,
    parse_duration,
    parse_since,
    step_trends,
    task_metrics,
)
from agenttrail.store import StoreError


@click.command("metrics")
@click.option(
    "--by",
    type=click.Choice(GROUPINGS),
    default="task_type",
    show_default=True,
    help="Group by task type, agent (name and version) or model (LLM-call figures only).",
)
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="From this hour on: a duration (24h, 7d) or an ISO date/time (UTC). Default: all.",
)
@click.option(
    "--until",
    default=None,
    metavar="WHEN",
    help="End of the figures and of the regression windows (ISO date/time). Default: now.",
)
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option(
    "--window",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="Step-count regression: compare the latest window (whole hours) with the one before.",
)
@click.option(
    "--step-threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=0.2,
    show_default=True,
    help="Warn when mean steps grew by this fraction (0.2 = 20 %) between the windows.",
)
@click.option(
    "--min-tasks",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Tasks each window needs before its mean is compared.",
)
@click.option(
    "--fail-on-regression",
    is_flag=True,
    help="Exit 1 when a step-count regression is found (for cron jobs and CI).",
)
@format_options
def command(
    by: str,
    since: str | None,
    until: str | None,
    tenant: str | None,
    window: str,
    step_threshold: float,
    min_tasks: int,
    fail_on_regression: bool,
    data: Path | None,
    clickhouse: str | None,
    as_json: bool,
    fmt: str,
) -> None:
    """Success rate, mean steps, P50/P95 task duration, tokens, cost and LLM latency.

    Read from hourly aggregates kept current as events arrive. A task counts in the hour
    it ended; LLM figures in the hour of each call. Then, per task type, the mean step
    count of the latest --window is compared with the window before: sudden step growth
    often shows a prompt regression before the success rate drops, so a growth of
    --step-threshold or more is printed as a warning (on stderr; in "warnings" with
    --json). Exit 0, 1 with --fail-on-regression when a regression is found, 2 on a
    usage or connection error.

    \b
    Example:
      agenttrail metrics --data ./.agenttrail
      agenttrail metrics --by model --since 7d --json
      agenttrail metrics --window 6h --step-threshold 0.3 --fail-on-regression
    """
    fmt = chosen_format(fmt, as_json)
    as_json = fmt == "json"
    since_at = since_option(since)
    try:
        until_at = parse_since(until) if until is not None else datetime.now(UTC)
        windows = StepWindows.ending_at(until_at, parse_duration(window))
    except QueryError as exc:
        raise click.BadParameter(str(exc)) from None
    store = open_or_exit(data, clickhouse, as_json)
    with store:
        try:
            rows = task_metrics(
                store, by, since=since_at, until=windows.end if until else None, tenant=tenant
            )
            trends = step_trends(
                store, windows, threshold=step_threshold, min_tasks=min_tasks, tenant=tenant
            )
        except QueryError as exc:
            fail(as_json, str(exc))
        except StoreError as exc:
            store_failure(as_json, exc)
    warnings = [regression_warning(t, window) for t in trends if t.regressed]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": "ok",
                    "by": by,
                    "groups": [r.to_dict() for r in rows],
                    "step_trends": [t.to_dict() for t in trends],
                    "windows": windows.to_dict(),
                    "warnings": warnings,
                }
            )
        )
    elif fmt == "csv":
        click.echo(to_csv(metrics_records(rows), metrics_csv_columns(by, rows)), nl=False)
        for warning in warnings:
            click.echo(f"WARNING: {warning}", err=True)
    else:
        _print_human(by, rows, trends, window, windows)
        for warning in warnings:
            click.echo(f"WARNING: {warning}", err=True)
    if warnings and fail_on_regression:
        sys.exit(1)


def regression_warning(trend: StepTrend, window: str) -> str:
    """The sentence printed for a regressed task type."""
    assert trend.previous_mean_steps is not None and trend.latest_mean_steps is not None
    assert trend.change is not None
    return (
        f"{trend.task_type}: mean steps rose from {trend.previous_mean_steps:.2f} to "
        f"{trend.latest_mean_steps:.2f} (+{trend.change:.0%}) in the last {window} against "
        f"the {window} before ({trend.latest_tasks} and {trend.previous_tasks} tasks). Step "
        "growth often precedes a drop in success rate: check recent prompt, model and tool "
        "changes (`agenttrail runs --task-type "
        f"{trend.task_type}` and `agenttrail replay TASK_ID`)."
    )


def metrics_records(rows: list[MetricsRow]) -> list[dict[str, Any]]:
    """One flat dict per group for CSV: the group's columns first, then every figure."""
    records = []
    for r in rows:
        record = dict(r.group)
        record.update({k: v for k, v in r.to_dict().items() if k != "group"})
        records.append(record)
    return records


def metrics_csv_columns(by: str, rows: list[MetricsRow]) -> list[str]:
    """The CSV header: the grouping columns, then every field of a metrics row."""
    keys = list(rows[0].group) if rows else [by]
    return [*keys, *(f for f in MetricsRow.__dataclass_fields__ if f != "group")]


def metrics_table(by: str, rows: list[MetricsRow]) -> str:
    """The metrics table (task columns are left out when grouping by model)."""
    keys = list(rows[0].group) if rows else [by]
    llm = ["llm calls", "tokens in", "tokens out", "cost", "llm p50", "llm p95"]
    task = ["tasks", "success", "mean steps", "p50", "p95"]
    headers = [*keys, *([] if by == "model" else task), *llm]
    body = []
    for r in rows:
        cells: list[Any] = list(r.group.values())
        if by != "model":
            cells += [
                r.tasks,
                f"{r.success_rate:.1%}" if r.success_rate is not None else None,
                f"{r.mean_steps:.2f}" if r.mean_steps is not None else None,
                fmt_ms(r.duration_p50_ms),
                fmt_ms(r.duration_p95_ms),
            ]
        cost = fmt_usd(r.cost_usd)
        if r.unpriced_calls:
            cost = f"{cost} +{r.unpriced_calls} unpriced"
        cells += [
            r.llm_calls,
            r.input_tokens,
            r.output_tokens,
            cost,
            fmt_ms(r.llm_latency_p50_ms),
            fmt_ms(r.llm_latency_p95_ms),
        ]
        body.append(cells)
    return render_table(headers, body)


def _print_human(
    by: str, rows: list[MetricsRow], trends: list[StepTrend], window: str, windows: StepWindows
) -> None:
    if rows:
        click.echo(metrics_table(by, rows))
        if by != "model":
            click.echo("p50/p95: task duration (start to terminal transition).")
    else:
        click.echo("No metrics in this range (the store has no completed tasks or calls).")
    if not trends:
        return
    click.echo(
        f"\nMean steps per task type, last {window} (from {windows.latest_start:%Y-%m-%d %H:%M}"
        f" UTC) against the {window} before:"
    )
    body = [
        [
            t.task_type,
            f"{t.previous_mean_steps:.2f}" if t.previous_mean_steps is not None else None,
            t.previous_tasks,
            f"{t.latest_mean_steps:.2f}" if t.latest_mean_steps is not None else None,
            t.latest_tasks,
            f"{t.change:+.0%}" if t.change is not None else None,
            "REGRESSION" if t.regressed else "",
        ]
        for t in trends
    ]
    click.echo(
        render_table(["task_type", "before", "tasks", "latest", "tasks", "change", ""], body)
    )


__all__ = ["command"]
