"""Costs from the price table: effective dates, reported costs win, recomputed on a load.

LLM calls are inserted into the real in-process engine exactly as the consumer inserts
them (Store.insert_columns with a deduplication token), on chosen days, so each call's
price is known independently: the test keeps its own copy of the prices it expects.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.query import get_run, list_prices, task_metrics
from agenttrail.store import Store

TENANT = "costs"
# Days relative to today: the raw tables expire rows 400 days after ts.
D = datetime.now(UTC).date() - timedelta(days=60)
# (model, effective_from) → USD per million (input, output, cached): the shipped rows the
# calls below need (migration 0005), as the test expects them.
SHIPPED = {
    ("gpt-4.1", date(2025, 1, 1)): (2.0, 8.0, 0.5),
    ("o3", date(2025, 4, 16)): (10.0, 40.0, 2.5),
    ("o3", date(2025, 6, 10)): (2.0, 8.0, 0.5),
}
LOADED = {
    ("gpt-4.1", D): (1.0, 4.0, 0.25),
    ("in-house-llm", D - timedelta(days=10)): (0.5, 1.0, 0.0),
}
TOKENS = (1_000_000, 100_000, 200_000)  # input (of which cached), output, cached
# task_id, seq, model, day, reported cost (None: priced from the table)
CALLS = [
    ("c-1", 1, "gpt-4.1", D - timedelta(days=3), None),
    ("c-1", 2, "gpt-4.1", D + timedelta(days=2), None),
    ("c-2", 1, "gpt-4.1", D + timedelta(days=2), 0.42),
    ("c-3", 1, "in-house-llm", D + timedelta(days=2), None),
    ("c-4", 1, "in-house-llm", D - timedelta(days=20), None),  # before its first price
    ("c-5", 1, "o3", D, None),
]
PRICE_FILE = (
    "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
    + "".join(f"{m},{d},{p[0]},{p[1]},{p[2]}\n" for (m, d), p in LOADED.items())
)


def expected_cost(model: str, day: date, reported: float | None, prices: dict[Any, Any]) -> Any:
    """(cost, source) of one call under ``prices``, computed here, not by the store."""
    if reported is not None:
        return reported, "agent"
    dates = [d for (m, d) in prices if m == model and d <= day]
    if not dates:
        return None, "unpriced"
    p_in, p_out, p_cached = prices[(model, max(dates))]
    tin, tout, cached = TOKENS
    return ((tin - cached) * p_in + cached * p_cached + tout * p_out) / 1e6, "price"


def insert_calls(store: Store) -> None:
    columns = ["tenant", "task_id", "task_type", "agent_name", "agent_version", "step", "seq",
               "ts", "model", "input_tokens", "output_tokens", "cached_tokens", "cost_usd",
               "latency_ms", "success", "event_type"]  # fmt: skip
    rows = [
        [TENANT, task_id, "costing", "coster", "1", seq, seq,
         datetime(day.year, day.month, day.day, 12, tzinfo=UTC), model, *TOKENS, cost,
         100.0 * seq, True, "llm_call"]
        for task_id, seq, model, day, cost in CALLS
    ]  # fmt: skip
    store.insert_columns(
        "llm_calls", columns, [list(c) for c in zip(*rows, strict=True)], dedup_token="costs:1"
    )


def stored_costs(store: Store) -> dict[tuple[str, int], tuple[float | None, str]]:
    rows = store.query(
        "SELECT task_id, seq, cost_usd, cost_source FROM llm_call_costs WHERE tenant = {t:String}",
        {"t": TENANT},
    )
    return {(str(r[0]), int(r[1])): (r[2], str(r[3])) for r in rows}


def fingerprint(store: Store) -> list[tuple[Any, ...]]:
    """Row counts and content hashes of the raw calls and the derived usage tables."""
    return [
        store.query(
            "SELECT count(), groupBitXor(cityHash64(event_id, task_id, seq, ts, model, "
            "input_tokens, output_tokens, cached_tokens, cost_usd)) FROM llm_calls"
        )[0],
        store.query("SELECT count(), groupBitXor(cityHash64(*)) FROM llm_usage_by_task")[0],
        store.query(
            "SELECT count(), sum(reported_cost_usd), sum(unreported_uncached_input_tokens), "
            "sum(unreported_output_tokens) FROM llm_metrics_hourly"
        )[0],
    ]


def assert_costs(store: Store, prices: dict[Any, Any]) -> None:
    want = {(t, s): expected_cost(m, d, c, prices) for t, s, m, d, c in CALLS}
    got = stored_costs(store)
    assert sorted(got) == sorted(want)
    for key, (cost, source) in want.items():
        assert got[key][1] == source, key
        assert got[key][0] == (None if cost is None else pytest.approx(cost)), key
    for task_id in {c[0] for c in CALLS}:
        calls = [want[k] for k in want if k[0] == task_id]
        [run] = get_run(store, task_id)
        assert run.cost_usd == pytest.approx(sum(c for c, _ in calls if c is not None))
        assert run.unpriced_calls == sum(1 for c, _ in calls if c is None)
    by_model = {r.group["model"]: r for r in task_metrics(store, "model", tenant=TENANT)}
    for model in {c[2] for c in CALLS}:
        calls = [want[(t, s)] for t, s, m, _, _ in CALLS if m == model]
        assert by_model[model].cost_usd == pytest.approx(sum(c for c, _ in calls if c))
        assert by_model[model].unpriced_calls == sum(1 for c, _ in calls if c is None)


def prices_cli(store_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["prices", *args, "--data", str(store_dir)])


def test_each_call_is_priced_at_its_day_and_reported_costs_win(store: Store) -> None:
    insert_calls(store)
    assert_costs(store, SHIPPED)


def test_loading_prices_recomputes_costs_without_touching_any_row(
    store: Store, store_dir: Path, tmp_path: Path
) -> None:
    insert_calls(store)
    before = fingerprint(store)
    file = tmp_path / "contract.csv"
    file.write_text(PRICE_FILE)
    done = prices_cli(store_dir, "load", str(file))
    assert done.exit_code == 0, done.output
    assert f"Loaded {len(LOADED)} price row(s)" in done.stdout
    assert_costs(store, SHIPPED | LOADED)
    assert fingerprint(store) == before
    # A newer row for the same model and date wins; the older one stays in the history.
    file.write_text(PRICE_FILE.splitlines()[0] + f"\ngpt-4.1,{D},3,6,1\n")
    assert prices_cli(store_dir, "load", str(file)).exit_code == 0
    assert_costs(store, SHIPPED | LOADED | {("gpt-4.1", D): (3.0, 6.0, 1.0)})
    history = json.loads(
        prices_cli(store_dir, "list", "--model", "gpt-4.1", "--history", "--json").stdout
    )
    assert [(p["effective_from"], p["input_usd_per_mtok"]) for p in history["prices"]] == [
        ("2025-01-01", 2.0),
        (D.isoformat(), 3.0),
        (D.isoformat(), 1.0),
    ]
    current = list_prices(store, model="gpt-4.1")
    assert [(p.effective_from, p.input_usd_per_mtok) for p in current] == [
        (date(2025, 1, 1), 2.0),
        (D, 3.0),
    ]
    assert fingerprint(store) == before


def test_an_invalid_price_file_loads_nothing_and_says_which_lines(
    store: Store, store_dir: Path, tmp_path: Path
) -> None:
    rows_before = store.query("SELECT count() FROM model_prices")[0][0]
    file = tmp_path / "bad.csv"
    file.write_text(
        PRICE_FILE.splitlines()[0] + "\n"
        "gpt-4.1,2026-03-01,1,4,0.25\n"
        "gpt-4.1,2026-13-01,1,4,0.25\n"
        ",2026-03-01,1,4,0.25\n"
        "o3,2026-03-01,-1,4,0.25\n"
        "o3,2026-03-02,1,four,0.25\n"
    )
    done = prices_cli(store_dir, "load", str(file))
    assert done.exit_code == 2
    for fragment in (
        "4 invalid row(s)",
        "line 3: effective_from '2026-13-01'",
        "line 4: the model",
        "line 5: input_usd_per_mtok '-1'",
        "line 6: output_usd_per_mtok 'four'",
    ):
        assert fragment in done.stderr, done.stderr
    assert prices_cli(store_dir, "load", str(file), "--dry-run").exit_code == 2
    good = tmp_path / "good.csv"
    good.write_text(PRICE_FILE)
    dry = prices_cli(store_dir, "load", str(good), "--dry-run", "--json")
    assert json.loads(dry.stdout)["loaded"] == 0
    assert store.query("SELECT count() FROM model_prices")[0][0] == rows_before
