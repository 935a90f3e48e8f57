"""Model prices: list the price table, load a user's prices from a CSV file.

The table ``model_prices`` is append-only (migration 0004). A load appends rows; for
one (model, effective_from) the newest ``loaded_at`` wins, and a call on day D is
priced by the winning row with the greatest ``effective_from`` <= D. Costs are priced
when read, so a load changes every cost it applies to at the next query, and no
event is rewritten.

File format (UTF-8 CSV with this header; one row per model and date; USD per million
tokens)::

    model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok
    gpt-4.1,2026-03-01,1.80,7.20,0.45
    mistral-large,2026-03-01,2.00,6.00,

An empty ``cached_usd_per_mtok`` means the model has no cached-input price: its cached
tokens cost the input price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from agenttrail.events import PRICE_CSV_HEADER, PriceTableError, parse_price_rows
from agenttrail.query._time import QueryError
from agenttrail.store import Store

PRICE_COLUMNS: tuple[str, ...] = PRICE_CSV_HEADER
"""The header of a price file, in order."""


class PriceFileError(QueryError):
    """A price file cannot be read or has invalid rows; nothing of it was loaded."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens of ``model`` from ``effective_from`` (UTC day) on.

    ``source`` is ``shipped:<migration>`` or the loaded file's name; ``loaded_at`` is
    when the row was appended (None for rows not yet loaded).
    """

    model: str
    effective_from: date
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cached_usd_per_mtok: float
    source: str = ""
    loaded_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO 8601)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["effective_from"] = self.effective_from.isoformat()
        out["loaded_at"] = self.loaded_at.isoformat() if self.loaded_at else None
        return out


def list_prices(store: Store, model: str | None = None, history: bool = False) -> list[Price]:
    """The prices in force (the winner of each model and date), or every row appended.

    Args:
        model: only this model.
        history: every appended row, newest load first within a (model, date).

    Raises:
        StoreUnavailable: the store failed the query (e.g. not migrated).
    """
    table = "model_prices" if history else "model_prices_current"
    sql = (
        "SELECT model, effective_from, input_usd_per_mtok, output_usd_per_mtok, "
        f"cached_usd_per_mtok, source, loaded_at FROM {store.database}.{table}"
    )
    params: dict[str, Any] = {}
    if model is not None:
        sql += " WHERE model = {model:String}"
        params["model"] = model
    sql += " ORDER BY model, effective_from, loaded_at DESC"
    return [
        Price(
            model=str(r[0]),
            effective_from=r[1],
            input_usd_per_mtok=float(r[2]),
            output_usd_per_mtok=float(r[3]),
            cached_usd_per_mtok=float(r[4]),
            source=str(r[5]),
            loaded_at=r[6].replace(tzinfo=UTC) if r[6].tzinfo is None else r[6],
        )
        for r in store.query(sql, params)
    ]


def read_price_file(path: Path) -> list[Price]:
    """Parse and check a price file; returns its rows with ``source`` set to the file name.

    Every row is checked before any is returned, and all problems are reported at once.

    Raises:
        PriceFileError: the file cannot be read, its header is not :data:`PRICE_COLUMNS`,
            or rows are invalid (the message names each line and what to fix).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(f"Cannot read price file {path}: {exc}") from None
    return parse_prices(text, source=path.name, name=str(path))


def parse_prices(text: str, source: str, name: str = "<prices>") -> list[Price]:
    """Parse price CSV ``text`` (see the module docstring); ``name`` is used in errors.

    The SDK's parser (:func:`agenttrail.events.parse_price_rows`): a file loaded here is
    one an agent's ``AGENTTRAIL_PRICE_FILE`` accepts, and the other way round.

    Raises:
        PriceFileError: as :func:`read_price_file`.
    """
    try:
        rows = parse_price_rows(text, name)
    except PriceTableError as exc:
        raise PriceFileError(f"{exc} Nothing was loaded.") from None
    if not rows:
        raise PriceFileError(f"{name} has a header but no price rows; nothing to load.")
    return [
        Price(
            r.model,
            r.effective_from,
            r.input_usd_per_mtok,
            r.output_usd_per_mtok,
            r.cached_usd_per_mtok,
            source=source,
        )
        for r in rows
    ]


def load_prices(store: Store, prices: list[Price]) -> int:
    """Append ``prices`` to ``model_prices`` in one insert; returns the rows appended.

    They win over every earlier row of the same (model, effective_from). Loading the
    same file again appends it again, harmlessly (equal prices win). Blocks until
    stored; on failure nothing was appended.

    Raises:
        StoreUnavailable: the store refused the insert (e.g. not migrated).
    """
    if not prices:
        return 0
    # loaded_at is left to the store's clock (DEFAULT now64), the clock the shipped rows
    # were stamped with, so "newer wins" never depends on this machine's clock.
    columns = [*PRICE_COLUMNS, "source"]
    store.insert_columns(
        "model_prices",
        columns,
        [
            [p.model for p in prices],
            [p.effective_from for p in prices],
            [p.input_usd_per_mtok for p in prices],
            [p.output_usd_per_mtok for p in prices],
            [p.cached_usd_per_mtok for p in prices],
            [p.source for p in prices],
        ],
    )
    return len(prices)
