"""What the commands that read a store share: store options, opening the store, error
exits, ``--since``, and plain-text tables, so that every command prints alike."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from agenttrail.query import QueryError, parse_since
from agenttrail.store import Store, StoreError, open_store

F = TypeVar("F", bound=Callable[..., Any])

_MISSING_TABLE = ("UNKNOWN_TABLE", "Unknown table", "UNKNOWN_DATABASE", "does not exist")
CELL_CHARS = 60
"""Longest cell of a table; longer text is cut and ends with …."""


def store_location_options(func: F) -> F:
    """Add ``--data`` and ``--clickhouse``, the two ways to name a store."""
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
        help="Data directory; the in-process store is DIR/clickhouse. [env AGENTTRAIL_DATA] "
        "(default: ./.agenttrail when it holds a store)",
    )(func)
    return func


def store_options(func: F) -> F:
    """Add ``--data``, ``--clickhouse`` and ``--json`` to a command."""
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )
    return store_location_options(func)


def format_options(func: F) -> F:
    """Add ``--data``, ``--clickhouse``, ``--format table|json|csv`` and ``--json``.

    ``--json`` is short for ``--format json``; the command reads both (see
    :func:`chosen_format`).
    """
    func = click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json", "csv"]),
        default="table",
        show_default=True,
        help="How to print: a table for people, JSON or CSV for programs.",
    )(func)
    return store_options(func)


def chosen_format(fmt: str, as_json: bool) -> str:
    """The output format: ``--json`` wins over ``--format``."""
    return "json" if as_json else fmt


def to_csv(records: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Records as CSV with a header line; lists and dicts become JSON text, None empty.

    Args:
        records: one dict per row.
        columns: the header (and column order); by default the first record's keys.
    """
    import csv
    import io

    header = list(columns) if columns is not None else list(records[0]) if records else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        writer.writerow([_csv_cell(record.get(name)) for name in header])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def fail(as_json: bool, message: str, code: int = 2) -> NoReturn:
    """Print ``message`` (as a JSON error object with ``--json``) and exit with ``code``."""
    if as_json:
        click.echo(json.dumps({"status": "error", "message": message}))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def open_or_exit(data: Path | None, clickhouse: str | None, as_json: bool) -> Store:
    """Open an existing store, or exit 2 with the store's own explanation (no store there,
    locked, unreachable…). Never creates a store directory."""
    try:
        return open_store(clickhouse=clickhouse, data=data, create=False)
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
