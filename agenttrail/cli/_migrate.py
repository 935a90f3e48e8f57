"""``agenttrail migrate``: apply the numbered SQL migrations to a store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agenttrail.cli._common import store_options
from agenttrail.store import MigrationError, StoreError, migrate, open_store
from agenttrail.store._migrations import cluster_sql


@click.command("migrate")
@click.option(
    "--cluster",
    metavar="NAME",
    default=None,
    help="Render every statement for this cluster (ON CLUSTER, Replicated engines, "
    "Distributed tables); needs a ClickHouse server.",
)
@click.option(
    "--print", "print_only", is_flag=True, help="Print the SQL (with --cluster) and exit."
)
@store_options
def command(
    cluster: str | None, print_only: bool, data: Path | None, clickhouse: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Create the agenttrail database and tables, applying each migration once.

    Migrations are queries/migrations/NNNN_<name>.sql, recorded with their checksum in
    schema_migrations. Exit 0 when the store is current, 1 when a migration failed or an
    applied migration's file was changed, 2 when the store cannot be opened.

    \b
    Example:
      agenttrail migrate --data ./trail
      agenttrail migrate --clickhouse http://default:secret@localhost:8123/agenttrail --json
      agenttrail migrate --cluster prod --print
    """
    if print_only:
        if cluster is None:
            raise click.UsageError("--print shows the cluster SQL; give --cluster NAME too.")
        try:
            statements = cluster_sql(cluster)
        except (MigrationError, ValueError) as exc:
            _fail(as_json, exc, 2)
        if as_json:
            click.echo(json.dumps({"cluster": cluster, "statements": statements}))
        else:
            click.echo(";\n\n".join(statements) + ";")
        return
    try:
        store = open_store(clickhouse=clickhouse, data=data)
    except StoreError as exc:
        _fail(as_json, exc, 2)
    with store:
        if cluster is not None and store.is_embedded:
            _fail(
                as_json,
                ValueError(
                    "Cluster mode needs a ClickHouse server: pass --clickhouse http(s)://… of one "
                    "node of the cluster (the in-process store is a single node)."
                ),
                2,
            )
        try:
            report = migrate(store, cluster=cluster)
        except (MigrationError, ValueError) as exc:
            _fail(as_json, exc, 1)
        except StoreError as exc:
            _fail(as_json, exc, 2)
    if as_json:
        click.echo(json.dumps({"status": "ok", **report.to_dict()}))
        return
    for m in report.applied:
        click.echo(f"applied  {m.version:04d}_{m.name}")
    current = len(report.applied) + len(report.already_applied)
    click.echo(
        f"Store {report.store} (database {report.database}) is current: {current} migrations, "
        f"{len(report.applied)} applied now."
    )


def _fail(as_json: bool, exc: Exception, code: int) -> None:
    if as_json:
        click.echo(
            json.dumps({"status": "error", "error": type(exc).__name__, "message": str(exc)})
        )
    else:
        click.echo(f"Error: {exc}", err=True)
    sys.exit(code)


__all__ = ["command"]
