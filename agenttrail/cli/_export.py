"""``agenttrail export``: a compliance export with its manifest; ``export verify`` re-checks one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agenttrail.cli._common import (
    fail,
    open_or_exit,
    since_option,
    store_failure,
    store_location_options,
)
from agenttrail.store import StoreError


@click.group("export", invoke_without_command=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to write (must not hold an earlier export).",
)
@click.option("--tenant", default=None, help="Only this tenant's tasks.")
@click.option("--task-type", default=None, help="Only tasks of this type.")
@click.option("--task", "task_id", default=None, metavar="ID", help="Only this task.")
@click.option("--since", default=None, metavar="WHEN", help="Tasks with events since (30d, ISO).")
@click.option("--until", default=None, metavar="WHEN", help="Tasks with events before (ISO).")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl",
    show_default=True, help="File format.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@store_location_options
@click.pass_context
def command(
    ctx: click.Context, out: Path | None, tenant: str | None, task_type: str | None,
    task_id: str | None, since: str | None, until: str | None, fmt: str, as_json: bool,
    data: Path | None, clickhouse: str | None,
) -> None:  # fmt: skip
    """Export whole tasks' events, one file per family, plus manifest.json.

    The manifest holds the filters, row counts per family, SHA-256 of every file, the
    schema versions and column types, the verification of the same tasks in the store,
    the export time and the tool version. Streams with bounded memory. Check an export
    later, without the database, with `agenttrail export verify DIR`. Exit 0 when the
    export is written and its tasks verified, 1 when it is written but verification
    found problems (see the manifest), 2 on a usage or connection error.

    \b
    Example:
      agenttrail export --out ./audit-2026-q4 --tenant acme --since 2026-10-01 --format parquet
      agenttrail export verify ./audit-2026-q4
    """
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise click.UsageError("Give --out DIR (or run `agenttrail export verify DIR`).")
    from agenttrail.export import ExportError, ExportFilters, export_store

    selection = ExportFilters(
        tenant=tenant, task_type=task_type, task_id=task_id,
        since=since_option(since), until=since_option(until),
    )  # fmt: skip
    store = open_or_exit(data, clickhouse, as_json)
    with store:
        try:
            with click.progressbar(
                length=1, label=f"Exporting to {out}", file=sys.stderr, show_pos=True
            ) as bar:

                def total(n: int) -> None:
                    bar.length = max(n, 1)

                manifest = export_store(
                    store, out, fmt=fmt, selection=selection, on_rows=bar.update, on_total=total
                )
        except ExportError as exc:
            fail(as_json, str(exc))
        except StoreError as exc:
            store_failure(as_json, exc)
    verified = bool(manifest["verification"]["ok"])
    if as_json:
        click.echo(json.dumps(manifest))
    else:
        for f in manifest["files"]:
            click.echo(f"{f['file']:<28} {f['rows']:>10} rows  sha256 {f['sha256'][:16]}…")
        state = "verified" if verified else "NOT verified (see verification in the manifest)"
        click.echo(f"Exported {manifest['rows']} events to {out}; {state}.")
    sys.exit(0 if verified else 1)


@command.command("verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="BASE64",
    help="Ed25519 public key (base64) the recorders signed checkpoints with; every "
    "checkpoint in the manifest must be signed by one. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def verify_command(directory: Path, public_keys: tuple[str, ...], as_json: bool) -> None:
    """Re-check an export from its files alone: SHA-256 and row count of every file,
    then every event's hash and every chain, recomputed from the exported rows, then
    the checkpoints the manifest carries: their chain, every head they name inside the
    export's selection (a removed task tail or task is named), and with --public-key
    their signatures.

    Needs no database. Exit 0 when everything holds, 1 when anything is wrong (the
    file, task and event are named), 2 when DIR is not an export.

    \b
    Example:
      agenttrail export verify ./audit-2026-q4 --json
      agenttrail export verify ./audit-2026-q4 --public-key "$(cat checkpoint-key.pub)"
    """
    from agenttrail.cli._verify import render
    from agenttrail.export import ExportError, check_export

    try:
        report = check_export(directory, public_keys=public_keys or None)
    except (ExportError, ValueError) as exc:
        fail(as_json, str(exc))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(render(report))
    sys.exit(0 if report.ok else 1)


__all__ = ["command"]
