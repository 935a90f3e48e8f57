"""One price source: the SDK's shipped table equals what the migrated store holds."""

from __future__ import annotations

from agenttrail.events import shipped_prices
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
