"""task_runs and metrics against values computed from the events themselves.

One LocalStack for the module (real broker, real consumer, real in-process engine).
The seeded demo workloads and a few extra tasks (calls without a reported cost, a model
without a price, killed and still running tasks) are recorded through the SDK with an
exporter that also keeps a copy of every event the broker acknowledged. The tests
compute each task's record and each metric from that copy, in Python, and compare
them with what the derived tables (materialized views) hold.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, TopicPartition

from agenttrail.cli import main
from agenttrail.consumers import Batch, BatchDecoder, BatchWriter, OffsetLedger
from agenttrail.demo import run_workloads
from agenttrail.embedded import LocalStack
from agenttrail.events import EventCodec
from agenttrail.producer import Recorder
from agenttrail.producer._exporter import AckCallback, Exporter, KafkaExporter, OutRecord
from agenttrail.query import StepWindows, get_run, list_runs, step_trends, task_metrics
from agenttrail.store import FAMILY_TABLES, Store
from tests.deadline import wait_until

TENANT = "derived-test"
TERMINAL = {"succeeded", "failed", "limit_exceeded", "killed"}
# The test's own copy of the shipped prices (migration 0005) of the models it uses:
# USD per million input, output, cached tokens.
SHIPPED_PRICES = {"gpt-4.1": (2.0, 8.0, 0.5), "gpt-4o-mini": (0.15, 0.6, 0.075)}
UNPRICED_MODEL = "in-house-llm"


class CopyingExporter:
    """A KafkaExporter that also keeps every record the broker acknowledged."""

    def __init__(self, inner: Exporter):
        self.inner = inner
        self._acked: dict[bytes, OutRecord] = {}
        self._lock = threading.Lock()

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        def done(record: OutRecord, error: BaseException | None) -> None:
            if error is None:
                with self._lock:
                    self._acked[record.value] = record  # a re-sent record counts once
            on_done(record, error)

        self.inner.export(records, done)

    def probe(self, timeout: float) -> bool:
        return self.inner.probe(timeout)

    def flush(self, timeout: float) -> bool:
        return self.inner.flush(timeout)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def events(self, *, checkpoints: bool = False) -> list[dict[str, Any]]:
        """The acknowledged events, decoded; the recorder's checkpoints only if asked."""
        codec = EventCodec()
        with self._lock:
            values = list(self._acked)
        events = [codec.decode(v) for v in values]
        return events if checkpoints else [e for e in events if e["event_type"] != "checkpoint"]


@dataclass
class Seeded:
    stack: LocalStack
    store: Store
    data: Path
    events: list[dict[str, Any]]

    def of_task(self) -> dict[str, list[dict[str, Any]]]:
        tasks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in self.events:
            tasks[e["task_id"]].append(e)
        return tasks


def record_extra_tasks(rec: Recorder) -> None:
    """Tasks the demo lacks: calls without cost_usd, an unpriced model, killed, running."""
    for i in range(8):
        model = (*SHIPPED_PRICES, UNPRICED_MODEL)[i % 3]
        with rec.task("triage", task_id=f"tri-{i:03d}", tools=["lookup"]) as task:
            for step in range(1 + i % 3):
                with task.llm_call(
                    model=model, messages=[{"role": "user", "content": f"triage {i}/{step}"}]
                ) as call:
                    call.respond(
                        "ok",
                        input_tokens=1000 + 17 * i,
                        output_tokens=200 + i,
                        cached_tokens=300 * (i % 2),
                    )  # no cost_usd: priced from the price table
                with task.tool("lookup", args={"i": i, "step": step}) as span:
                    span.result({"found": True})
            if i % 4 == 1:
                task.end("killed", reason="kill switch for triage")
    running = rec.task("triage", task_id="tri-running", tools=["lookup"])
    running.start()  # never ended: still running
    with running.llm_call(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]) as call:
        call.respond("working", input_tokens=50, output_tokens=5, cost_usd=0.01)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    data = tmp_path_factory.mktemp("derived") / "data"
    with LocalStack(data, partitions=4) as stack:
        exporter = CopyingExporter(KafkaExporter(stack.bootstrap))
        rec = Recorder(
            exporter=exporter,
            tenant=TENANT,
            agent="demo-agent",
            agent_version="2.0",
            spool_dir=data / "spool",
        )
        run_workloads(rec, tasks=45, seed=1)
        record_extra_tasks(rec)
        report = rec.close()
        assert report.spooled == 0, report
        events = exporter.events()
        stack.wait_stored(len(events), timeout=120)
        assert stack.store is not None
        yield Seeded(stack, stack.store, data, events)


# -- the test's own computation of the record and the metrics --------------------------------


def call_cost(e: dict[str, Any]) -> float | None:
    if e["cost_usd"] is not None:
        return float(e["cost_usd"])
    if e["model"] not in SHIPPED_PRICES:
        return None
    p_in, p_out, p_cached = SHIPPED_PRICES[e["model"]]
    uncached = max(e["input_tokens"] - e["cached_tokens"], 0)
    return (uncached * p_in + e["cached_tokens"] * p_cached + e["output_tokens"] * p_out) / 1e6


def ms_between(start: datetime, end: datetime) -> float:
    return (end - start) / timedelta(microseconds=1) / 1000.0


def expected_record(events: list[dict[str, Any]]) -> dict[str, Any]:
    events = sorted(events, key=lambda e: e["seq"])
    calls = [e for e in events if e["event_type"] == "llm_call"]
    tools = [e for e in events if e["event_type"] == "tool_span"]
    ends = [
        e for e in events if e["event_type"] == "state_transition" and e["to_state"] in TERMINAL
    ]
    end = ends[0] if ends else None
    start = min(e["ts"] for e in events)
    error = None
    if end is not None and end["error_type"] is not None:
        error = f"{end['error_type']}: {end['error_detail'] or ''}"
    elif end is not None and end["to_state"] != "succeeded":
        error = end["reason"]
    costs = [call_cost(c) for c in calls]
    return {
        "task_type": events[0]["task_type"],
        "agent_name": events[0]["agent_name"],
        "agent_version": events[0]["agent_version"],
        "start_time": start,
        "end_time": end["ts"] if end else None,
        "last_event_at": max(e["ts"] for e in events),
        "duration_ms": ms_between(start, end["ts"]) if end else None,
        "outcome": end["to_state"] if end else "running",
        "error": error,
        "steps": max(e["step"] for e in events),
        "events": len(events),
        "llm_calls": len(calls),
        "input_tokens": sum(c["input_tokens"] for c in calls),
        "output_tokens": sum(c["output_tokens"] for c in calls),
        "cached_tokens": sum(c["cached_tokens"] for c in calls),
        "models": sorted({c["model"] for c in calls}),
        "tool_calls": [
            (t["seq"], t["step"], t["tool"], t["latency_ms"], t["success"]) for t in tools
        ],
        "cost_usd": sum(c for c in costs if c is not None),
        "unpriced_calls": sum(1 for c in costs if c is None),
    }


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (what ClickHouse's exact mode gives)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def expected_metrics(seeded: Seeded, key: str) -> dict[tuple[str, ...], dict[str, Any]]:
    def group(e: dict[str, Any]) -> tuple[str, ...]:
        if key == "agent":
            return (e["agent_name"], e["agent_version"])
        return (e[key],)

    tasks: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    calls: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for task_events in seeded.of_task().values():
        record = expected_record(task_events)
        if record["outcome"] != "running" and key != "model":
            tasks[group(task_events[0])].append(record)
        for e in task_events:
            if e["event_type"] == "llm_call":
                calls[group(e)].append(e)
    out: dict[tuple[str, ...], dict[str, Any]] = defaultdict(dict)
    for g, records in tasks.items():
        durations = [r["duration_ms"] for r in records]
        out[g].update(
            tasks=len(records),
            outcomes={s: sum(r["outcome"] == s for r in records) for s in sorted(TERMINAL)},
            success_rate=sum(r["outcome"] == "succeeded" for r in records) / len(records),
            mean_steps=sum(r["steps"] for r in records) / len(records),
            duration_p50_ms=quantile(durations, 0.5),
            duration_p95_ms=quantile(durations, 0.95),
            mean_duration_ms=sum(durations) / len(durations),
        )
    for g, cs in calls.items():
        costs = [call_cost(c) for c in cs]
        latencies = [c["latency_ms"] for c in cs]
        out[g].update(
            llm_calls=len(cs),
            llm_failures=sum(not c["success"] for c in cs),
            input_tokens=sum(c["input_tokens"] for c in cs),
            output_tokens=sum(c["output_tokens"] for c in cs),
            cached_tokens=sum(c["cached_tokens"] for c in cs),
            cost_usd=sum(c for c in costs if c is not None),
            unpriced_calls=sum(c is None for c in costs),
            llm_latency_p50_ms=quantile(latencies, 0.5),
            llm_latency_p95_ms=quantile(latencies, 0.95),
            mean_llm_latency_ms=sum(latencies) / len(latencies),
        )
    return dict(out)


def assert_records_match(seeded: Seeded) -> None:
    expected = {tid: expected_record(evs) for tid, evs in seeded.of_task().items()}
    runs = list_runs(seeded.store, tenant=TENANT, limit=10_000)
    assert sorted(r.task_id for r in runs) == sorted(expected)
    for run in runs:
        want = expected[run.task_id]
        got = run.to_dict() | {"start_time": run.start_time, "end_time": run.end_time}
        got["last_event_at"] = run.last_event_at
        got["tool_calls"] = [
            (t.seq, t.step, t.tool, t.latency_ms, t.success) for t in run.tool_calls
        ]
        got["models"] = list(run.models)
        for name, value in want.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (run.task_id, name)
            else:
                assert got[name] == value, (run.task_id, name)


def assert_metrics_match(seeded: Seeded) -> None:
    for key in ("task_type", "agent", "model"):
        expected = expected_metrics(seeded, key)
        rows = task_metrics(seeded.store, key, tenant=TENANT)
        got = {tuple(r.group.values()): r.to_dict() for r in rows}
        assert sorted(got) == sorted(expected), key
        for g, want in expected.items():
            for name, value in want.items():
                if isinstance(value, float):
                    assert got[g][name] == pytest.approx(value, rel=1e-6), (key, g, name)
                else:
                    assert got[g][name] == value, (key, g, name)


# -- tests ---------------------------------------------------------------------------------


def test_the_workload_covers_every_outcome_and_cost_source(seeded: Seeded) -> None:
    records = [expected_record(evs) for evs in seeded.of_task().values()]
    assert {r["outcome"] for r in records} == {*TERMINAL, "running"}
    costs = [
        call_cost(e) for e in seeded.events if e["event_type"] == "llm_call" and not e["cost_usd"]
    ]
    assert any(c is None for c in costs) and any(c is not None for c in costs)


def test_task_runs_equal_the_records_computed_from_the_emitted_events(seeded: Seeded) -> None:
    assert_records_match(seeded)


def test_metrics_by_task_type_agent_and_model_equal_the_values_computed_from_the_events(
    seeded: Seeded,
) -> None:
    assert_metrics_match(seeded)


def test_runs_filters_select_exactly_the_matching_records(seeded: Seeded) -> None:
    expected = {tid: expected_record(evs) for tid, evs in seeded.of_task().items()}
    failed = list_runs(seeded.store, tenant=TENANT, outcome="failed", limit=10_000)
    assert sorted(r.task_id for r in failed) == sorted(
        t for t, r in expected.items() if r["outcome"] == "failed"
    )
    triage = list_runs(seeded.store, tenant=TENANT, task_type="triage", limit=3)
    newest = sorted(
        ((r["start_time"], t) for t, r in expected.items() if r["task_type"] == "triage"),
        reverse=True,
    )
    assert [r.task_id for r in triage] == [t for _, t in newest[:3]]
    everything = sorted(((r["start_time"], t) for t, r in expected.items()), reverse=True)
    since = everything[4][0]
    recent = list_runs(seeded.store, tenant=TENANT, since=since)
    assert [r.task_id for r in recent] == [t for _, t in everything[:5]]
    [running] = get_run(seeded.store, "tri-running")
    assert running.outcome == "running" and running.end_time is None


def test_runs_and_metrics_commands_print_the_same_figures_as_json(seeded: Seeded) -> None:
    runner = CliRunner()
    data = ["--data", str(seeded.data)]
    done = runner.invoke(main, ["runs", *data, "--tenant", TENANT, "--outcome", "killed", "--json"])
    assert done.exit_code == 0, done.output
    killed = json.loads(done.stdout)["runs"]
    expected = {tid: expected_record(evs) for tid, evs in seeded.of_task().items()}
    assert sorted(r["task_id"] for r in killed) == sorted(
        t for t, r in expected.items() if r["outcome"] == "killed"
    )
    for r in killed:
        assert r["cost_usd"] == pytest.approx(expected[r["task_id"]]["cost_usd"], rel=1e-9)
    done = runner.invoke(main, ["metrics", *data, "--tenant", TENANT, "--by", "model", "--json"])
    assert done.exit_code == 0, done.output
    groups = {g["group"]["model"]: g for g in json.loads(done.stdout)["groups"]}
    want = expected_metrics(seeded, "model")
    assert {(m,): g["llm_calls"] for m, g in groups.items()} == {
        k: v["llm_calls"] for k, v in want.items()
    }
    human = runner.invoke(main, ["metrics", *data, "--tenant", TENANT])
    assert human.exit_code == 0, human.output
    assert "invoice_generation" in human.stdout and "triage" in human.stdout


def test_an_unreachable_store_is_a_clear_error_with_exit_2() -> None:
    done = CliRunner().invoke(main, ["runs", "--clickhouse", "http://127.0.0.1:9/none"])
    assert done.exit_code == 2
    assert "Cannot reach the ClickHouse server" in done.stderr
    assert "Traceback" not in done.output


# -- the step-count regression warning, with rows planted hours and days apart ------------

PROBE = "probe"
UNTIL = datetime(2026, 1, 10, 12, 30, tzinfo=UTC)
LATEST = datetime(2026, 1, 9, 13, 0, tzinfo=UTC)  # windows of 24h ending at 13:00
PREVIOUS = LATEST - timedelta(hours=24)
# task type → (steps of previous-window tasks, steps of latest-window tasks, same block?)
PROBES = {
    "probe_regression": ([4] * 25, [6] * 25, False),  # +50 %: flagged
    "probe_stable": ([5] * 25, [5, 6, 4, 5, 5] * 5, True),  # ±0 %
    "probe_sparse": ([2] * 5, [9] * 5, False),  # +350 % but 5 tasks per window: not judged
}


def plant_probe_tasks(store: Store) -> dict[str, list[float]]:
    """Started/terminal transitions hours and days apart; returns durations per type.

    For two types the started rows go in one insert and the terminal rows in another
    (the duration then needs the start stored by an earlier block); for probe_stable
    both are in the same insert block.
    """
    columns = ["tenant", "task_id", "task_type", "agent_name", "agent_version", "step",
               "seq", "ts", "from_state", "to_state", "event_type"]  # fmt: skip
    durations: dict[str, list[float]] = defaultdict(list)
    for task_type, (previous, latest, same_block) in PROBES.items():
        starts, ends = [], []
        for n, (window, steps) in enumerate(
            [(PREVIOUS, s) for s in previous] + [(LATEST, s) for s in latest]
        ):
            task_id = f"{task_type}-{n:03d}"
            started = window + timedelta(minutes=37 * n % (24 * 60 - 30))
            ended = started + timedelta(milliseconds=1000 + 37 * n, microseconds=n)
            durations[task_type].append(ms_between(started, ended))
            row = [PROBE, task_id, task_type, "probe-agent", "1"]
            starts.append([*row, 0, 0, started, None, "started", "state_transition"])
            ends.append([*row, steps, 2 * steps, ended, "running", "succeeded", "state_transition"])
        blocks = [starts + ends] if same_block else [starts, ends]
        for i, rows in enumerate(blocks):
            store.insert_columns(
                "state_transitions",
                columns,
                [list(col) for col in zip(*rows, strict=True)],
                dedup_token=f"probe:{task_type}:{i}",
            )
    return durations


@pytest.fixture(scope="module")
def probes(seeded: Seeded) -> dict[str, list[float]]:
    return plant_probe_tasks(seeded.store)


def test_task_durations_are_right_whether_start_and_end_arrive_together_or_apart(
    seeded: Seeded, probes: dict[str, list[float]]
) -> None:
    rows = {r.group["task_type"]: r for r in task_metrics(seeded.store, tenant=PROBE)}
    assert sorted(rows) == sorted(PROBES)
    for task_type, durations in probes.items():
        row = rows[task_type]
        assert row.tasks == len(durations)
        assert row.duration_p50_ms == pytest.approx(quantile(durations, 0.5), rel=1e-9)
        assert row.duration_p95_ms == pytest.approx(quantile(durations, 0.95), rel=1e-9)
        previous, latest, _ = PROBES[task_type]
        assert row.mean_steps == pytest.approx(sum(previous + latest) / len(durations))


def test_step_regression_is_flagged_only_for_a_judgeable_growth(
    seeded: Seeded, probes: dict[str, list[float]]
) -> None:
    windows = StepWindows.ending_at(UNTIL, timedelta(hours=24))
    assert (windows.previous_start, windows.latest_start) == (PREVIOUS, LATEST)
    trends = {t.task_type: t for t in step_trends(seeded.store, windows, tenant=PROBE)}
    assert {t for t, trend in trends.items() if trend.regressed} == {"probe_regression"}
    for task_type, (previous, latest, _) in PROBES.items():
        trend = trends[task_type]
        assert (trend.previous_tasks, trend.latest_tasks) == (len(previous), len(latest))
        assert trend.previous_mean_steps == pytest.approx(sum(previous) / len(previous))
        assert trend.latest_mean_steps == pytest.approx(sum(latest) / len(latest))


def test_metrics_command_warns_on_the_regression_and_fails_when_asked(
    seeded: Seeded, probes: dict[str, list[float]]
) -> None:
    args = ["metrics", "--data", str(seeded.data), "--tenant", PROBE,
            "--until", UNTIL.isoformat(), "--window", "24h"]  # fmt: skip
    runner = CliRunner()
    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    warnings = [ln for ln in done.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == 1 and "probe_regression" in warnings[0], done.stderr
    assert "4.00 to 6.00 (+50%)" in warnings[0]
    assert runner.invoke(main, [*args, "--fail-on-regression"]).exit_code == 1
    latest_only = runner.invoke(main, [*args, "--since", LATEST.isoformat(), "--json"])
    groups = {g["group"]["task_type"]: g for g in json.loads(latest_only.stdout)["groups"]}
    assert {t: g["tasks"] for t, g in groups.items()} == {
        t: len(latest) for t, (_, latest, _) in PROBES.items()
    }
    loose = runner.invoke(main, [*args, "--step-threshold", "0.6", "--fail-on-regression"])
    assert loose.exit_code == 0, loose.output


# -- a consumer retry of every batch --------------------------------------------------------


def table_counts(store: Store) -> dict[str, int]:
    return {t: int(store.query(f"SELECT count() FROM {t}")[0][0]) for t in FAMILY_TABLES.values()}


def fetch_up_to(bootstrap: str, topic: str, last: dict[int, int]) -> dict[int, list[Any]]:
    """Every message of each partition up to offset ``last[partition]``, from the start."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in last]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got: dict[int, list[Any]] = defaultdict(list)

    def probe() -> bool:
        for tp, records in consumer.poll(timeout_ms=200).items():
            got[tp.partition].extend(records)
        return all(got[p] and got[p][-1].offset >= end for p, end in last.items())

    try:
        wait_until(probe, timeout=60, what="the stored batches fetched again")
    finally:
        consumer.close()
    return got


def test_a_retry_of_every_stored_batch_counts_nothing_twice(
    seeded: Seeded, probes: dict[str, list[float]]
) -> None:
    store = seeded.store
    counts_before = {
        t: store.query(f"SELECT count() FROM {t}")[0][0] for t in FAMILY_TABLES.values()
    }
    ranges = store.query(
        "SELECT DISTINCT topic, kafka_partition, first_offset, last_offset, incarnation "
        "FROM ingest_ledger WHERE state = 'after' ORDER BY kafka_partition, first_offset"
    )
    assert ranges, "the consumer recorded its batches in the ledger"
    last: dict[int, int] = {}
    for _, partition, _, end, _ in ranges:
        last[partition] = max(last.get(partition, -1), end)
    messages = fetch_up_to(seeded.stack.bootstrap, ranges[0][0], last)
    writer = BatchWriter(store, OffsetLedger(store, "retry-check", "test"))
    retried = 0
    for topic, partition, first, last, incarnation in ranges:
        batch = Batch(
            topic, partition, first, last,
            [m for m in messages[partition] if first <= m.offset <= last], incarnation,
        )  # fmt: skip
        # What a consumer does after a crash between its insert and its offset commit:
        # the same range again, hence the same deduplication tokens.
        writer.write(BatchDecoder().prepare(batch))
        retried += len(batch.messages)
    counts_after = {
        t: store.query(f"SELECT count() FROM {t}")[0][0] for t in FAMILY_TABLES.values()
    }
    assert counts_after == counts_before
    assert_records_match(seeded)
    assert_metrics_match(seeded)
