"""``agenttrail replay``: a task's timeline, or exactly what the model saw at one step."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agenttrail.cli._common import (
    fail,
    fmt_ms,
    fmt_usd,
    open_or_exit,
    render_table,
    store_failure,
    store_options,
)
from agenttrail.query import (
    ModelInput,
    StoredEvent,
    TaskNotFound,
    TaskRun,
    TimelineEvent,
    event_at_seq,
    get_run,
    model_input_at_step,
    replay_task,
)
from agenttrail.store import Store, StoreError

NOT_FOUND_EXIT = 1
"""Exit code when the task (or the step) is not in the store: the command worked and the
answer is "not there" — like a failure found; 2 stays for usage and connection errors."""


@click.command("replay")
@click.argument("task_id")
@click.option(
    "--step",
    type=click.IntRange(min=1),
    default=None,
    help="Show the LLM call of step N (steps count from 1): the messages as sent, "
    "parameters, hashes, response.",
)
@click.option(
    "--seq",
    type=click.IntRange(min=0),
    default=None,
    help="Show event SEQ in full: every stored column (arguments, results…), nothing cut.",
)
@click.option(
    "--messages-only",
    is_flag=True,
    help="With --step: write only the step's messages_json, byte for byte, nothing else.",
)
@click.option("--tenant", default=None, help="The task's tenant (when an id is in several).")
@store_options
def command(
    task_id: str,
    step: int | None,
    seq: int | None,
    messages_only: bool,
    tenant: str | None,
    data: Path | None,
    clickhouse: str | None,
    as_json: bool,
) -> None:
    """Replay TASK_ID: every event in seq order with its step, family and a summary.

    Summaries are cut at 100 characters; --seq N prints one event whole.

    With --step N, what the model saw at that step: the message history exactly as it
    was sent (the stored messages_json, whose SHA-256 is the prompt hash), the request
    parameters, model and version, and its response, tokens and cost. Exit 0, 1 when the
    task or step is not in the store, 2 on a usage or connection error.

    \b
    Example:
      agenttrail replay inv-00042 --data ./.agenttrail
      agenttrail replay inv-00042 --step 3
      agenttrail replay inv-00042 --step 3 --messages-only > step3-messages.json
      agenttrail replay inv-00042 --seq 7        # event 7 in full (a tool's args, result)
    """
    if messages_only and step is None:
        raise click.UsageError("--messages-only needs --step N.")
    if seq is not None and step is not None:
        raise click.UsageError("Give --step N or --seq N, not both.")
    store = open_or_exit(data, clickhouse, as_json)
    with store:
        try:
            if seq is not None:
                _print_event(event_at_seq(store, task_id, seq, tenant), as_json)
            elif step is not None:
                calls = model_input_at_step(store, task_id, step, tenant)
                _print_step(calls, as_json, messages_only)
            else:
                events = replay_task(store, task_id, tenant)
                _print_timeline(store, task_id, tenant, events, as_json)
        except TaskNotFound as exc:
            fail(as_json, str(exc), NOT_FOUND_EXIT)
        except StoreError as exc:
            store_failure(as_json, exc)


def _print_timeline(
    store: Store, task_id: str, tenant: str | None, events: list[TimelineEvent], as_json: bool
) -> None:
    runs = get_run(store, task_id, tenant)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": "ok",
                    "task_id": task_id,
                    "runs": [r.to_dict() for r in runs],
                    "events": [e.to_dict() for e in events],
                }
            )
        )
        return
    for run in runs:
        click.echo(run_header(run))
    click.echo(timeline_table(events))


def run_header(run: TaskRun) -> str:
    """One line about the run: type, tenant, agent, outcome, steps, events, cost."""
    end = f" in {fmt_ms(run.duration_ms)}" if run.duration_ms is not None else ""
    error = f": {run.error}" if run.error else ""
    gap = "" if run.complete else f" — {run.max_seq + 1 - run.events} event(s) missing"
    return (
        f"Task {run.task_id} ({run.task_type}, tenant {run.tenant}, agent "
        f"{run.agent_name}@{run.agent_version}): {run.outcome}{end}{error}; "
        f"{run.steps} steps, {run.events} events{gap}, cost {fmt_usd(run.cost_usd)}"
    )


def timeline_table(events: list[TimelineEvent]) -> str:
    """The timeline: seq, step, time since the task's first event, family, ok, summary."""
    first = events[0].ts if events else None
    body = []
    for e in events:
        offset = (e.ts - first).total_seconds() * 1000 if first is not None else 0.0
        body.append([e.seq, e.step, f"+{offset:.1f} ms", e.family, "" if e.ok else "✗", e.summary])
    # Summaries are already one line of at most 100 characters: keep them whole.
    return render_table(["seq", "step", "time", "family", "", "summary"], body, cell_chars=100)


def _print_event(events: list[StoredEvent], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"status": "ok", "events": [e.to_dict() for e in events]}))
        return
    click.echo("\n\n".join(event_text(e) for e in events))


def event_text(event: StoredEvent) -> str:
    """Every column of a stored event, one per line; long values are printed whole."""
    width = max(len(name) for name in event.columns)
    lines = [f"{event.family} (table {event.table})"]
    for name, value in event.to_dict()["columns"].items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"{name.ljust(width)}  {text}")
    return "\n".join(lines)


def _print_step(calls: list[ModelInput], as_json: bool, messages_only: bool) -> None:
    if messages_only:
        # Exactly the stored bytes: click writes bytes to the binary stdout unchanged (no
        # newline added, no re-encoding by the terminal's locale).
        for call in calls:
            click.echo(call.messages_json.encode("utf-8"), nl=False)
        return
    if as_json:
        click.echo(json.dumps({"status": "ok", "calls": [c.to_dict() for c in calls]}))
        return
    click.echo("\n\n".join(step_text(c) for c in calls))


def step_text(call: ModelInput) -> str:
    """What the model saw at a step, for people; the messages are printed unaltered."""
    version = call.model_version or "not reported"
    cost = fmt_usd(call.cost_usd) if call.cost_usd is not None else "unknown"
    outcome = (
        f"finish reason {call.finish_reason or '—'}"
        if call.success
        else f"FAILED {call.error_type}: {call.error_detail}"
    )
    lines = [
        f"Task {call.task_id} (tenant {call.tenant}) step {call.step}, seq {call.seq}, "
        f"{call.ts.isoformat()}",
        f"model              {call.model} (version {version}, provider {call.provider})",
        f"prompt version     {call.prompt_version or '—'}",
        f"prompt hash        {call.prompt_hash}  (SHA-256 of the messages below)",
        f"system prompt hash {call.system_prompt_hash or '—'}",
        f"tokens             {call.input_tokens} in ({call.cached_tokens} cached), "
        f"{call.output_tokens} out; context window {call.context_window or '—'}",
        f"latency            {fmt_ms(call.latency_ms)}"
        + (f", first token {fmt_ms(call.ttft_ms)}" if call.ttft_ms is not None else ""),
        f"cost               {cost} ({call.cost_source})",
        f"outcome            {outcome}",
    ]
    if call.redactions:
        lines.append(f"redacted           {', '.join(call.redactions)}")
    lines += [
        "",
        "--- parameters (params_json) ---",
        call.params_json,
        f"--- messages ({call.message_count}, messages_json exactly as sent) ---",
        call.messages_json,
        "--- response ---",
        call.response_text if call.response_text is not None else "(no text)",
    ]
    if call.tool_calls_json is not None:
        lines += ["--- tool calls requested ---", call.tool_calls_json]
    if call.response_json is not None:
        lines += ["--- raw response ---", call.response_json]
    return "\n".join(lines)


__all__ = ["command"]
