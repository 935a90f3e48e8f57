"""``agenttrail runs``: list task runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from agenttrail.cli._common import (
    chosen_format,
    fail,
    fmt_ms,
    fmt_time,
    fmt_usd,
    format_options,
    open_or_exit,
    render_table,
    since_option,
    store_failure,
    to_csv,
)
from agenttrail.query import OUTCOMES, QueryError, TaskRun, list_runs
from agenttrail.store import StoreError


@click.command("runs")
@click.option("--task-type", default=None, help="Only runs of this task type.")
@click.option(
    "--outcome",
    type=click.Choice(OUTCOMES),
    default=None,
    help="Only runs with this outcome (running = no terminal transition yet).",
)
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Only runs started since: a duration (30m, 24h, 7d) or an ISO date/time (UTC).",
)
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--agent", default=None, help="Only runs recorded by this agent name.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N runs."
)
@format_options
def command(
    task_type: str | None,
    outcome: str | None,
    since: str | None,
    tenant: str | None,
    agent: str | None,
    limit: int,
    data: Path | None,
    clickhouse: str | None,
    as_json: bool,
    fmt: str,
) -> None:
    """List task runs, newest first: outcome, steps, tokens, tool calls, cost, error.

    Read from the task_runs record, kept current as events arrive (never recomputed from
    the raw events). Cost is each call's reported cost, or its tokens priced from the
    price table (`agenttrail prices list`). Exit 0 (also when nothing matches), 2 on a
    usage or connection error.

    \b
    Example:
      agenttrail runs --data ./.agenttrail --outcome failed --since 24h
      agenttrail runs --task-type invoice_generation --limit 10 --json
      agenttrail runs --since 7d --format csv > runs.csv
    """
    fmt = chosen_format(fmt, as_json)
    as_json = fmt == "json"
    since_at = since_option(since)
    store = open_or_exit(data, clickhouse, as_json)
    with store:
        try:
            runs = list_runs(
                store,
                task_type=task_type,
                outcome=outcome,
                since=since_at,
                tenant=tenant,
                agent=agent,
                limit=limit,
            )
        except QueryError as exc:
            fail(as_json, str(exc))
        except StoreError as exc:
            store_failure(as_json, exc)
    if as_json:
        click.echo(json.dumps({"status": "ok", "runs": [r.to_dict() for r in runs]}))
        return
    if fmt == "csv":
        click.echo(to_csv([r.to_dict() for r in runs], RUN_CSV_COLUMNS), nl=False)
        return
    if not runs:
        click.echo("No runs match.")
        return
    click.echo(render_table(RUN_HEADERS, [run_row(r) for r in runs]))
    click.echo(f"\n{len(runs)} run(s){' (limit reached)' if len(runs) == limit else ''}.")


RUN_HEADERS = (
    "task_id", "task_type", "outcome", "started (UTC)", "duration", "steps", "tokens in",
    "tokens out", "tools", "cost", "error",
)  # fmt: skip


RUN_CSV_COLUMNS = tuple(TaskRun.__dataclass_fields__)
"""CSV columns of ``runs --format csv``: every field of a run (tool calls as JSON)."""


def run_row(run: TaskRun) -> list[Any]:
    """The table row of a run (see :data:`RUN_HEADERS`)."""
    failed = sum(1 for t in run.tool_calls if not t.success)
    tools = f"{len(run.tool_calls)}" + (f" ({failed} failed)" if failed else "")
    cost = fmt_usd(run.cost_usd)
    if run.unpriced_calls:
        cost = f"{cost} +{run.unpriced_calls} unpriced"
    return [
        run.task_id,
        run.task_type,
        run.outcome,
        fmt_time(run.start_time),
        fmt_ms(run.duration_ms),
        run.steps,
        run.input_tokens,
        run.output_tokens,
        tools,
        cost,
        run.error,
    ]


__all__ = ["command"]
