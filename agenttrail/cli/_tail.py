"""``agenttrail tail``: follow events as they are stored, one readable line each."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from agenttrail.cli._common import (
    open_or_exit,
    since_option,
    store_failure,
    store_options,
)
from agenttrail.query import TailEvent, TailFilter, TailFollower
from agenttrail.store import StoreError


@click.command("tail")
@click.option("--task", "task_id", default=None, help="Only this task (from its first event).")
@click.option("--task-type", default=None, help="Only tasks of this type.")
@click.option("--agent", default=None, help="Only events of this agent name.")
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Start with events stored since: a duration (10m) or an ISO time. Default: now "
    "(with --task: the task's first event).",
)
@click.option(
    "--until-done",
    is_flag=True,
    help="With --task: stop once the task's terminal transition has been shown.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Seconds between polls of the store.",
)
@store_options
def command(
    task_id: str | None,
    task_type: str | None,
    agent: str | None,
    tenant: str | None,
    since: str | None,
    until_done: bool,
    interval: float,
    data: Path | None,
    clickhouse: str | None,
    as_json: bool,
) -> None:
    """Follow events as they are stored, like tail -f: one line each, in seq order per task.

    Each line is the replay timeline's (time, task, seq, step, family, ✗ for a failure,
    summary); --json prints one JSON object per event. Works beside a running
    `agenttrail up` and against a server. Runs until Ctrl-C (exit 0), or with
    --until-done until the task has ended; 2 on a usage or connection error.

    \b
    Example:
      agenttrail tail --data ./.agenttrail
      agenttrail tail --task inv-00042 --until-done
      agenttrail tail --task-type invoice_generation --json | jq .summary
    """
    if until_done and task_id is None:
        raise click.UsageError("--until-done needs --task ID.")
    since_at = since_option(since)
    if since_at is None and task_id is not None:
        from datetime import UTC, datetime

        since_at = datetime(1970, 1, 1, tzinfo=UTC)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    store = open_or_exit(data, clickhouse, as_json)
    try:
        with store:
            follower = TailFollower(
                store,
                TailFilter(task_id=task_id, task_type=task_type, agent=agent, tenant=tenant),
                since_at,
            )
            while True:
                done = False
                for event in follower.poll():
                    _print(event, as_json)
                    done = done or (until_done and event.terminal is not None)
                sys.stdout.flush()
                if done or stop.wait(interval):
                    return
    except StoreError as exc:
        store_failure(as_json, exc)
    except BrokenPipeError:  # `| head` closed the pipe: a normal end
        return
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _print(event: TailEvent, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(event.to_dict(), ensure_ascii=False))
        return
    gap = f"  [{event.gap_before} earlier event(s) not stored]" if event.gap_before else ""
    mark = "✗" if not event.ok else " "
    click.echo(
        f"{event.ts:%H:%M:%S.%f}"[:-3]
        + f"  {event.task_id}  {event.seq:>4}  {event.step:>3}  {event.family:<16} {mark} "
        + f"{event.summary}{gap}"
    )


__all__ = ["command"]
