"""How the read commands print: tables, units, the regression warning, a replayed step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agenttrail.cli._common import cut, fmt_ms, fmt_usd, render_table
from agenttrail.cli._metrics import metrics_table, regression_warning
from agenttrail.cli._replay import step_text, timeline_table
from agenttrail.cli._runs import run_row
from agenttrail.query import MetricsRow, ModelInput, StepTrend, TaskRun, TimelineEvent, ToolCall

T0 = datetime(2026, 1, 15, 10, 22, 44, tzinfo=UTC)


def test_a_table_pads_columns_and_right_aligns_numbers() -> None:
    text = render_table(
        ["name", "n", "cost", "latency", "note"],
        [["a", 1, "$0.5", "812 ms", None], ["bbbb", 1234, "$12.25", "3.1 s", "x y"]],
    )
    assert text.splitlines() == [
        "name     n    cost  latency  note",
        "a        1    $0.5   812 ms  —",
        "bbbb  1234  $12.25    3.1 s  x y",
    ]


def test_long_or_multiline_cells_are_cut_to_one_line() -> None:
    assert cut("a\nb   c") == "a b c"
    assert cut("x" * 70) == "x" * 59 + "…"
    [_, row] = render_table(["t"], [["y" * 80]], cell_chars=10).splitlines()
    assert row == "y" * 9 + "…"


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, None),
        (0.4213, "0.42 ms"),
        (812.4, "812 ms"),
        (12_345, "12.3 s"),
        (246_000, "4.1 min"),
    ],
)
def test_durations_print_in_a_readable_unit(ms: float | None, text: str | None) -> None:
    assert fmt_ms(ms) == text


@pytest.mark.parametrize(
    ("usd", "text"), [(None, None), (0.0006, "$0.0006"), (2.5, "$2.5"), (1234.5, "$1,234.50")]
)
def test_costs_print_as_dollars(usd: float | None, text: str | None) -> None:
    assert fmt_usd(usd) == text


def _run(**overrides: object) -> TaskRun:
    values: dict[str, object] = dict(
        tenant="acme", task_id="inv-1", task_type="invoice", agent_name="a", agent_version="1",
        start_time=T0, end_time=T0 + timedelta(seconds=2), last_event_at=T0,
        duration_ms=2000.0, outcome="failed", error="ToolFailure: no line items", steps=3,
        events=9, max_seq=8, llm_calls=3, llm_failures=0, input_tokens=1840,
        output_tokens=512, cached_tokens=0, llm_latency_ms=12.0, models=("gpt-4.1",),
        tool_calls=(ToolCall(2, 1, "get_order", 42.0, True), ToolCall(4, 2, "x", 1.0, False)),
        tool_failures=1, agent_messages=0, guard_events=0, cost_usd=0.0078, unpriced_calls=2,
    )  # fmt: skip
    values.update(overrides)
    return TaskRun(**values)  # type: ignore[arg-type]


def test_a_run_row_shows_failed_tools_and_unpriced_calls() -> None:
    row = run_row(_run())
    assert row == [
        "inv-1", "invoice", "failed", "2026-01-15 10:22:44", "2.0 s", 3, 1840, 512,
        "2 (1 failed)", "$0.0078 +2 unpriced", "ToolFailure: no line items",
    ]  # fmt: skip
    assert _run(events=8).complete is False and _run().complete is True


def test_the_regression_warning_names_the_type_the_change_and_what_to_do() -> None:
    trend = StepTrend("invoice", 120, 130, 4.0, 5.6, 0.4, True)
    text = regression_warning(trend, "24h")
    assert text.startswith("invoice: mean steps rose from 4.00 to 5.60 (+40%) in the last 24h")
    assert "(130 and 120 tasks)" in text and "agenttrail runs --task-type invoice" in text


def test_metrics_by_model_leave_out_the_task_columns() -> None:
    row = MetricsRow(group={"model": "gpt-4.1"}, llm_calls=3, cost_usd=0.5, unpriced_calls=1)
    header = metrics_table("model", [row]).splitlines()[0].split()
    assert header[0] == "model" and "tasks" not in header and "success" not in header
    by_type = MetricsRow(group={"task_type": "t"}, tasks=4, success_rate=0.75, mean_steps=2.5)
    line = metrics_table("task_type", [by_type]).splitlines()[1]
    assert "75.0%" in line and "2.50" in line


def test_the_timeline_shows_time_since_the_first_event_and_marks_failures() -> None:
    events = [
        TimelineEvent("acme", "t", 0, 0, T0, "state_transition", "s0", None, True, "∅ → started"),
        TimelineEvent(
            "acme", "t", 1, 1, T0 + timedelta(milliseconds=12.5), "tool_span", "s1", "s0",
            False, "get_order({}) FAILED",
        ),
    ]  # fmt: skip
    lines = timeline_table(events).splitlines()
    assert lines[1].split()[:3] == ["0", "0", "+0.0"]
    assert "+12.5 ms" in lines[2] and "✗" in lines[2] and lines[2].endswith("FAILED")


def test_a_replayed_step_prints_the_messages_unaltered() -> None:
    messages = '[{"role":"user","content":"Grüße\\nline  two"}]'
    call = ModelInput(
        tenant="acme", task_id="t", step=2, seq=3, ts=T0, provider="openai", model="gpt-4.1",
        model_version=None, prompt_version="v3", system_prompt_hash=None, prompt_hash="ab",
        message_count=1, messages_json=messages, params_json='{"temperature":0}',
        response_text="ok", response_json=None, tool_calls_json=None, finish_reason="stop",
        input_tokens=10, output_tokens=2, cached_tokens=0, context_window=None,
        latency_ms=812.0, ttft_ms=None, success=True, error_type=None, error_detail=None,
        redactions=(), cost_usd=None, cost_source="unpriced",
    )  # fmt: skip
    text = step_text(call)
    assert f"\n{messages}\n" in text
    assert "version not reported" in text and "cost               unknown (unpriced)" in text
