"""``agenttrail retention``: the retention policy in force, and legal holds."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from agenttrail.cli._common import (
    fail,
    open_or_exit,
    render_table,
    store_failure,
    store_options,
)
from agenttrail.store import (
    StoreConfigError,
    StoreError,
    holds_in_force,
    place_hold,
    policy_in_force,
    release_hold,
)


@click.group("retention")
def command() -> None:
    """Retention per table (set by `agenttrail migrate` from AGENTTRAIL_RETENTION_*_DAYS)
    and legal holds that keep a tenant's or a task's events past it.

    \b
    Example:
      AGENTTRAIL_RETENTION_TOOL_SPANS_DAYS=90 agenttrail migrate --data ./trail
      agenttrail retention show --data ./trail
      agenttrail retention hold --tenant acme --task inv-00195 --reason "case 2026-114"
    """


@command.command("show")
@store_options
def show(data: Path | None, clickhouse: str | None, as_json: bool) -> None:
    """Print the retention in force per table and the legal holds in force.

    LLM calls and guard events can never be set below 30 days; the default is 184 days
    (six months). Days count from the later of the event's ts and its arrival.

    \b
    Example:
      agenttrail retention show --data ./trail --json
    """
    store = open_or_exit(data, clickhouse, as_json)
    with store:
        try:
            policies = policy_in_force(store)
            holds = holds_in_force(store)
        except StoreError as exc:
            store_failure(as_json, exc)
    if as_json:
        click.echo(
            json.dumps(
                {"tables": [p.to_dict() for p in policies], "holds": [h.to_dict() for h in holds]}
            )
        )
        return
    rows = [
        [p.table, p.days, p.counts_from, "yes" if p.honours_holds else "no", p.minimum_days or 1]
        for p in policies
    ]
    click.echo(render_table(["table", "days", "counted from", "holds", "minimum days"], rows))
    if holds:
        click.echo("")
        click.echo(
            render_table(
                ["tenant", "task", "reason", "placed by", "placed at"],
                [[h.tenant, h.task_id or "(every task)", h.reason, h.placed_by, h.placed_at]
                 for h in holds],
            )
        )  # fmt: skip
    else:
        click.echo("No legal hold in force.")


def _hold_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option("--reason", required=True, help="Why (a case or ticket number).")(func)
    func = click.option("--task", "task_id", default="", help="Only this task of the tenant.")(func)
    func = click.option("--tenant", required=True, help="The tenant held.")(func)
    return func


@command.command("hold")
@_hold_options
@store_options
def hold(
    tenant: str, task_id: str, reason: str, data: Path | None, clickhouse: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Keep a tenant's (or one task's) events past the TTL until released.

    \b
    Example:
      agenttrail retention hold --tenant acme --reason "case 2026-114"
    """
    _record(place_hold, "placed", tenant, task_id, reason, data, clickhouse, as_json)


@command.command("release")
@_hold_options
@store_options
def release(
    tenant: str, task_id: str, reason: str, data: Path | None, clickhouse: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Release a legal hold: its events expire again under the table's TTL.

    \b
    Example:
      agenttrail retention release --tenant acme --reason "case 2026-114 closed"
    """
    _record(release_hold, "released", tenant, task_id, reason, data, clickhouse, as_json)


def _record(
    action: object, verb: str, tenant: str, task_id: str, reason: str,
    data: Path | None, clickhouse: str | None, as_json: bool,
) -> None:  # fmt: skip
    store = open_or_exit(data, clickhouse, as_json)
    with store:
        try:
            assert callable(action)
            action(store, tenant, task_id, reason=reason, by=getpass.getuser())
        except StoreConfigError as exc:
            fail(as_json, str(exc))
        except StoreError as exc:
            store_failure(as_json, exc)
    what = (
        f"task {task_id!r} of tenant {tenant!r}" if task_id else f"every task of tenant {tenant!r}"
    )
    if as_json:
        click.echo(json.dumps({"status": "ok", verb: {"tenant": tenant, "task_id": task_id}}))
    else:
        click.echo(f"Legal hold {verb}: {what}.")


__all__ = ["command"]
