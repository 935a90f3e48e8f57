"""``agenttrail demo``: the whole product on one machine, with simulated agents."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from agenttrail.cli._stack_errors import STACK_ERRORS
from agenttrail.demo import run_workloads
from agenttrail.embedded import DEFAULT_DATA_DIR, LocalStack
from agenttrail.producer import Recorder


@click.command("demo")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Data directory; the store stays there after the demo for you to query.",
)
@click.option("--tasks", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same tasks.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Broker port; 0 picks a free one."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(data: Path, tasks: int, seed: int, port: int, as_json: bool) -> None:
    """Run simulated agents through the real SDK, broker, consumer and store.

    Two workloads of production agents: invoice generation (get_order, create_invoice,
    notify_finance) and software delivery (an orchestrator with Planning, Coding, Review
    and Deploy agents exchanging versioned messages), with the failures that show up
    in production mixed in: a hallucinated tool, a retried non-idempotent call, a loop
    that hits its step limit, a tool error that cascades. Waits until every event is
    stored, then prints what was stored and where.

    \b
    Example:
      agenttrail demo --tasks 300 --seed 7
    """
    started = time.monotonic()
    stack = LocalStack(data, port=port)
    try:
        stack.start()
    except STACK_ERRORS as exc:
        click.echo(f"agenttrail demo: {exc}", err=True)
        sys.exit(2)
    try:
        before = stack.stored_counts()
        rec = Recorder(
            bootstrap=stack.bootstrap,
            tenant="demo",
            agent="demo-agents",
            agent_version="1.0.0",
            spool_dir=stack.data / "spool",
        )
        with click.progressbar(
            length=tasks, label="running tasks", file=sys.stderr, show_pos=True
        ) as bar:
            plan = run_workloads(rec, tasks, seed, progress=bar.update)
        report = rec.close(timeout=60)
        if not report.complete:
            raise click.ClickException(
                f"{report.spooled} events are still spooled in {report.spool_dir} and "
                f"{report.unsaved} could not be saved; the broker did not take them."
            )
        click.echo(f"waiting until all {report.delivered} events are stored…", err=True)
        stack.wait_stored(report.delivered, timeout=300)
        after = stack.stored_counts()
    except STACK_ERRORS as exc:
        click.echo(f"agenttrail demo: {exc}", err=True)
        stack.stop()
        sys.exit(2)
    stack.stop()
    added = {k: after[k] - before.get(k, 0) for k in after}
    summary = {
        "tasks": plan.tasks,
        "outcomes": plan.outcomes,
        "failures_planted": plan.failure_kinds,
        "events_emitted": report.delivered,
        "stored_by_this_run": added,
        "stored_in_total": after,
        "store": str(stack.data / "clickhouse"),
        "seconds": round(time.monotonic() - started, 1),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"\n{plan.tasks} tasks: " + ", ".join(f"{v} {k}" for k, v in sorted(plan.outcomes.items()))
    )
    click.echo(
        "planted failures: " + ", ".join(f"{v} {k}" for k, v in sorted(plan.failure_kinds.items()))
    )
    click.echo(f"\n{'family':<18}{'stored now':>12}{'in store':>12}")
    for family, count in added.items():
        click.echo(f"{family:<18}{count:>12}{after[family]:>12}")
    stored = sum(v for k, v in added.items() if k != "dead_letters")
    click.echo(f"\n{report.delivered} events emitted, {stored} stored, in {summary['seconds']} s")
    click.echo(f"store: {stack.data / 'clickhouse'}  (open it with --data {data})")
