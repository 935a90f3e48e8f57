"""Limits that always bind: each trips at its bound and not before, spend is priced by the
SDK when the agent reports no cost, and the wall-clock watchdog stops a task that is
inside a long call."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agenttrail.producer import LimitExceeded, Limits, Recorder
from agenttrail.producer.testing import InMemoryExporter
from tests.deadline import wait_until


def _rec(tmp_path: Path, **kw: Any) -> tuple[Recorder, InMemoryExporter]:
    exporter = InMemoryExporter()
    return Recorder(exporter=exporter, spool_dir=tmp_path / "spool", **kw), exporter


def _guards(exporter: InMemoryExporter, kind: str) -> list[dict[str, Any]]:
    return [e for e in exporter.events() if e["event_type"] == "guard_event" and e["kind"] == kind]


def test_tokens_trip_exactly_at_the_bound(tmp_path: Path) -> None:
    rec, exporter = _rec(tmp_path)
    with pytest.raises(LimitExceeded), rec.task("t", limits=Limits(max_tokens=100)) as task:
        with task.llm_call(model="m", messages=[]) as call:
            call.respond("a", input_tokens=60, output_tokens=39)  # 99: under the bound
        with task.tool("still_allowed"):
            pass
        with task.llm_call(model="m", messages=[]) as call:
            call.respond("b", input_tokens=1, output_tokens=0)  # 100: at the bound
        with task.tool("refused"):
            pass
    rec.close()
    (limit,) = _guards(exporter, "limit_exceeded")
    assert (limit["limit_name"], limit["observed_value"]) == ("tokens", 100.0)
    assert [e["tool"] for e in exporter.events() if e["event_type"] == "tool_span"] == [
        "still_allowed"
    ]


def test_steps_allow_exactly_max_steps_calls(tmp_path: Path) -> None:
    rec, _ = _rec(tmp_path)
    calls = 0
    with pytest.raises(LimitExceeded), rec.task("t", limits=Limits(max_steps=3)) as task:
        for _ in range(10):
            with task.llm_call(model="m", messages=[]):
                calls += 1
    rec.close()
    assert calls == 3


def test_spend_binds_without_a_reported_cost_priced_from_the_shipped_table(tmp_path: Path) -> None:
    # gpt-4.1 output costs 8.00 USD per million tokens (migration 0005): 31,250 output
    # tokens are 0.25 USD exactly, so the second call reaches the 0.50 bound exactly.
    rec, exporter = _rec(tmp_path)
    with pytest.raises(LimitExceeded), rec.task("t", limits=Limits(max_spend_usd=0.5)) as task:
        with task.llm_call(model="gpt-4.1", messages=[]) as call:
            call.respond("a", output_tokens=31_250)
        assert task.spend_usd == 0.25
        with task.tool("allowed_at_quarter"):
            pass
        with task.llm_call(model="gpt-4.1", messages=[]) as call:
            call.respond("b", output_tokens=31_250)
        with task.tool("refused"):
            pass
    rec.close()
    (limit,) = _guards(exporter, "limit_exceeded")
    assert (limit["limit_name"], limit["observed_value"]) == ("spend", 0.5)
    calls = [e for e in exporter.events() if e["event_type"] == "llm_call"]
    assert [c["cost_usd"] for c in calls] == [None, None], "the event keeps what the agent said"


def test_a_users_price_file_overrides_the_shipped_price(tmp_path: Path) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
        "gpt-4.1,2025-01-01,0,16.0,0\n"  # same (model, day) as the shipped row: wins
    )
    rec, _ = _rec(tmp_path, price_file=prices)
    with rec.task("t") as task:
        with task.llm_call(model="gpt-4.1", messages=[]) as call:
            call.respond("a", output_tokens=31_250)
        assert task.spend_usd == 0.5
    rec.close()


def test_a_reported_cost_wins_over_the_price_table(tmp_path: Path) -> None:
    rec, _ = _rec(tmp_path)
    with rec.task("t") as task:
        with task.llm_call(model="gpt-4.1", messages=[]) as call:
            call.respond("a", output_tokens=31_250, cost_usd=0.125)
        assert task.spend_usd == 0.125
    rec.close()


@pytest.mark.parametrize("disabled", [False, True])
def test_wall_clock_stops_a_task_inside_a_long_tool_call(tmp_path: Path, disabled: bool) -> None:
    """The tool blocks until told to stop; only the watchdog can tell it."""
    told = threading.Event()
    kw: dict[str, Any] = {"enabled": False} if disabled else {}
    rec, exporter = _rec(tmp_path, **kw)
    limit = 0.3
    with pytest.raises(LimitExceeded):
        with rec.task(
            "t", limits=Limits(max_wall_clock_s=limit), on_stop=lambda t, e: told.set()
        ) as task:
            with task.tool("long_call"):
                assert told.wait(60), "the watchdog never stopped the task"
            with task.tool("after"):  # the next SDK call raises
                pass
    rec.close()
    if not disabled:
        (guard,) = _guards(exporter, "limit_exceeded")
        assert guard["limit_name"] == "wall_clock"
        assert guard["observed_value"] >= limit, "fired before the bound"
        states = [e["to_state"] for e in exporter.events() if e["event_type"] == "state_transition"]
        assert states == ["started", "limit_exceeded"]


def test_the_watchdog_leaves_a_task_that_ended_in_time_alone(tmp_path: Path) -> None:
    rec, exporter = _rec(tmp_path)
    with rec.task("t", limits=Limits(max_wall_clock_s=0.2)) as task:
        pass
    wait_until(lambda: task.safety.watchdog._heap == [], what="the deadline to pass")
    rec.close()
    assert _guards(exporter, "limit_exceeded") == []
