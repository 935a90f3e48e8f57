"""``agenttrail prices``: list the model prices costs are computed with; load your own."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agenttrail.cli._common import (
    fail,
    fmt_time,
    open_or_exit,
    render_table,
    store_failure,
    store_options,
)
from agenttrail.query import (
    PRICE_COLUMNS,
    Price,
    PriceFileError,
    list_prices,
    load_prices,
    read_price_file,
)
from agenttrail.store import StoreError


@click.group("prices")
def command() -> None:
    """Model prices (USD per million tokens) used to cost LLM calls without a reported cost.

    A call's cost is the cost_usd the agent reported; otherwise its tokens priced at the
    price in force on the call's day (UTC). Prices are applied when costs are read, so a
    loaded price changes every cost it covers at once, and no event is rewritten.

    \b
    Example:
      agenttrail prices list --data ./.agenttrail
      agenttrail prices load my-prices.csv --data ./.agenttrail
    """


@command.command("list")
@click.option("--model", default=None, help="Only this model.")
@click.option("--history", is_flag=True, help="Every row ever loaded, not only the ones in force.")
@store_options
def list_command(
    model: str | None, history: bool, data: Path | None, clickhouse: str | None, as_json: bool
) -> None:
    """List the prices in force: per model and effective date, the newest loaded row.

    Exit 0, 2 on a usage or connection error.

    \b
    Example:
      agenttrail prices list --data ./.agenttrail
      agenttrail prices list --model gpt-4.1 --history --json
    """
    store = open_or_exit(data, clickhouse, as_json)
    with store:
        try:
            prices = list_prices(store, model=model, history=history)
        except StoreError as exc:
            store_failure(as_json, exc)
    if as_json:
        click.echo(json.dumps({"status": "ok", "prices": [p.to_dict() for p in prices]}))
        return
    if not prices:
        click.echo("No prices" + (f" for model {model!r}." if model else "."))
        return
    click.echo(price_table(prices))


@command.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and show its rows; load nothing.")
@store_options
def load_command(
    file: Path, dry_run: bool, data: Path | None, clickhouse: str | None, as_json: bool
) -> None:
    """Append the prices in FILE; they win over every earlier row of the same model and date.

    FILE is a UTF-8 CSV with the header
    model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok
    (effective_from is a date, YYYY-MM-DD, UTC; an empty cached_usd_per_mtok means the
    model has no cached price and its cached tokens cost the input price). Every row is
    checked first; if any is invalid nothing is loaded. Exit 0, 2 on an invalid file or a
    connection error.

    \b
    Example:
      agenttrail prices load contract-prices.csv --data ./.agenttrail
    """
    try:
        prices = read_price_file(file)
    except PriceFileError as exc:
        fail(as_json, str(exc))
    loaded = 0
    if not dry_run:
        store = open_or_exit(data, clickhouse, as_json)
        with store:
            try:
                loaded = load_prices(store, prices)
            except StoreError as exc:
                store_failure(as_json, exc)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": "ok",
                    "file": str(file),
                    "loaded": loaded,
                    "dry_run": dry_run,
                    "prices": [p.to_dict() for p in prices],
                }
            )
        )
        return
    click.echo(price_table(prices))
    if dry_run:
        click.echo(f"\n{len(prices)} valid price row(s) in {file}; nothing loaded (--dry-run).")
    else:
        click.echo(f"\nLoaded {loaded} price row(s) from {file}; costs use them from now on.")


def price_table(prices: list[Price]) -> str:
    """The prices as a table, USD per million tokens."""
    headers = [*PRICE_COLUMNS, "source", "loaded at (UTC)"]
    return render_table(
        headers,
        [
            [
                p.model,
                p.effective_from.isoformat(),
                p.input_usd_per_mtok,
                p.output_usd_per_mtok,
                p.cached_usd_per_mtok,
                p.source,
                fmt_time(p.loaded_at),
            ]
            for p in prices
        ],
    )


__all__ = ["command"]
