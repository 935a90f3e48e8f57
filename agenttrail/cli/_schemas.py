"""``agenttrail schemas``: list the Avro contracts and check the schema registry.

Exit codes: 0 ok, 1 the contract is broken (problems listed), 2 the directory or its
registry.json cannot be read (or the checker's ``avro`` dependency is missing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from agenttrail._contracts import schemas_dir
from agenttrail.events import RegistryError, SchemaRegistry

if TYPE_CHECKING:
    from agenttrail.events._compat import CheckReport

_DIR_OPTION = click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    default=None,
    help="Schemas directory holding registry.json; the packaged schemas/ by default.",
)
_JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.group("schemas", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """The Avro event contracts: list them, check the registry and compatibility.

    \b
    Example:
      agenttrail schemas list
      agenttrail schemas check --dir schemas
    """


@command.command("check")
@_DIR_OPTION
@_JSON_OPTION
def check(root: Path | None, as_json: bool) -> None:
    """Check the schema registry and BACKWARD_TRANSITIVE compatibility.

    Verifies that ids are unique, positive and never reused (retired_ids, and the
    registry at git HEAD when the directory is in a repository), that each family's
    versions run 1..N, that every schema parses and carries the envelope with 'hash'
    last, and that every version reads data written by every earlier one (the avro
    checker, confirmed by decoding fastavro-encoded samples). Reads only; changes
    nothing. Exit 0 when the contract holds, 1 when problems are found, 2 when the
    directory or registry.json cannot be read.

    \b
    Example:
      agenttrail schemas check --dir schemas
      agenttrail schemas check --json | jq '.problems[].message'
    """
    try:
        # The checker needs the avro package (embedded and dev extras); the rest of the
        # CLI does not.
        from agenttrail.events._compat import check_registry
    except ImportError as exc:
        _fail(
            as_json,
            f"The schema checker needs the 'avro' package ({exc}). "
            "Install it with: pip install 'agenttrail[embedded]' (or: pip install avro).",
        )
    directory = _resolve_dir(root, as_json)
    try:
        report = check_registry(directory)
    except RegistryError as exc:
        _fail(as_json, str(exc))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _render_report(report)
    sys.exit(0 if report.ok else 1)


def _render_report(report: CheckReport) -> None:
    families = ", ".join(
        f"{name} v{'/v'.join(str(v) for v in versions)}"
        for name, versions in sorted(report.families.items())
    )
    history = (
        "compared with git HEAD"
        if report.compared_with_head
        else "not compared with git HEAD (not in a repository, or registry.json not committed)"
    )
    click.echo(f"Schemas in {report.root}: {report.entries} entries; {families or 'no families'}.")
    click.echo(f"Compatibility pairs checked: {report.pairs_checked}; ids {history}.")
    if report.ok:
        click.echo("OK: the schema contract holds.")
        return
    click.echo(f"{len(report.problems)} problem(s):")
    for number, problem in enumerate(report.problems, start=1):
        click.echo(f"  {number}. {problem.message}")
        if problem.hint:
            click.echo(f"     fix: {problem.hint}")


@command.command("list")
@_DIR_OPTION
@_JSON_OPTION
def list_schemas(root: Path | None, as_json: bool) -> None:
    """List registered schemas: id, family, version, path and field count.

    Exit 0, or 2 when the registry or a schema it names cannot be read.

    \b
    Example:
      agenttrail schemas list
      agenttrail schemas list --json --dir schemas
    """
    directory = _resolve_dir(root, as_json)
    try:
        registry = SchemaRegistry.load(directory)
    except RegistryError as exc:
        _fail(as_json, str(exc))
    rows: list[dict[str, object]] = [
        {
            "id": entry.schema_id,
            "family": entry.event_type,
            "version": entry.version,
            "path": _relative(entry.path, directory),
            "fields": len(entry.field_names),
        }
        for entry in registry.entries
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header: dict[str, object] = {
        "id": "ID",
        "family": "FAMILY",
        "version": "VERSION",
        "path": "PATH",
        "fields": "FIELDS",
    }
    widths = {k: max(len(str(r[k])) for r in [header, *rows]) for k in header}
    for row in [header, *rows]:
        click.echo("  ".join(str(row[k]).ljust(widths[k]) for k in header).rstrip())


@command.command("fields")
@_DIR_OPTION
def fields(root: Path | None) -> None:
    """Print the event fields as Markdown tables (the README's table), from the .avsc files.

    The envelope every family shares, then each family's own fields, from the newest
    version of each schema. Exit 0, or 2 when the schemas cannot be read.

    \b
    Example:
      agenttrail schemas fields > fields.md
    """
    from agenttrail.cli._field_table import render_field_tables

    directory = _resolve_dir(root, False)
    try:
        click.echo(render_field_tables(directory))
    except (OSError, ValueError, KeyError) as exc:
        _fail(False, f"Cannot read the schemas in {directory}: {exc}")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _resolve_dir(root: Path | None, as_json: bool) -> Path:
    if root is not None:
        return root
    try:
        return schemas_dir()
    except FileNotFoundError as exc:
        _fail(as_json, str(exc))


def _fail(as_json: bool, message: str) -> NoReturn:
    """Report an unreadable input and exit 2."""
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message}))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def _add_register() -> None:
    from agenttrail.cli._schemas_register import command as register

    command.add_command(register)


_add_register()
