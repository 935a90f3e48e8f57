"""``agenttrail query``: list, describe and run the named forensic queries."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import textwrap
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import click

from agenttrail.cli._common import store_location_options
from agenttrail.query import (
    NamedQuery,
    NamedQueryError,
    QueryResult,
    discover_named_queries,
    load_named_query,
)
from agenttrail.store import StoreError, open_store

_CELL_CHARS = 48
_MISSING_TABLES = ("UNKNOWN_TABLE", "UNKNOWN_DATABASE", "Unknown table", "does not exist")


@click.command("query")
@click.argument("name", required=False)
@click.option("--list", "list_all", is_flag=True, help="List the named queries and what they find.")
@click.option(
    "--help-query", is_flag=True, help="Show NAME's purpose, parameters and output columns."
)
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter of the query (repeatable); values are bound, never pasted into SQL.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="How to print the rows.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json; also for --list.")
@store_location_options
def command(
    name: str | None,
    list_all: bool,
    help_query: bool,
    params: tuple[str, ...],
    fmt: str,
    as_json: bool,
    data: Path | None,
    clickhouse: str | None,
) -> None:
    """Run a named forensic query (queries/forensics/NAME.sql) against a store.

    Each query finds one failure of production agents: repeated non-idempotent calls,
    hallucinated tools, loops, limit hits, cost outliers, slow tools, the root cause of
    failed tasks, contract version mismatches, context growth. Exit 0 when the query ran
    (also when it found nothing), 2 on a usage or connection error.

    \b
    Example:
      agenttrail query --list
      agenttrail query tool_loops --help-query
      agenttrail query tool_loops --data ./.agenttrail --param min_repeats=5 --param since=24h
      agenttrail query cost_outliers --clickhouse http://default:pw@ch:8123/agenttrail --format csv
    """
    fmt = "json" if as_json else fmt
    try:
        if list_all:
            _print_list(discover_named_queries(), fmt)
            return
        if name is None:
            _fail(fmt, "Name a query (agenttrail query NAME), or list them with --list.")
        query = load_named_query(name)
    except (NamedQueryError, OSError) as exc:
        _fail(fmt, str(exc))
    if help_query:
        click.echo(json.dumps(_describe(query)) if fmt == "json" else _help_text(query))
        return
    now = datetime.now(UTC)
    try:
        values = _parse_params(params)
        query.bind(values, now)  # refuse bad values before touching the store
    except (click.UsageError, NamedQueryError) as exc:
        _fail(fmt, str(exc))
    try:
        store = open_store(clickhouse=clickhouse, data=data, create=False)
    except StoreError as exc:
        _fail(fmt, str(exc))
    with store:
        try:
            result = query.run(store, values, now)
        except StoreError as exc:
            hint = ""
            if any(marker in str(exc) for marker in _MISSING_TABLES):
                hint = " Is this an agenttrail store? Run `agenttrail migrate` against it first."
            _fail(fmt, f"Query {name} failed: {exc}{hint}")
        except NamedQueryError as exc:
            _fail(fmt, str(exc))
    click.echo(_render(result, fmt), nl=fmt != "csv")


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.UsageError(f"--param takes NAME=VALUE, got {pair!r}.")
        if key in values:
            raise click.UsageError(f"--param {key} is given twice; give it once.")
        values[key] = value
    return values


def _fail(fmt: str, message: str) -> NoReturn:
    if fmt == "json":
        click.echo(json.dumps({"status": "error", "message": message}))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(2)


# -- listing and describing ----------------------------------------------------------------


def _describe(query: NamedQuery) -> dict[str, Any]:
    return {
        "name": query.name,
        "purpose": query.purpose,
        "why": query.why,
        "params": [
            {
                "name": p.name,
                "type": p.type,
                "default": p.default_text,
                "required": p.required,
                "meaning": p.meaning,
            }
            for p in query.params
        ],
        "columns": [{"name": c.name, "type": c.type, "meaning": c.meaning} for c in query.columns],
    }


def _print_list(queries: dict[str, NamedQuery], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([_describe(q) for q in queries.values()]))
        return
    width = max((len(n) for n in queries), default=0)
    for query in queries.values():
        click.echo(f"{query.name:<{width}}  {query.purpose}")
    click.echo("\n`agenttrail query NAME --help-query` shows a query's parameters.")


def _help_text(query: NamedQuery) -> str:
    wrap = textwrap.TextWrapper(width=88)
    lines = [f"{query.name}: {query.purpose}", ""]
    if query.why:
        lines += [*wrap.wrap(query.why), ""]
    lines.append("Parameters (--param NAME=VALUE):")
    name_w = max((len(p.name) for p in query.params), default=0)
    type_w = max((len(p.type) for p in query.params), default=0)
    for p in query.params:
        default = "required" if p.required else f"default {p.default_text}"
        lines.append(f"  {p.name:<{name_w}}  {p.type:<{type_w}}  {default}")
        lines += textwrap.wrap(p.meaning, 84, initial_indent="      ", subsequent_indent="      ")
    lines += ["", "Output columns:"]
    col_w = max(len(c.name) for c in query.columns)
    for c in query.columns:
        lines.append(f"  {c.name:<{col_w}}  {c.type}: {c.meaning}")
    lines += ["", "Example:", f"  agenttrail query {query.name} --data ./.agenttrail"]
    return "\n".join(lines)


# -- rendering rows ------------------------------------------------------------------------


def _render(result: QueryResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(
            {
                "query": result.query.name,
                "params": {k: _jsonable(v) for k, v in result.params.items()},
                "columns": [{"name": c.name, "type": c.type} for c in result.query.columns],
                "rows": [
                    {k: _jsonable(v) for k, v in record.items()} for record in result.records()
                ],
            }
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.column_names)
        for row in result.rows:
            writer.writerow([_csv_cell(v) for v in row])
        return out.getvalue()
    return _table(result)


def _table(result: QueryResult) -> str:
    names = result.column_names
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    numeric = [_is_numeric([r[i] for r in result.rows]) for i in range(len(names))]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(names), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    count = len(result.rows)
    summary = f"{count} row{'s' if count != 1 else ''}."
    if count == 0:
        summary = "No rows: nothing matched."
    elif count == result.params.get("limit"):
        summary += " The limit was reached; raise it with --param limit=N."
    return "\n".join([*out, "", summary])


def _is_numeric(values: list[Any]) -> bool:
    """Whether a column holds numbers (and NULLs) only: such columns are right-aligned."""
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in present
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, datetime):
        return _utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, list | tuple | dict):
        text = json.dumps(_jsonable(value), separators=(",", ":"))
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-4 <= abs(value) < 1e9:
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    return f"{value:.3e}"


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(_jsonable(value), separators=(",", ":"))
    return str(value)


def _utc(value: datetime) -> datetime:
    # The store's timestamps are DateTime64(6, 'UTC'); the driver returns them naive.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


__all__ = ["command"]
