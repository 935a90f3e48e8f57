"""The model price table shared by the SDK (spend limits) and the store (cost columns).

One source: the shipped prices are the rows of the store's seed migrations
(``queries/migrations/NNNN_model_prices_seed*.sql``, applied by ``agenttrail migrate``),
read here by the SDK from the same files shipped in the package, so the price an agent
is stopped at and the price the dashboards show cannot drift apart. A newer shipped
list is a new numbered seed migration; for one (model, effective_from) the later file
wins, as the newer ``loaded_at`` wins in the store.

A user's own prices override the shipped ones: the same CSV format as
``agenttrail prices load FILE`` (header
``model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok``).

The cost of one call is the store's formula (migration 0004)::

    (max(input - cached, 0) * input_price + cached * cached_price + output * output_price) / 1e6

priced with the row of the greatest ``effective_from`` on or before the call's UTC day.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from agenttrail._contracts import queries_dir

PRICE_CSV_HEADER: tuple[str, ...] = (
    "model",
    "effective_from",
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cached_usd_per_mtok",
)

_SEED_GLOB = "*_model_prices_seed*.sql"
_NUM = r"(\d+(?:\.\d+)?)"
_ROW = re.compile(
    rf"\(\s*'([^']+)'\s*,\s*'(\d{{4}}-\d{{2}}-\d{{2}})'\s*,\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*\)"
)


class PriceTableError(ValueError):
    """A price file or seed migration cannot be read; the message names it and the line."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens of ``model`` from ``effective_from`` (UTC day) on."""

    model: str
    effective_from: date
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cached_usd_per_mtok: float

    def cost_usd(self, input_tokens: int, output_tokens: int, cached_tokens: int) -> float:
        """The store's cost formula (see the module docstring)."""
        return (
            max(input_tokens - cached_tokens, 0) * self.input_usd_per_mtok
            + cached_tokens * self.cached_usd_per_mtok
            + output_tokens * self.output_usd_per_mtok
        ) / 1e6


class PriceTable:
    """Prices by model and day. Immutable after construction; thread-safe to read."""

    def __init__(self, prices: Iterable[ModelPrice] = ()):
        by_key: dict[tuple[str, date], ModelPrice] = {}
        for p in prices:
            by_key[(p.model, p.effective_from)] = p  # later rows win
        self._by_model: dict[str, list[ModelPrice]] = {}
        for p in sorted(by_key.values(), key=lambda p: (p.model, p.effective_from)):
            self._by_model.setdefault(p.model, []).append(p)
        self._days = {m: [p.effective_from for p in ps] for m, ps in self._by_model.items()}

    def __len__(self) -> int:
        return sum(len(ps) for ps in self._by_model.values())

    def rows(self) -> list[ModelPrice]:
        """Every row, by model and date."""
        return [p for ps in self._by_model.values() for p in ps]

    def price_of(self, model: str, day: date) -> ModelPrice | None:
        """The row in force for ``model`` on ``day``, or None (an unpriced model or day)."""
        days = self._days.get(model)
        if not days:
            return None
        i = bisect.bisect_right(days, day) - 1
        return self._by_model[model][i] if i >= 0 else None

    def cost_usd(
        self, model: str, day: date, input_tokens: int, output_tokens: int, cached_tokens: int = 0
    ) -> float | None:
        """The cost of one call, or None when the model is unpriced on that day."""
        price = self.price_of(model, day)
        if price is None:
            return None
        return price.cost_usd(input_tokens, output_tokens, cached_tokens)

    def overridden_by(self, other: PriceTable) -> PriceTable:
        """A table with ``other``'s rows winning over this one's for the same (model, day)."""
        return PriceTable([*self.rows(), *other.rows()])


def parse_seed_migration(text: str, name: str) -> list[ModelPrice]:
    """The rows of a price seed migration (its ``values(...)`` tuples).

    Raises:
        PriceTableError: the file holds no price tuple (its format changed).
    """
    rows = [
        ModelPrice(m, date.fromisoformat(d), float(i), float(o), float(c))
        for m, d, i, o, c in _ROW.findall(text)
    ]
    if not rows:
        raise PriceTableError(
            f"{name} holds no (model, 'YYYY-MM-DD', input, output, cached) rows; a seed "
            "migration must list its prices as such tuples for the SDK to read them."
        )
    return rows


def shipped_prices(migrations: Path | None = None) -> PriceTable:
    """The shipped price table: every seed migration's rows, later files winning.

    Raises:
        PriceTableError: no seed migration was found, or one is unreadable.
    """
    folder = migrations if migrations is not None else queries_dir() / "migrations"
    files = sorted(folder.glob(_SEED_GLOB))
    if not files:
        raise PriceTableError(
            f"No price seed migration ({_SEED_GLOB}) in {folder}; reinstall agenttrail or "
            "set AGENTTRAIL_CONTRACTS_DIR to a checkout of the repository."
        )
    rows: list[ModelPrice] = []
    for f in files:
        rows.extend(parse_seed_migration(f.read_text(encoding="utf-8"), f.name))
    return PriceTable(rows)


def parse_price_rows(text: str, name: str = "<prices>") -> list[ModelPrice]:
    """The rows of a price file in the ``agenttrail prices load`` format, all checked.

    The one parser of that format: the SDK's price override and ``agenttrail prices
    load`` both read files through it, so a file one accepts the other accepts. An empty
    ``cached_usd_per_mtok`` means the model has no cached-input price: its cached tokens
    cost the input price. Blank lines are skipped. Every row is checked before any is
    returned, and all problems are reported at once.

    Raises:
        PriceTableError: wrong header, or invalid or repeated rows (each named by line,
            with what to fix).
    """
    reader = csv.reader(io.StringIO(text))
    header = tuple(h.strip() for h in next(reader, []))
    if header != PRICE_CSV_HEADER:
        raise PriceTableError(
            f"{name}: the first line must be the header {','.join(PRICE_CSV_HEADER)}; "
            f"found {','.join(header) or '(nothing)'}."
        )
    rows: list[ModelPrice] = []
    problems: list[str] = []
    seen: dict[tuple[str, date], int] = {}
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        line = reader.line_num
        try:
            price = _row_of(cells)
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        key = (price.model, price.effective_from)
        if key in seen:
            problems.append(
                f"line {line}: {price.model} from {price.effective_from} is also on line "
                f"{seen[key]}; keep one"
            )
            continue
        seen[key] = line
        rows.append(price)
    if problems:
        more = f"; … {len(problems) - 10} more" if len(problems) > 10 else ""
        raise PriceTableError(
            f"{name} has {len(problems)} invalid row(s): {'; '.join(problems[:10])}{more}."
        )
    return rows


def _row_of(cells: list[str]) -> ModelPrice:
    if len(cells) != len(PRICE_CSV_HEADER):
        raise ValueError(f"expected {len(PRICE_CSV_HEADER)} values, found {len(cells)}")
    model, day, *amounts = (c.strip() for c in cells)
    if not model:
        raise ValueError("the model is empty")
    try:
        effective_from = date.fromisoformat(day)
    except ValueError:
        raise ValueError(f"effective_from {day!r} is not a date like 2026-03-01") from None
    values: list[float] = []
    for column, amount in zip(PRICE_CSV_HEADER[2:], amounts, strict=True):
        if column == "cached_usd_per_mtok" and amount == "":
            values.append(values[0])  # no cached-input price: cached tokens cost input
            continue
        try:
            value = float(amount)
        except ValueError:
            raise ValueError(f"{column} {amount!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{column} {amount!r} must be a finite price of 0 or more")
        values.append(value)
    return ModelPrice(model, effective_from, values[0], values[1], values[2])


def parse_price_csv(text: str, name: str = "<prices>") -> PriceTable:
    """A user's price file (:func:`parse_price_rows`) as a table.

    Raises:
        PriceTableError: as :func:`parse_price_rows`.
    """
    return PriceTable(parse_price_rows(text, name))


def load_price_table(override: Path | None = None) -> PriceTable:
    """The shipped table, with the rows of the user's price file ``override`` winning.

    Raises:
        PriceTableError: a file cannot be read or parsed.
    """
    table = shipped_prices()
    if override is None:
        return table
    try:
        text = override.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceTableError(f"Cannot read price file {override}: {exc}") from None
    return table.overridden_by(parse_price_csv(text, str(override)))
