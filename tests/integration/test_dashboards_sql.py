"""Every dashboard query, expanded as Grafana and the ClickHouse plugin would expand it,
runs on the in-process engine over demo data and returns the columns its panel expects.

One LocalStack for the module: the demo workloads of two tenants through the real SDK,
broker and consumer, plus one undecodable message (so the dead-letter panels have a row).
Variables are resolved the way Grafana resolves them: each query variable's own SQL runs
first, and its options feed the panels. Each dashboard is run with "All" selected and
again with one tenant selected (the ``singlequote`` path).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from agenttrail.demo import run_workloads
from agenttrail.embedded import LocalStack
from agenttrail.events import EVENTS_TOPIC
from agenttrail.producer import Recorder
from agenttrail.store import Store
from tests.grafana_macros import ALL, Variable, expand

ROOT = Path(__file__).resolve().parents[2]
BOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))}
TENANTS = {"acme": 12, "globex": 6}  # demo tasks per tenant
TRACE_COLUMNS = {
    "traceID",
    "spanID",
    "parentSpanID",
    "serviceName",
    "operationName",
    "startTime",
    "duration",
    "tags",
    "serviceTags",
}
NUMERIC = ("Int", "UInt", "Float", "Decimal", "Nullable(Float", "Nullable(Int", "Nullable(UInt")
# Panels the demo may leave empty, with the reason (every other panel must return rows).
MAY_BE_EMPTY: dict[tuple[str, str], str] = {}


@dataclass
class Demo:
    store: Store
    finished_tasks: dict[str, int]
    now: datetime


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data = tmp_path_factory.mktemp("dashboards") / "data"
    with LocalStack(data=data) as stack:
        delivered = 0
        finished: dict[str, int] = {}
        for n, (tenant, tasks) in enumerate(TENANTS.items()):
            rec = Recorder(
                bootstrap=stack.bootstrap,
                tenant=tenant,
                agent="demo-agent",
                spool_dir=data / f"spool-{tenant}",
            )
            plan = run_workloads(rec, tasks=tasks, seed=11 + n)
            report = rec.close()
            assert report.complete, report
            delivered += report.delivered
            finished[tenant] = plan.tasks
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
        producer.send(EVENTS_TOPIC, b"\x07not an agenttrail event").get(timeout=30)
        producer.close()
        stack.wait_stored(delivered + 1, timeout=120)
        assert stack.store is not None
        yield Demo(stack.store, finished, datetime.now(UTC))


def _run(store: Store, sql: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """Column (name, type) pairs and rows of one expanded query."""
    described = store.query(f"DESCRIBE TABLE ({sql})")
    return [(str(r[0]), str(r[1])) for r in described], store.query(sql)


def _resolve_variables(
    demo: Demo, board: dict[str, Any], tenant: str | None, window: dict[str, Any]
) -> dict[str, Variable]:
    """Run each query variable in order and select: All (or ``tenant``), else the first
    option that makes the replay panels interesting (a task with LLM calls)."""
    variables: dict[str, Variable] = {}
    for var in board["templating"]["list"]:
        sql = expand(var["query"]["rawSql"], variables=variables, **window)
        _, rows = _run(demo.store, sql)
        options = [str(r[0]) for r in rows]
        assert options, f"variable {var['name']} has no options over the demo data"
        if var["name"] == "tenant" and tenant is not None:
            current = [tenant]
        elif var["includeAll"]:
            current = [ALL]
        elif var["name"] == "task":
            with_calls = {
                str(r[0])
                for r in demo.store.query(
                    "SELECT task_id FROM llm_calls GROUP BY task_id HAVING max(step) >= 2"
                )
            }
            current = [next(o for o in options if o in with_calls)]
        else:
            current = [options[-1]]
        variables[var["name"]] = Variable(current, options)
    return variables


def _expected_columns(panel: dict[str, Any]) -> list[str] | None:
    for t in panel.get("transformations", []):
        if t["id"] == "organize":
            order = t["options"]["indexByName"]
            return sorted(order, key=order.get)
    return None


def _check_panel(
    board: str, panel: dict[str, Any], columns: list[tuple[str, str]], rows: list[Any]
) -> None:
    where = f"{board}: {panel['title']!r}"
    names = [c[0] for c in columns]
    types = dict(columns)
    for override in panel["fieldConfig"]["overrides"]:
        assert override["matcher"]["options"] in names, f"{where} lacks {override['matcher']}"
    expected = _expected_columns(panel)
    if expected is not None:
        assert names == expected, f"{where} returns {names}, the table shows {expected}"
    if panel["type"] == "timeseries":
        assert names[0] == "time" and types["time"].startswith("DateTime"), (where, columns)
        values = [n for n, t in columns[1:] if t.startswith(NUMERIC)]
        assert values, f"{where} has no numeric value column: {columns}"
    if panel["type"] == "stat":
        assert all(t.startswith(NUMERIC) for _, t in columns), (where, columns)
    if panel["type"] == "traces":
        assert set(names) >= TRACE_COLUMNS, (where, names)
        assert types["duration"].startswith(NUMERIC) and types["startTime"].startswith("DateTime")
        spans = {r[names.index("spanID")] for r in rows}
        parents = {r[names.index("parentSpanID")] for r in rows} - {""}
        assert parents <= spans, f"{where}: every parent span is in the trace"
    if (board, panel["title"]) not in MAY_BE_EMPTY:
        assert rows, f"{where} returns no rows over the demo data"


@pytest.mark.parametrize("tenant", [None, "acme"], ids=["all-tenants", "one-tenant"])
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_runs_and_returns_its_columns(
    demo: Demo, name: str, tenant: str | None
) -> None:
    board = BOARDS[name]
    window = {
        "time_from": demo.now - timedelta(hours=6),
        "time_to": demo.now + timedelta(minutes=5),
        "interval_s": 60,
    }
    variables = _resolve_variables(demo, board, tenant, window)
    for panel in board["panels"]:
        for target in panel["targets"]:
            sql = expand(target["rawSql"], variables=variables, **window)
            columns, rows = _run(demo.store, sql)
            _check_panel(name, panel, columns, rows)


def _panel(board: str, title: str) -> dict[str, Any]:
    return next(p for p in BOARDS[board]["panels"] if p["title"] == title)


def _value(demo: Demo, board: str, title: str, tenant: str | None) -> list[tuple[Any, ...]]:
    window = {
        "time_from": demo.now - timedelta(hours=6),
        "time_to": demo.now + timedelta(minutes=5),
        "interval_s": 60,
    }
    variables = _resolve_variables(demo, BOARDS[board], tenant, window)
    sql = expand(_panel(board, title)["targets"][0]["rawSql"], variables=variables, **window)
    return _run(demo.store, sql)[1]


def test_tasks_finished_counts_the_tasks_the_demo_ran(demo: Demo) -> None:
    assert _value(demo, "fleet", "Tasks finished", None) == [(sum(TENANTS.values()),)]
    assert _value(demo, "fleet", "Tasks finished", "acme") == [(demo.finished_tasks["acme"],)]


def test_the_dead_letter_panel_shows_the_one_bad_message(demo: Demo) -> None:
    rows = _value(demo, "pipeline", "Recent dead letters", None)
    assert len(rows) == 1 and rows[0][1] == EVENTS_TOPIC and rows[0][6] == 24


def test_the_time_range_excludes_what_lies_outside_it(demo: Demo) -> None:
    sql = _panel("fleet", "Tasks finished")["targets"][0]["rawSql"]
    variables = {"tenant": Variable([ALL], list(TENANTS)), "task_type": Variable([ALL], [])}
    past = expand(
        sql,
        time_from=demo.now - timedelta(days=30),
        time_to=demo.now - timedelta(days=29),
        interval_s=60,
        variables=variables,
    )
    assert _run(demo.store, past)[1] in ([(0,)], [(None,)])
