"""One price source: the SDK's shipped table equals what the migrated store holds."""

from __future__ import annotations

import math
from datetime import date

from agenttrail.events import shipped_prices
from agenttrail.events._prices import ModelPrice
from agenttrail.query._prices import list_prices
from agenttrail.store import Store


def test_sdk_table_equals_the_store_seed(store: Store) -> None:
    stored = {
        (
            p.model,
            p.effective_from,
            p.input_usd_per_mtok,
            p.output_usd_per_mtok,
            p.cached_usd_per_mtok,
        )
        for p in list_prices(store)
        if p.source.startswith("shipped:")
    }
    sdk = {
        (
            p.model,
            p.effective_from,
            p.input_usd_per_mtok,
            p.output_usd_per_mtok,
            p.cached_usd_per_mtok,
        )
        for p in shipped_prices().rows()
    }
    assert sdk == stored and len(sdk) == 13


def test_sdk_cost_formula_equals_the_store_function(store: Store) -> None:
    """The SDK's Python copy of the cost formula (spend limits) and the store's SQL
    function agree on every case, cached tokens above the prompt included."""
    price = ModelPrice("m", date(2026, 1, 1), 2.5, 10.0, 1.25)
    cases = [(0, 0, 0), (1840, 512, 0), (1840, 512, 1000), (10, 5, 40), (10**9, 10**8, 3)]
    for input_tokens, output_tokens, cached in cases:
        rows = store.query(
            "SELECT agenttrail_priced_cost(greatest({i:Int64} - {c:Int64}, 0), {c:Int64}, "
            "{o:Int64}, 2.5, 1.25, 10.0)",
            {"i": input_tokens, "o": output_tokens, "c": cached},
        )
        assert math.isclose(
            float(rows[0][0]), price.cost_usd(input_tokens, output_tokens, cached), rel_tol=1e-12
        ), (input_tokens, output_tokens, cached)
