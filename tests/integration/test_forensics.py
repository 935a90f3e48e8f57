"""Named forensic queries against planted cases, through the real broker and engine.

One LocalStack for the module. ``plant`` records, through the SDK, one task per failure
of the field note and clean tasks that resemble them but must not match; the test
names say which is which. Each query must return exactly its planted tasks.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.embedded import LocalStack
from agenttrail.producer import LimitExceeded, Limits, Recorder, RulePolicy, Task
from agenttrail.query import QueryParamError, discover_named_queries, load_named_query
from agenttrail.store import FAMILY_TABLES, Store

TENANT = "acme"
OTHER_TENANT = "globex"
TOOLS = ("get_order", "create_invoice", "notify_finance")
INVOICE_ARGS = {"order_id": "7294", "line_items": [{"sku": "A1", "quantity": 1}]}
SLOW_TOOL_S = 0.3
COST_TYPE = "cost_check"
# Costs of the cost_check tasks (None: a call without cost_usd). The median of the nine
# task costs is 0.010 under any definition; 3 × 0.010 = 0.03 separates the outlier.
CLEAN_COSTS = {
    "clean-cost-1": 0.009,
    "clean-cost-2": 0.010,
    "clean-cost-3": 0.010,
    "clean-cost-4": 0.010,
    "clean-cost-5": 0.011,
    "clean-cost-6": 0.012,
    "clean-cost-double": 0.020,  # twice the median: high, but below the factor of 3
    "clean-cost-unpriced": None,
}
OUTLIER_CALL_COSTS = (0.15, 0.05)
CONTEXT_WINDOW = 10_000
PLANTED_CONTEXT_TOKENS = (2_000, 5_200, 8_600)  # 86 % of the window at the end
CLEAN_CONTEXT_TOKENS = (1_500, 3_000, 5_000)  # 50 %
LOOP_MAX_STEPS = 4
INJECTION = "x' OR 1=1 --"


class AgentBug(RuntimeError):
    """An error in the simulated agent's own code (no failing span)."""


def _llm(
    task: Task,
    *,
    input_tokens: int = 300,
    cost: float | None = None,
    context_window: int | None = None,
    model: str = "gpt-4.1",
) -> None:
    with task.llm_call(
        model=model,
        messages=[{"role": "user", "content": f"step {task.step + 1}"}],
        context_window=context_window,
    ) as call:
        call.respond(content="ok", input_tokens=input_tokens, output_tokens=20, cost_usd=cost)


def _invoice(rec: Recorder, task_id: str, **kwargs: Any) -> Task:
    options: dict[str, Any] = {"tools": TOOLS, **kwargs}
    return rec.task("invoice_generation", task_id=task_id, **options)


def _plant_retries(rec: Recorder) -> None:
    with _invoice(rec, "plant-retry") as task:
        _llm(task)
        with task.tool("create_invoice", args=INVOICE_ARGS, side_effect="write") as span:
            span.fail("timeout after 30 s (the invoice may have been created)")
        with task.tool("create_invoice", args=INVOICE_ARGS, side_effect="write", attempt=2) as s:
            s.result({"invoice_id": "inv_2", "status": "draft"})
    with _invoice(rec, "clean-retry-read-key") as task:
        _llm(task)
        for attempt in (1, 2):
            with task.tool(
                "get_order", args={"order_id": "1"}, idempotency_key="k-1", attempt=attempt
            ) as span:
                span.result({"status": "confirmed"})
    with _invoice(rec, "clean-retry-write-key") as task:
        _llm(task)
        for attempt in (1, 2):
            with task.tool(
                "create_invoice",
                args=INVOICE_ARGS,
                side_effect="write",
                idempotency_key="order-7294",
                attempt=attempt,
            ) as span:
                span.result({"invoice_id": "inv_1", "status": "draft"})


def _plant_tools(rec: Recorder) -> None:
    with _invoice(rec, "plant-hallucinated") as task:
        _llm(task)
        with task.tool("lookup_credit", args={"customer": "c-1"}) as span:
            span.fail("No tool named lookup_credit; available: " + ", ".join(TOOLS))
    with _invoice(rec, "plant-undeclared") as task:
        _llm(task)
        with task.tool("delete_customer", args={"customer": "c-2"}, side_effect="write") as s:
            s.result({"deleted": True})  # exists, but this task never declared it
    # No declared tools: only the error tells that the tool does not exist.
    with rec.task("invoice_generation", task_id="plant-unknown-tool") as task:
        _llm(task)
        with task.tool("fetch_weather", args={"city": "Oslo"}) as span:
            span.fail("unknown tool: fetch_weather")
    with _invoice(rec, "clean-declared-failure") as task:
        _llm(task)
        with task.tool("get_order", args={"order_id": "7294"}) as span:
            span.fail("Order 7294 was not found in the staging database.")
    with _invoice(rec, "plant-slow") as task:
        _llm(task)
        task.confirm("notify_finance", {"order_id": "9"}, policy=RulePolicy(lambda r: True, "t"))
        with task.tool("notify_finance", args={"order_id": "9"}, side_effect="irreversible") as s:
            time.sleep(SLOW_TOOL_S)
            s.result({"sent": True})


def _plant_loops(rec: Recorder) -> None:
    with contextlib.suppress(LimitExceeded):
        with _invoice(rec, "plant-loop", limits=Limits(max_steps=LOOP_MAX_STEPS)) as task:
            while True:
                _llm(task)
                with task.tool("get_order", args={"order_id": "55"}) as span:
                    span.result({"order": None, "note": "<html>maintenance</html>"})
    with _invoice(rec, "clean-loop-below-k", limits=Limits(max_steps=10)) as task:
        for _ in range(2):
            _llm(task)
            with task.tool("get_order", args={"order_id": "56"}) as span:
                span.result({"status": "confirmed"})


def _plant_failures(rec: Recorder) -> None:
    with contextlib.suppress(AgentBug):
        with _invoice(rec, "plant-cascade") as task:
            _llm(task)
            with task.tool("get_order", args={"order_id": "77"}) as span:
                span.fail("Order 77 was not found in the staging database.")
            _llm(task)
            with task.tool("create_invoice", args={"order_id": "77"}, side_effect="write"):
                raise AgentBug("create_invoice: order 77 has no line items")
    with contextlib.suppress(AgentBug):
        with _invoice(rec, "plant-llm-root") as task:
            with contextlib.suppress(ConnectionError):
                with task.llm_call(model="claude-sonnet-4", messages=[{"role": "user"}]):
                    raise ConnectionError("provider overloaded (529)")
            with task.tool("get_order", args={"order_id": "78"}) as span:
                span.fail("no answer from the orders service")
            raise AgentBug("gave up after the model and the orders service failed")
    with contextlib.suppress(AgentBug):
        with _invoice(rec, "plant-failed-without-span") as task:
            _llm(task)
            raise AgentBug("KeyError in the agent's own parsing code")
    with _invoice(rec, "clean-recovered") as task:
        _llm(task)
        with task.tool("get_order", args={"order_id": "79"}) as span:
            span.fail("temporarily unavailable")
        with task.tool("get_order", args={"order_id": "79", "retry": True}) as span:
            span.result({"status": "confirmed"})


def _review(rec: Recorder, task_id: str, reply_version: str) -> None:
    with rec.task("software_delivery", task_id=task_id) as task:
        request = task.agent_message(
            sender="orchestrator",
            recipient="ReviewAgent",
            contract="review.request",
            version="1.0",
            payload={"diff": "+42 -3"},
        )
        task.agent_message(
            sender="ReviewAgent",
            recipient="orchestrator",
            contract="review.result",
            version=reply_version,
            payload={"approved": True},
            direction="received",
            in_reply_to=request,
        )


def _plant_costs_and_context(rec: Recorder) -> None:
    for task_id, cost in CLEAN_COSTS.items():
        with rec.task(COST_TYPE, task_id=task_id) as task:
            _llm(task, cost=cost)
    with rec.task(COST_TYPE, task_id="plant-cost") as task:
        for cost in OUTLIER_CALL_COSTS:
            _llm(task, cost=cost)
    for task_id, tokens in (
        ("plant-context", PLANTED_CONTEXT_TOKENS),
        ("clean-context", CLEAN_CONTEXT_TOKENS),
    ):
        with rec.task("research", task_id=task_id) as task:
            for n in tokens:
                _llm(task, input_tokens=n, context_window=CONTEXT_WINDOW)


def plant(rec: Recorder) -> None:
    """Record every planted and clean task of this module through ``rec``."""
    _plant_retries(rec)
    _plant_tools(rec)
    _plant_loops(rec)
    _plant_failures(rec)
    _review(rec, "plant-contract", reply_version="0.9")
    _review(rec, "clean-contract-1", reply_version="1.0")
    _review(rec, "clean-contract-2", reply_version="1.0")
    _plant_costs_and_context(rec)


@dataclass
class Planted:
    """The running stack with the planted data stored, and how many events that was."""

    stack: LocalStack
    store: Store
    data: Path
    events: int


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    data = tmp_path_factory.mktemp("forensics") / "data"
    with LocalStack(data=data) as stack:
        rec = Recorder(
            bootstrap=stack.bootstrap, tenant=TENANT, agent="invoicer", spool_dir=data / "spool"
        )
        plant(rec)
        other = Recorder(
            bootstrap=stack.bootstrap, tenant=OTHER_TENANT, agent="x", spool_dir=data / "spool2"
        )
        with contextlib.suppress(LimitExceeded):
            with other.task(
                "invoice_generation", task_id="other-limit", limits=Limits(max_steps=1)
            ) as t:
                _llm(t)
                _llm(t)  # the second step crosses max_steps=1
        events = 0
        for recorder in (rec, other):
            report = recorder.close()
            assert report.complete, report
            events += report.delivered
        stack.wait_stored(events, timeout=60)
        assert stack.store is not None
        yield Planted(stack, stack.store, data, events)


def _run(planted: Planted, name: str, **params: object) -> list[dict[str, Any]]:
    return load_named_query(name).run(planted.store, params).records()


def _tasks(planted: Planted, name: str, **params: object) -> list[str]:
    return [row["task_id"] for row in _run(planted, name, **params)]


def test_every_query_documents_the_columns_the_store_returns(planted: Planted) -> None:
    for query in discover_named_queries().values():
        described = planted.store.query(f"DESCRIBE ({query.sql})", query.bind({}))
        assert [(str(r[0]), str(r[1])) for r in described] == [
            (c.name, c.type) for c in query.columns
        ], query.name


def test_repeated_identical_calls_flags_the_unkeyed_write_retry_only(planted: Planted) -> None:
    rows = _run(planted, "repeated_identical_tool_calls")
    assert [(r["task_id"], r["tool"]) for r in rows] == [("plant-retry", "create_invoice")]
    row = rows[0]
    assert (row["calls"], row["failed_calls"], row["max_attempt"]) == (2, 1, 2)
    assert (row["side_effect"], row["calls_without_key"], row["risky"]) == ("write", 2, True)
    assert json.loads(row["arguments"]) == INVOICE_ARGS


def test_repeated_identical_calls_lists_safe_repeats_when_asked(planted: Planted) -> None:
    rows = _run(planted, "repeated_identical_tool_calls", include_safe="true")
    safe = {r["task_id"]: r["risk"] for r in rows if not r["risky"]}
    assert safe == {
        "clean-retry-read-key": "safe: reads only",
        "clean-retry-write-key": "safe: one idempotency key on every call",
        "clean-loop-below-k": "safe: reads only",
        "plant-loop": "safe: reads only",
    }
    assert [r["task_id"] for r in rows if r["risky"]] == ["plant-retry"]


def test_hallucinated_tools_finds_undeclared_and_unknown_tools(planted: Planted) -> None:
    rows = _run(planted, "hallucinated_tools")
    found = {(r["task_id"], r["tool"], r["reason"]) for r in rows}
    assert found == {
        ("plant-hallucinated", "lookup_credit", "undeclared and failed as unknown tool"),
        ("plant-undeclared", "delete_customer", "undeclared"),
        ("plant-unknown-tool", "fetch_weather", "failed as unknown tool"),
    }


def test_tool_loops_finds_the_loop_that_hit_its_step_limit(planted: Planted) -> None:
    rows = _run(planted, "tool_loops")
    assert [(r["task_id"], r["tool"]) for r in rows] == [("plant-loop", "get_order")]
    assert rows[0]["repeats"] == LOOP_MAX_STEPS
    assert rows[0]["outcome"] == "limit_exceeded"
    assert (rows[0]["first_step"], rows[0]["last_step"]) == (1, LOOP_MAX_STEPS)


def test_tool_loops_threshold_is_the_parameter(planted: Planted) -> None:
    below_k = {
        "plant-retry",
        "clean-retry-read-key",
        "clean-retry-write-key",
        "clean-loop-below-k",
        "plant-loop",
    }
    assert set(_tasks(planted, "tool_loops", min_repeats="2")) == below_k
    assert _tasks(planted, "tool_loops", min_repeats=str(LOOP_MAX_STEPS + 1)) == []


def test_limit_hits_reports_the_limit_and_the_observed_value(planted: Planted) -> None:
    rows = _run(planted, "limit_hits", tenant=TENANT)
    assert [r["task_id"] for r in rows] == ["plant-loop"]
    row = rows[0]
    assert (row["limit_name"], row["limit_value"], row["observed_value"]) == (
        "steps",
        float(LOOP_MAX_STEPS),
        float(LOOP_MAX_STEPS + 1),
    )
    assert row["guard_event_recorded"] and row["transition_recorded"]
    assert _tasks(planted, "limit_hits", limit_name="tokens") == []


def test_cost_outliers_finds_the_expensive_task_of_its_type(planted: Planted) -> None:
    rows = _run(planted, "cost_outliers")
    assert [r["task_id"] for r in rows] == ["plant-cost"]
    row = rows[0]
    assert row["cost_usd"] == pytest.approx(sum(OUTLIER_CALL_COSTS))
    assert row["median_cost_usd"] == pytest.approx(0.010)
    assert row["tasks_of_type"] == len(CLEAN_COSTS) + 1
    assert row["times_median"] == pytest.approx(sum(OUTLIER_CALL_COSTS) / 0.010)
    # Half the factor lets the task that cost twice the median in, and nothing else.
    assert set(_tasks(planted, "cost_outliers", factor="1.5")) == {
        "plant-cost",
        "clean-cost-double",
    }


def test_cost_outliers_counts_calls_without_cost_as_zero(planted: Planted) -> None:
    rows = _run(planted, "cost_outliers", factor="0")
    unpriced = [r for r in rows if r["task_id"] == "clean-cost-unpriced"]
    assert unpriced == []  # cost 0 is never above 0 × median
    everyone = {r["task_id"]: r for r in _run(planted, "cost_outliers", factor="-1")}
    assert everyone["clean-cost-unpriced"]["cost_usd"] == 0
    assert everyone["clean-cost-unpriced"]["calls_without_cost"] == 1


def test_slowest_tool_spans_puts_the_slow_call_first(planted: Planted) -> None:
    rows = _run(planted, "slowest_tool_spans", limit="1")
    assert [(r["task_id"], r["tool"]) for r in rows] == [("plant-slow", "notify_finance")]
    assert rows[0]["latency_ms"] >= SLOW_TOOL_S * 1000
    above = _tasks(planted, "slowest_tool_spans", min_latency_ms=str(SLOW_TOOL_S * 1000 - 1))
    assert above == ["plant-slow"]


def test_first_failing_span_is_the_root_cause_of_each_failed_task(planted: Planted) -> None:
    rows = {r["task_id"]: r for r in _run(planted, "first_failing_span")}
    assert set(rows) == {"plant-cascade", "plant-llm-root", "plant-failed-without-span"}
    cascade = rows["plant-cascade"]
    assert (cascade["root_family"], cascade["root_name"], cascade["root_step"]) == (
        "tool_span",
        "get_order",
        1,
    )
    assert cascade["root_error"] == "Error: Order 77 was not found in the staging database."
    assert cascade["task_error"] == "AgentBug: create_invoice: order 77 has no line items"
    assert cascade["failing_spans"] == 2
    llm_root = rows["plant-llm-root"]
    assert (llm_root["root_family"], llm_root["root_name"]) == ("llm_call", "claude-sonnet-4")
    assert llm_root["root_error"] == "ConnectionError: provider overloaded (529)"
    no_span = rows["plant-failed-without-span"]
    assert (no_span["root_family"], no_span["failing_spans"]) == (None, 0)


def test_contract_version_mismatches_point_at_the_old_reply(planted: Planted) -> None:
    rows = _run(planted, "contract_version_mismatches")
    found = {
        (r["kind"], r["task_id"], r["sender"], r["contract_version"], r["expected_version"])
        for r in rows
    }
    assert found == {
        ("reply_differs_from_request", "plant-contract", "ReviewAgent", "0.9", "1.0"),
        ("agent_uses_several_versions", "plant-contract", "ReviewAgent", "0.9", "1.0"),
    }


def test_context_growth_shows_tokens_per_step_of_the_nearly_full_task(planted: Planted) -> None:
    rows = _run(planted, "context_growth")
    assert [r["task_id"] for r in rows] == ["plant-context"]
    row = rows[0]
    assert row["input_tokens_by_step"] == list(PLANTED_CONTEXT_TOKENS)
    assert row["fill"] == pytest.approx(PLANTED_CONTEXT_TOKENS[-1] / CONTEXT_WINDOW)
    assert row["context_window"] == CONTEXT_WINDOW
    expected_growth = (PLANTED_CONTEXT_TOKENS[-1] - PLANTED_CONTEXT_TOKENS[0]) / 2
    assert row["growth_per_step"] == pytest.approx(expected_growth)
    assert set(_tasks(planted, "context_growth", min_fill="0.5")) == {
        "plant-context",
        "clean-context",
    }


def test_tenant_and_since_filter_every_query(planted: Planted) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for name in discover_named_queries():
        assert _run(planted, name, tenant="nobody") == [], name
        assert _run(planted, name, since=future) == [], name
    assert _tasks(planted, "limit_hits", tenant=OTHER_TENANT) == ["other-limit"]
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for since in ("1h", an_hour_ago):
        assert _tasks(planted, "limit_hits", tenant=TENANT, since=since) == ["plant-loop"]


def _table_counts(store: Store) -> dict[str, int]:
    return {t: int(store.query(f"SELECT count() FROM {t}")[0][0]) for t in FAMILY_TABLES.values()}


def test_an_injection_through_a_param_is_treated_as_data(planted: Planted) -> None:
    before = _table_counts(planted.store)
    assert sum(before.values()) == planted.events
    for name, query in discover_named_queries().items():
        for param in ("task_type", "tenant"):
            if any(p.name == param for p in query.params):
                assert _run(planted, name, **{param: INJECTION}) == [], (name, param)
    dropper = "'; DROP TABLE tool_spans; --"
    assert _run(planted, "slowest_tool_spans", tool=dropper) == []
    with pytest.raises(QueryParamError):
        _run(planted, "tool_loops", min_repeats="1 OR 1=1")
    assert _table_counts(planted.store) == before


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["query", *args], catch_exceptions=False)


def test_cli_runs_a_query_as_json_csv_and_table(planted: Planted) -> None:
    data = str(planted.data)
    out = _cli("tool_loops", "--data", data, "--format", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert [r["task_id"] for r in doc["rows"]] == ["plant-loop"]
    assert doc["params"]["min_repeats"] == 3
    csv_out = _cli("limit_hits", "--data", data, "--format", "csv", "--param", "limit_name=steps")
    assert csv_out.exit_code == 0, csv_out.output
    lines = csv_out.output.splitlines()
    assert lines[0].startswith("tenant,task_id,task_type,limit_name")
    assert len(lines) == 3 and "other-limit" in csv_out.output and "plant-loop" in csv_out.output
    table = _cli("hallucinated_tools", "--data", data)
    assert table.exit_code == 0, table.output
    assert "lookup_credit" in table.output and "fetch_weather" in table.output
    assert "3 rows." in table.output


def test_cli_injection_finds_nothing_and_exits_zero(planted: Planted) -> None:
    out = _cli(
        "first_failing_span",
        "--data",
        str(planted.data),
        "--param",
        f"task_type={INJECTION}",
        "--format",
        "json",
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["rows"] == []
    assert sum(_table_counts(planted.store).values()) == planted.events


def test_cli_refuses_bad_params_with_exit_2(planted: Planted) -> None:
    data = str(planted.data)
    unknown = _cli("tool_loops", "--data", data, "--param", "min_repeat=3")
    assert unknown.exit_code == 2
    assert "min_repeats" in unknown.output  # the suggestion
    bad = _cli("tool_loops", "--data", data, "--param", "min_repeats=three")
    assert bad.exit_code == 2 and "min_repeats" in bad.output
    assert _cli("no_such_query", "--data", data).exit_code == 2
