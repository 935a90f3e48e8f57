"""The SDK's price table is read from the store's seed migrations, priced like the store."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agenttrail._contracts import queries_dir
from agenttrail.events import PriceTableError, load_price_table, parse_price_csv, shipped_prices


def test_every_seed_row_is_read() -> None:
    seed = (queries_dir() / "migrations" / "0005_model_prices_seed.sql").read_text()
    tuples = [line for line in seed.splitlines() if line.strip().startswith("('")]
    assert len(shipped_prices()) == len(tuples) == 13


def test_the_row_in_force_is_the_latest_on_or_before_the_day() -> None:
    table = shipped_prices()
    assert table.price_of("o3", date(2025, 4, 15)) is None  # before its first price
    assert table.price_of("o3", date(2025, 5, 1)).input_usd_per_mtok == 10.0  # type: ignore[union-attr]
    assert table.price_of("o3", date(2025, 6, 10)).input_usd_per_mtok == 2.0  # type: ignore[union-attr]
    assert table.price_of("no-such-model", date(2026, 1, 1)) is None


def test_cost_uses_the_store_formula() -> None:
    # gpt-4.1: 2.00 in, 8.00 out, 0.50 cached per million; 1,000 prompt tokens of which 400
    # cached, 500 out: (600 * 2 + 400 * 0.5 + 500 * 8) / 1e6.
    cost = shipped_prices().cost_usd("gpt-4.1", date(2026, 1, 1), 1000, 500, 400)
    assert cost == pytest.approx((600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6)


def test_a_users_file_overrides_the_shipped_rows(tmp_path: Path) -> None:
    f = tmp_path / "prices.csv"
    f.write_text(
        "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
        "gpt-4.1,2025-01-01,1.0,1.0,1.0\nin-house,2026-01-01,3,3,0\n"
    )
    table = load_price_table(f)
    assert table.price_of("gpt-4.1", date(2026, 1, 1)).output_usd_per_mtok == 1.0  # type: ignore[union-attr]
    assert table.price_of("in-house", date(2026, 2, 1)) is not None
    assert table.price_of("o3", date(2026, 1, 1)) is not None  # the rest still shipped


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("model,price\n", "header"),
        (
            "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
            "x,yesterday,1,1,1\n",
            "line 2",
        ),
        (
            "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
            "x,2026-01-01,-1,1,1\n",
            "finite price of 0 or more",
        ),
    ],
)
def test_a_bad_price_file_is_refused_with_the_line(text: str, words: str) -> None:
    with pytest.raises(PriceTableError, match=words):
        parse_price_csv(text, "p.csv")


def test_a_seed_migration_without_tuples_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "0099_model_prices_seed.sql").write_text("INSERT INTO model_prices SELECT 1;")
    with pytest.raises(PriceTableError, match="0099"):
        shipped_prices(tmp_path)


def test_a_file_prices_load_accepts_the_sdk_accepts_with_the_same_prices(tmp_path: Path) -> None:
    # One parser for both readers: an empty cached price (a model without cached-input
    # pricing) costs the input price in the SDK's spend limits as in the store.
    from agenttrail.query import parse_prices

    text = (
        "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
        "mistral-large,2026-03-01,2.00,6.00,\n"
    )
    f = tmp_path / "p.csv"
    f.write_text(text)
    (loaded,) = parse_prices(text, "p.csv")
    sdk = load_price_table(f).price_of("mistral-large", date(2026, 3, 2))
    assert sdk is not None and loaded.cached_usd_per_mtok == sdk.cached_usd_per_mtok == 2.0
    assert sdk.cost_usd(1_000_000, 0, 500_000) == 2.0  # 0.5 M uncached + 0.5 M cached at 2.0
