"""``agenttrail verify``: recompute every hash chain in the store and name what is wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agenttrail.cli._common import open_or_exit, since_option, store_failure, store_options
from agenttrail.events import PublicKeys
from agenttrail.store import StoreError
from agenttrail.verify import VerifyReport, verify_store


@click.command("verify")
@click.option("--task", "task_id", default=None, metavar="ID", help="Only this task.")
@click.option("--tenant", default=None, help="Only this tenant's tasks.")
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Only tasks with events since: a duration (30m, 24h, 7d) or an ISO date/time "
    "(UTC). Each selected task is checked from its first event.",
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="BASE64",
    help="Ed25519 public key (base64) of the key recorders sign checkpoints with "
    "(AGENTTRAIL_CHECKPOINT_KEY_FILE); every checkpoint must be signed by one. Repeatable.",
)
@click.option(
    "--require-closed",
    is_flag=True,
    help="Every producer must have sealed its final checkpoint (an archive of finished "
    "runs): a stream cut off at its end, final checkpoint included, is reported too.",
)
@store_options
def command(
    task_id: str | None,
    tenant: str | None,
    since: str | None,
    public_keys: tuple[str, ...],
    require_closed: bool,
    data: Path | None,
    clickhouse: str | None,
    as_json: bool,
) -> None:
    """Recompute every hash chain and reconcile each producer's sequence.

    Per task: events whose fields no longer match their hash (altered or forged),
    broken links, gaps and duplicates in seq, reordering. Per producer, against its
    checkpoints: produced, stored, dead-lettered, and the missing producer_seq
    ranges; every chain head a checkpoint names must still be stored (a deleted tail
    or a deleted task is named). With --public-key every checkpoint must carry a valid
    signature, so forged or rewritten checkpoints are found too. Hashes are
    recomputed inside the engine. Exit 0 when everything holds, 1 when anything is
    wrong, 2 on a usage or connection error.

    \b
    Example:
      agenttrail verify --data ./trail
      agenttrail verify --task inv-00195 --json
      agenttrail verify --since 7d
      agenttrail verify --public-key "$(cat checkpoint-key.pub)"
    """
    when = since_option(since)
    if public_keys:
        try:
            PublicKeys(public_keys)
        except (ValueError, RuntimeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--public-key") from None
    store = open_or_exit(data, clickhouse, as_json)
    with store:
        try:
            report = verify_store(
                store, tenant=tenant, task_id=task_id, since=when,
                public_keys=public_keys or None, require_closed=require_closed,
            )  # fmt: skip
        except StoreError as exc:
            store_failure(as_json, exc)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(render(report))
    sys.exit(0 if report.ok else 1)


def render(report: VerifyReport) -> str:
    """The human report: one line per finding, then per-producer reconciliation, then a verdict."""
    lines = [f.line() for f in report.findings]
    if report.truncated:
        lines.append(f"(only the first {len(report.findings)} findings are shown)")
    for p in report.producers:
        missing = ", ".join(f"{a}…{b}" if a != b else str(a) for a, b in p.missing) or "none"
        lines.append(
            f"producer {p.producer_id}: produced {p.produced}, stored {p.stored}, "
            f"dead-lettered {p.dead_lettered}, missing {missing} "
            f"({p.checkpoints} checkpoints, {p.signed} signed"
            f"{', closed' if p.closed else ', still open' if p.checkpoints else ''})"
        )
    families = ", ".join(f"{n} {f}" for f, n in sorted(report.per_family.items()))
    verdict = "OK: every chain holds" if report.ok else f"FAILED: {len(report.findings)} findings"
    lines.append(f"{verdict} ({report.events} events of {report.tasks} tasks: {families or '-'})")
    return "\n".join(lines)


__all__ = ["command", "render"]
