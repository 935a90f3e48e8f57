"""``agenttrail demo``: the whole product on one machine, with simulated agents.

Ctrl-C (or SIGTERM) at any moment stops cleanly: no new task starts, what was recorded
is delivered to the demo's broker and stored, the summary says so, and the exit status
is 130. A second Ctrl-C stops waiting for storage. The demo's events are bound for its
own broker, which lives only as long as the demo, so anything the SDK could not deliver
before the broker stopped is removed from the demo's spool (and reported) rather than
left for a destination that will never exist again.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from agenttrail.cli._stack_errors import STACK_ERRORS
from agenttrail.demo import DemoPlan, run_workloads
from agenttrail.embedded import DEFAULT_DATA_DIR, LocalStack
from agenttrail.producer import Recorder

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C / SIGTERM (128 + SIGINT, as shells report it)."""

_CLOSE_TIMEOUT_S = 60.0
_INTERRUPTED_CLOSE_TIMEOUT_S = 20.0
_STORE_TIMEOUT_S = 300.0


class _Interrupts:
    """Ctrl-C and SIGTERM as flags: the first asks to stop, the second to stop waiting."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hurry = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.hurry.set()
        self.stop.set()

    @contextmanager
    def installed(self) -> Iterator[_Interrupts]:
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self) for s in signals}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


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
    stored, then prints what was stored and where. Ctrl-C stops after the current task
    and stores what was recorded (exit 130).

    \b
    Example:
      agenttrail demo --tasks 300 --seed 7
    """
    interrupts = _Interrupts()
    with interrupts.installed():
        _run(data, tasks, seed, port, as_json, interrupts)


def _run(
    data: Path, tasks: int, seed: int, port: int, as_json: bool, interrupts: _Interrupts
) -> None:
    started = time.monotonic()
    stack = LocalStack(data, port=port)
    try:
        stack.start()
    except STACK_ERRORS as exc:
        click.echo(f"agenttrail demo: {exc}", err=True)
        sys.exit(2)
    if interrupts.stop.is_set():
        stack.stop()
        _say(
            as_json,
            {"status": "interrupted", "tasks": 0, "tasks_asked": tasks, "events_emitted": 0},
            "interrupted before any task ran: nothing was recorded or stored.",
        )
        sys.exit(INTERRUPTED_EXIT)
    try:
        before = stack.stored_counts()
        spool_root = stack.data / "spool"
        _clear_dead_spools(spool_root)
        rec = Recorder(
            bootstrap=stack.bootstrap,
            tenant="demo",
            agent="demo-agents",
            agent_version="1.0.0",
            spool_dir=spool_root,
        )
        with click.progressbar(
            length=tasks, label="running tasks", file=sys.stderr, show_pos=True
        ) as bar:
            plan = run_workloads(
                rec, tasks, seed, progress=bar.update, should_stop=interrupts.stop.is_set
            )
        interrupted = interrupts.stop.is_set()
        if interrupted:
            click.echo(
                f"\ninterrupted after {plan.tasks} of {tasks} tasks: delivering and storing "
                "what was recorded (Ctrl-C again to stop waiting)…",
                err=True,
            )
        report = rec.close(
            timeout=_INTERRUPTED_CLOSE_TIMEOUT_S if interrupted else _CLOSE_TIMEOUT_S
        )
        discarded = _discard_undeliverable(report.spool_dir, report.spooled)
        if discarded and not interrupted:
            raise click.ClickException(
                f"The demo's broker did not take {discarded} events (and {report.unsaved} "
                "could not be saved); they were bound for this demo's broker only and were "
                f"discarded. The data stored so far is in {stack.data}."
            )
        with click.progressbar(
            length=max(report.delivered, 1),
            label=f"storing {report.delivered} events",
            file=sys.stderr,
            show_pos=True,
        ) as bar:
            shown = [0]

            def advance(stored: int) -> None:
                step = min(stored, report.delivered) - shown[0]
                if step > 0:
                    bar.update(step)
                    shown[0] += step

            # Interrupted while waiting here: stop waiting. Interrupted before: wait for
            # what was delivered, unless interrupted again.
            stack.wait_stored(
                report.delivered,
                timeout=_STORE_TIMEOUT_S,
                progress=advance,
                give_up=interrupts.hurry if interrupted else interrupts.stop,
            )
        interrupted = interrupts.stop.is_set()
        after = stack.stored_counts()
    except STACK_ERRORS as exc:
        click.echo(f"agenttrail demo: {exc}", err=True)
        sys.exit(2)
    finally:
        stack.stop()
    added = {k: after[k] - before.get(k, 0) for k in after}
    stored = sum(v for k, v in added.items() if k != "dead_letters")
    summary = {
        "status": "interrupted" if interrupted else "ok",
        "tasks": plan.tasks,
        "tasks_asked": tasks,
        "outcomes": plan.outcomes,
        "failures_planted": plan.failure_kinds,
        "events_emitted": report.delivered,
        "events_discarded": discarded,
        "stored_by_this_run": added,
        "stored_in_total": after,
        "store": str(stack.data / "clickhouse"),
        "seconds": round(time.monotonic() - started, 1),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(plan, added, after, report.delivered, stored, summary, data)
        if discarded:
            click.echo(
                f"{discarded} recorded events never reached the demo's broker and were "
                "discarded (they were bound for this demo only)."
            )
        if interrupted and stored < report.delivered:
            click.echo(
                f"stopped waiting: {report.delivered - stored} delivered events were not "
                "stored before the demo's broker stopped."
            )
    if interrupted:
        sys.exit(INTERRUPTED_EXIT)


def _print_summary(
    plan: DemoPlan,
    added: dict[str, int],
    after: dict[str, int],
    delivered: int,
    stored: int,
    summary: dict[str, Any],
    data: Path,
) -> None:
    prefix = "interrupted: " if summary["status"] == "interrupted" else ""
    click.echo(
        f"\n{prefix}{plan.tasks} tasks: "
        + ", ".join(f"{v} {k}" for k, v in sorted(plan.outcomes.items()))
    )
    if plan.failure_kinds:
        click.echo(
            "planted failures: "
            + ", ".join(f"{v} {k}" for k, v in sorted(plan.failure_kinds.items()))
        )
    click.echo(f"\n{'family':<18}{'stored now':>12}{'in store':>12}")
    for family, count in added.items():
        click.echo(f"{family:<18}{count:>12}{after[family]:>12}")
    click.echo(f"\n{delivered} events emitted, {stored} stored, in {summary['seconds']} s")
    click.echo(f"store: {summary['store']}  (open it with --data {data})")


def _say(as_json: bool, record: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(record) if as_json else text, err=not as_json)


def _discard_undeliverable(spool_dir: Path | None, spooled: int) -> int:
    """Remove the demo recorder's spool when it still holds events; return how many.

    The spool is bound to this demo's broker, which stops with the demo: no later
    process could deliver it.
    """
    if spool_dir is None or spooled == 0:
        return 0
    shutil.rmtree(spool_dir, ignore_errors=True)
    return spooled


def _clear_dead_spools(spool_root: Path) -> None:
    """Remove spools an earlier, killed demo left for its broker (gone with it).

    Only the demo writes under DATA/spool, and every demo has its own broker; a spool
    still locked by a live process is left alone.
    """
    import fcntl
    import os

    if not spool_root.is_dir():
        return
    for child in spool_root.iterdir():
        lock = child / ".lock"
        if not child.is_dir():
            continue
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.close(fd)
        shutil.rmtree(child, ignore_errors=True)
