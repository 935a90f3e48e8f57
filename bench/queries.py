"""Read-side figures: replay, metrics and runs listing over a store of millions of events.

Fills an in-process store (or a server) with synthetic tasks generated inside ClickHouse
(INSERT … SELECT FROM numbers(), through the raw family tables, so every materialized
view fires as it does for the consumer's inserts), then prints, for each read the CLI
makes, the median wall-clock time of several runs, the rows the engine read, and which
tables it read (from EXPLAIN of the statements the library issued).

Shape of the data: tasks of 20 events over 30 days — started, running, 7 steps of an LLM
call and a tool span, 2 agent messages, a guard event and a terminal transition
(85 % succeeded, 8 % failed, 5 % limit_exceeded, 2 % killed) — in 3 tenants, 20 task
types each run by one of 8 agents (version 1.0, then 1.1 after day 15), 2 models per
task type out of 6; a fifth of the calls report no cost and are priced from the table.
Inserted in chunks of CHUNK tasks, in task order (as a consumer inserts per partition).

Rows read: the difference of the engine's SelectedRows counter (system.events) around
the first run of each read (before ClickHouse's query condition cache has seen its
filters), minus what reading the counter costs; on a shared server that counter is
server-wide, so run it on an idle one. chdb's own per-query read_rows counts result
rows, not rows read, and it keeps no query_log.

Usage: .venv/bin/python bench/queries.py [--events N] [--data DIR | --clickhouse URL]
                                         [--repeat N] [--insert-cost-events N]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agenttrail.query import (
    StepWindows,
    discover_named_queries,
    list_runs,
    model_input_at_step,
    replay_task,
    step_trends,
    task_metrics,
)
from agenttrail.store import Store, discover, migrate, open_store

EVENTS_PER_TASK = 20
CHUNK = 25_000  # tasks per INSERT … SELECT
DAYS = 30

# Per-task attributes, from the task number t (columns of numbers() as `t`).
_TASK = """
    concat('tsk_', lower(hex(cityHash64(t, 42)))) AS task_id,
    ['acme', 'globex', 'initech'][t % 3 + 1] AS tenant,
    cityHash64(t, 1) % 20 AS type_no,
    concat('type_', toString(type_no)) AS task_type,
    concat('agent_', toString(type_no % 8)) AS agent_name,
    toDateTime64(now64(6) - INTERVAL {days} DAY, 6, 'UTC')
        + toIntervalMicrosecond(intDiv(t * {days} * 86400000000, {tasks})) AS t0,
    if(t0 < now64(6) - INTERVAL 15 DAY, '1.0', '1.1') AS agent_version,
    ['gpt-4.1', 'gpt-4.1-mini', 'claude-sonnet-4', 'gpt-4o', 'o3', 'gemini-2.5-flash']
        [(type_no + if(cityHash64(t, 2) % 10 < 7, 0, 1)) % 6 + 1] AS model,
    cityHash64(t, 3) % 100 AS roll,
    multiIf(roll < 85, 'succeeded', roll < 93, 'failed', roll < 98, 'limit_exceeded',
            'killed') AS outcome
"""
_ENVELOPE = """
    generateUUIDv4(number) AS event_id, 1 AS schema_version, hex(cityHash64(t, 9)) AS trace_id,
    hex(cityHash64(t, seq, 7)) AS span_id, seq, step,
    t0 + toIntervalMillisecond(seq * 1500 + cityHash64(t, seq) % 900) AS ts,
    concat('producer-', toString(t % 64)) AS producer_id, t * 20 + seq AS producer_seq,
    '' AS prev_hash, hex(cityHash64(t, seq, 5)) AS hash, toInt32(t % 4) AS kafka_partition,
    toInt64(t * 20 + seq) AS kafka_offset
"""


def fill(store: Store, tasks: int, log: Callable[[str], None]) -> float:
    """Insert ``tasks`` tasks of 20 events; returns the seconds it took."""
    db = store.database
    columns = {
        table: ", ".join(
            str(r[0])
            for r in store.query(
                "SELECT name FROM system.columns WHERE database = {d:String} AND "
                "table = {t:String} AND default_kind = '' ORDER BY position",
                {"d": db, "t": table},
            )
        )
        for table, _, _ in _STATEMENTS
    }
    started = time.perf_counter()
    for first in range(0, tasks, CHUNK):
        n = min(CHUNK, tasks - first)
        for table, per_task, body in _STATEMENTS:
            store.command(
                f"INSERT INTO {db}.{table} ({columns[table]}) SELECT {columns[table]} "
                f"FROM (SELECT {_TASK.format(days=DAYS, tasks=tasks)}, "
                f"number % {per_task} AS k, {body} "
                f"FROM (SELECT number, {first} + intDiv(number, {per_task}) AS t "
                f"FROM numbers({n * per_task})))"
            )
        done = first + n
        log(f"  {done * EVENTS_PER_TASK:,} events ({time.perf_counter() - started:.0f} s)")
    return time.perf_counter() - started


# Each family: its table, events per task, and its columns (after the shared envelope).
_STATEMENTS: list[tuple[str, int, str]] = [
    (
        "state_transitions",
        3,
        f"""'state_transition' AS event_type,
        [0, 1, 19][k + 1] AS seq, if(k = 2, 7, 0) AS step, {_ENVELOPE},
        NULL AS parent_span_id,
        [NULL, 'started', 'running'][k + 1] AS from_state,
        ['started', 'running', outcome][k + 1] AS to_state,
        if(k = 2 AND outcome != 'succeeded', concat(outcome, ' at step 7'), NULL) AS reason,
        if(k = 2 AND outcome = 'failed', 'ToolFailure', NULL) AS error_type,
        if(k = 2 AND outcome = 'failed', 'create_invoice: order has no line items', NULL)
            AS error_detail,
        k = 0 AS has_boundary,
        if(k = 0, '{{"order_id":"7294"}}', NULL) AS boundary_entry_json,
        NULL AS boundary_exit_condition, if(k = 0, 60000, NULL) AS boundary_max_tokens,
        if(k = 0, 12, NULL) AS boundary_max_steps, NULL AS boundary_max_wall_clock_s,
        NULL AS boundary_max_spend_usd, [] AS boundary_side_effect_budget,
        NULL AS boundary_escalation_path, ['get_order', 'create_invoice']
            AS boundary_declared_tools""",
    ),
    (
        "llm_calls",
        7,
        f"""'llm_call' AS event_type, 2 + 2 * k AS seq, k + 1 AS step, {_ENVELOPE},
        hex(cityHash64(t, 9)) AS parent_span_id,
        if(startsWith(model, 'claude'), 'anthropic', 'openai') AS provider, model,
        concat(model, '-2025-04-14') AS model_version, hex(cityHash64(type_no))
            AS system_prompt_hash, 'v3' AS prompt_version,
        hex(cityHash64(t, k, 4)) AS prompt_hash,
        concat('[{{"role":"system","content":"You handle ', task_type, '."}}',
               repeat(',{{"role":"user","content":"Step input for the order."}}', k + 1),
               ']') AS messages_json,
        toInt32(k + 2) AS message_count, '{{"temperature":0}}' AS params_json,
        'Calling the next tool.' AS response_text, NULL AS response_json,
        '[{{"name":"create_invoice","arguments":"{{}}"}}]' AS tool_calls_json,
        'tool_calls' AS finish_reason,
        toInt64(800 + 400 * k + cityHash64(t, k) % 300) AS input_tokens,
        toInt64(50 + cityHash64(t, k, 1) % 400) AS output_tokens,
        toInt64(if(k > 0, 512, 0)) AS cached_tokens, 128000 AS context_window,
        if(cityHash64(t, k, 2) % 5 = 0, NULL,
           (input_tokens * 2 + output_tokens * 8) / 1e6) AS cost_usd,
        300 + (cityHash64(t, k, 3) % 4000) / 2.0 AS latency_ms, NULL AS ttft_ms,
        true AS success, NULL AS error_type, NULL AS error_detail, [] AS redactions""",
    ),
    (
        "tool_spans",
        7,
        f"""'tool_span' AS event_type, 3 + 2 * k AS seq, k + 1 AS step, {_ENVELOPE},
        hex(cityHash64(t, 9)) AS parent_span_id,
        ['get_order', 'create_invoice', 'notify_finance', 'read_repo', 'run_tests',
         'deploy', 'lookup'][k + 1] AS tool, '1' AS tool_version,
        concat('{{"order_id":"', toString(t), '"}}') AS args_json,
        hex(cityHash64(t, 11)) AS args_hash, NULL AS idempotency_key, 1 AS attempt,
        if(k = 1, 'write', 'read') AS side_effect, true AS declared,
        '{{"status":"ok"}}' AS result_summary, 15 AS result_size,
        20 + (cityHash64(t, k, 5) % 2000) / 4.0 AS latency_ms,
        NOT (outcome = 'failed' AND k = 6) AS success,
        if(success, NULL, 'ToolFailure') AS error_type,
        if(success, NULL, 'order has no line items') AS error_detail, [] AS redactions""",
    ),
    (
        "agent_messages",
        2,
        f"""'agent_message' AS event_type, 16 + k AS seq, 7 AS step, {_ENVELOPE},
        hex(cityHash64(t, 9)) AS parent_span_id,
        concat('m-', toString(t), '-', toString(k)) AS message_id,
        if(k = 1, concat('m-', toString(t), '-0'), NULL) AS in_reply_to,
        ['orchestrator', 'ReviewAgent'][k + 1] AS sender,
        ['ReviewAgent', 'orchestrator'][k + 1] AS recipient,
        ['sent', 'received'][k + 1] AS direction,
        ['review.request', 'review.result'][k + 1] AS contract_name, '1.0' AS contract_version,
        '{{"diff":"+42 -3"}}' AS payload_json, 16 AS payload_size""",
    ),
    (
        "guard_events",
        1,
        f"""'guard_event' AS event_type, 18 AS seq, 7 AS step, {_ENVELOPE},
        hex(cityHash64(t, 9)) AS parent_span_id,
        'confirmation_granted' AS kind, NULL AS limit_name, NULL AS limit_value,
        NULL AS observed_value, 'notify_finance' AS action, 'granted' AS decision,
        'policy:auto' AS decided_by, NULL AS detail, NULL AS original_hash""",
    ),
]


class Measured:
    """Runs reads on a store, recording the statements issued and the rows read."""

    def __init__(self, store: Store):
        self.store = store
        self.issued: list[tuple[str, dict[str, Any] | None]] = []
        self._query = store.query
        store.query = self._recording  # type: ignore[method-assign]
        self._probe_cost = 0
        self._probe_cost = self._selected_rows_delta(lambda: None)

    def _recording(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        self.issued.append((sql, dict(parameters) if parameters else None))
        return self._query(sql, parameters)

    def _selected_rows(self) -> int:
        rows = self._query("SELECT value FROM system.events WHERE event = 'SelectedRows'")
        return int(rows[0][0]) if rows else 0

    def _selected_rows_delta(self, read: Callable[[], Any]) -> int:
        before = self._selected_rows()
        read()
        return self._selected_rows() - before - self._probe_cost

    def run(self, name: str, read: Callable[[], Any], repeat: int) -> dict[str, Any]:
        """Rows read and ms of the first (cold) run, median ms of ``repeat`` more runs,
        and the tables the statements of one run read."""
        self.issued.clear()
        t0 = time.perf_counter()
        rows = self._selected_rows_delta(read)
        cold_ms = (time.perf_counter() - t0) * 1000
        statements = list(self.issued)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            read()
            times.append((time.perf_counter() - t0) * 1000)
        return {
            "name": name,
            "cold_ms": cold_ms,
            "ms": statistics.median(times),
            "rows_read": rows,
            "tables": self._tables(statements),
        }

    def _tables(self, statements: list[tuple[str, dict[str, Any] | None]]) -> str:
        """Tables each statement reads, with selected/total granules, from EXPLAIN."""
        found: dict[str, list[int]] = {}
        for sql, params in statements:
            plan = [r[0] for r in self._query(f"EXPLAIN indexes = 1 {sql}", params)]
            current = None
            for line in plan:
                m = re.search(r"ReadFromMergeTree \((?:\w+\.)?(\w+)\)", line)
                if m:
                    current = m.group(1)
                    found.setdefault(current, [0, 0])
                g = re.search(r"Granules: (\d+)/(\d+)", line)
                if g and current is not None:
                    # The last "Granules" of a table's block is after every index.
                    found[current][0] = int(g.group(1))
                    found[current][1] = int(g.group(2))
        return ", ".join(f"{t} {s}/{n} granules" for t, (s, n) in sorted(found.items()))


def insert_cost(path: Path, events: int, log: Callable[[str], None]) -> tuple[float, float]:
    """Seconds to insert ``events`` without and with the derived views (fresh stores)."""
    out = []
    for derived in (False, True):
        directory = path / ("with" if derived else "without")
        with open_store(data=directory) as store:
            migrations = [m for m in discover() if derived or m.version <= 3]
            migrate(store, migrations)
            out.append(fill(store, events // EVENTS_PER_TASK, log))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--data", type=Path, default=None, help="Store directory (kept).")
    parser.add_argument("--clickhouse", default=None, help="A server URL instead of --data.")
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs per read.")
    parser.add_argument(
        "--insert-cost-events",
        type=int,
        default=1_000_000,
        help="Events for the insert-cost comparison, with and without the derived views "
        "(in-process stores in a temporary directory; 0 skips it).",
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="agenttrail-bench-"))
    try:
        _run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(args: argparse.Namespace, scratch: Path) -> None:
    tasks = args.events // EVENTS_PER_TASK
    if args.insert_cost_events:
        print(f"Insert cost of the derived views ({args.insert_cost_events:,} events each):")
        without, with_views = insert_cost(scratch, args.insert_cost_events, lambda _: None)
        n = args.insert_cost_events
        print(f"  raw tables only        {without:6.1f} s  {n / without:10,.0f} events/s")
        print(f"  raw + derived views    {with_views:6.1f} s  {n / with_views:10,.0f} events/s")
    data = args.data or scratch / "store"
    store = open_store(clickhouse=args.clickhouse, data=None if args.clickhouse else data)
    with store:
        migrate(store)
        print(
            f"Filling {store.location} with {tasks * EVENTS_PER_TASK:,} events ({tasks:,} tasks):"
        )
        seconds = fill(store, tasks, print)
        print(f"  filled in {seconds:.1f} s ({tasks * EVENTS_PER_TASK / seconds:,.0f} events/s)")
        _report(store, tasks, args.repeat)


def _report(store: Store, tasks: int, repeat: int) -> None:
    counts = {
        t: int(store.query(f"SELECT count() FROM {t}")[0][0])
        for t in ("llm_calls", "tool_spans", "state_transitions", "agent_messages",
                  "guard_events", "task_runs_state", "task_metrics_hourly",
                  "llm_metrics_hourly", "llm_usage_by_task")
    }  # fmt: skip
    raw = sum(v for k, v in counts.items() if k in _RAW)
    print(f"Stored: {raw:,} raw events; derived rows: " + ", ".join(
        f"{k} {v:,}" for k, v in counts.items() if k not in _RAW))  # fmt: skip
    timed, ended = store.query("SELECT sum(timed_tasks), sum(tasks) FROM task_metrics_hourly")[0]
    print(f"Tasks with a duration: {timed:,} of {ended:,} ended (of {tasks:,} recorded)")
    task_id = str(
        store.query(
            "SELECT concat('tsk_', lower(hex(cityHash64(toUInt64({t:UInt64}), 42))))",
            {"t": tasks // 2},
        )[0][0]
    )
    windows = StepWindows.ending_at(datetime.now(UTC), timedelta(hours=24))
    measured = Measured(store)
    results = [
        measured.run(f"replay {task_id}", lambda: replay_task(store, task_id), repeat),
        measured.run(
            f"replay {task_id} --step 4",
            lambda: model_input_at_step(store, task_id, 4),
            repeat,
        ),
        measured.run("metrics by task_type, everything", lambda: task_metrics(store), repeat),
        measured.run("metrics by model, everything", lambda: task_metrics(store, "model"), repeat),
        measured.run(
            "step trends (24h against the 24h before)",
            lambda: step_trends(store, windows),
            repeat,
        ),
        measured.run("runs, newest 50", lambda: list_runs(store, limit=50), repeat),
        measured.run(
            "runs --task-type type_3 --outcome failed",
            lambda: list_runs(store, task_type="type_3", outcome="failed"),
            repeat,
        ),
    ]
    # Every named forensic query with its documented defaults: these scan the raw
    # tables by design (they look for patterns across all tasks).
    for name, query in sorted(discover_named_queries().items()):
        results.append(
            measured.run(f"query {name}", lambda q=query: q.run(store, {}), repeat)  # type: ignore[misc]
        )
    print(
        f"\n| read | ms, first run | ms, median of {repeat} more | rows read (first run) "
        "| tables read (granules selected/total) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['name']} | {r['cold_ms']:.1f} | {r['ms']:.1f} | {r['rows_read']:,} "
            f"| {r['tables']} |"
        )


_RAW = {"llm_calls", "tool_spans", "state_transitions", "agent_messages", "guard_events"}


if __name__ == "__main__":
    main()
