"""``agenttrail runs``: list task runs; and the helpers the read commands share.

The helpers (store options, opening the store, error exits, plain-text tables) are used
by ``metrics``, ``replay`` and ``prices`` too, so the commands stay thin and print alike.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from agenttrail.query import OUTCOMES, QueryError, TaskRun, list_runs, parse_since
from agenttrail.store import Store, StoreError, open_store

F = TypeVar("F", bound=Callable[..., Any])

_MISSING_TABLE = ("UNKNOWN_TABLE", "Unknown table", "UNKNOWN_DATABASE", "does not exist")
CELL_CHARS = 60
"""Longest cell of a table; longer text is cut and ends with …."""


def store_options(func: F) -> F:
    """Add ``--data``, ``--clickhouse`` and ``--json`` to a command."""
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )
    func = click.option(
        "--clickhouse",
        metavar="URL",
        default=None,
        help="http(s)://user:password@host:8123/database or chdb:///path. "
        "[env AGENTTRAIL_CLICKHOUSE]",
    )(func)
    func = click.option(
        "--data",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data directory; the in-process store is DIR/clickhouse. [env AGENTTRAIL_DATA]",
    )(func)
    return func


def fail(as_json: bool, message: str, code: int = 2) -> NoReturn:
    """Print ``message`` (as a JSON error object with ``--json``) and exit with ``code``."""
    if as_json:
        click.echo(json.dumps({"status": "error", "message": message}))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def open_or_exit(data: Path | None, clickhouse: str | None, as_json: bool) -> Store:
    """Open the store, or exit 2 with the store's own explanation (locked, unreachable…)."""
    try:
        return open_store(clickhouse=clickhouse, data=data)
    except StoreError as exc:
        fail(as_json, str(exc))


def store_failure(as_json: bool, exc: StoreError) -> NoReturn:
    """Exit 2 for a failed read, with a hint when the store lacks agenttrail's tables."""
    hint = ""
    if any(marker in str(exc) for marker in _MISSING_TABLE):
        hint = (
            " Is the store migrated? Run `agenttrail migrate` with the same --data or "
            "--clickhouse (it adds the task_runs, metrics and prices tables)."
        )
    fail(as_json, f"{exc}{hint}")


def since_option(value: str | None) -> datetime | None:
    """Parse a ``--since`` value, or raise a usage error that says what to write."""
    if value is None:
        return None
    try:
        return parse_since(value)
    except QueryError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def cut(text: str, limit: int = CELL_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (a cut ends with …)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], cell_chars: int = CELL_CHARS
) -> str:
    """A plain-text table: columns padded to their widest cell, numbers right-aligned.

    None prints as ``—``; other values with ``str``; cells are cut to ``cell_chars``.
    """
    cells = [[("—" if v is None else cut(str(v), cell_chars)) for v in row] for row in rows]
    numeric = [
        all(_is_number(row[i]) for row in rows if row[i] is not None) for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


_UNITS = ("ms", "s", "min", "%")


def _is_number(value: Any) -> bool:
    """Numbers, and numbers with a currency sign or unit (``$0.01``, ``812 ms``, ``95%``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    head, _, unit = str(value).partition(" ")
    if unit and unit not in _UNITS:
        return False
    text = head.lstrip("$+-").rstrip("%").replace(",", "")
    return text.replace(".", "", 1).isdigit()


def fmt_ms(value: float | None) -> str | None:
    """Milliseconds for people: 0.42 ms, 812 ms, 12.3 s, 4.1 min."""
    if value is None:
        return None
    if value < 10:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return f"{value / 60_000:.1f} min"


def fmt_usd(value: float | None) -> str | None:
    """Dollars with enough digits for per-call costs: $0.000600, $12.34."""
    if value is None:
        return None
    return f"${value:,.2f}" if abs(value) >= 100 else f"${value:.6f}".rstrip("0").rstrip(".")


def fmt_time(value: datetime | None) -> str | None:
    """``2026-01-15 10:22:44`` (UTC, seconds)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else None


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
@store_options
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
    """
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
    if not runs:
        click.echo("No runs match.")
        return
    click.echo(render_table(RUN_HEADERS, [run_row(r) for r in runs]))
    click.echo(f"\n{len(runs)} run(s){' (limit reached)' if len(runs) == limit else ''}.")


RUN_HEADERS = (
    "task_id", "task_type", "outcome", "started (UTC)", "duration", "steps", "tokens in",
    "tokens out", "tools", "cost", "error",
)  # fmt: skip


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
