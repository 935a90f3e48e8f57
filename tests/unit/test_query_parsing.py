"""Pure parts of the read commands: --since and durations, windows, price files."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from agenttrail.query import (
    PriceFileError,
    QueryError,
    StepWindows,
    parse_duration,
    parse_prices,
    parse_since,
)
from agenttrail.query._replay import _ranges

NOW = datetime(2026, 1, 15, 10, 22, 44, tzinfo=UTC)
HEADER = "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        (" 7d ", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_durations_are_a_number_and_one_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "0h", "-1d", "24 hours", "1y", "1h30m"])
def test_other_durations_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(QueryError, match=re.escape("e.g. 30m, 24h, 7d")):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-01-10", datetime(2026, 1, 10, tzinfo=UTC)),
        ("2026-01-10T08:00:00", datetime(2026, 1, 10, 8, tzinfo=UTC)),
        ("2026-01-10T08:00:00Z", datetime(2026, 1, 10, 8, tzinfo=UTC)),
        ("2026-01-10T10:00:00+02:00", datetime(2026, 1, 10, 8, tzinfo=UTC)),
        ("2026-01-10 08:00", datetime(2026, 1, 10, 8, tzinfo=UTC)),
    ],
)
def test_since_takes_a_duration_before_now_or_an_instant_in_utc(
    text: str, expected: datetime
) -> None:
    got = parse_since(text, now=NOW)
    assert got == expected
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "10:00", "2026/01/10"])
def test_since_refuses_what_it_cannot_read_and_says_what_to_write(text: str) -> None:
    with pytest.raises(QueryError, match="ISO date/time"):
        parse_since(text, now=NOW)


def test_step_windows_are_whole_hours_ending_after_the_hour_of_until() -> None:
    until = datetime(2026, 1, 10, 12, 30, tzinfo=timezone(timedelta(hours=1)))  # 11:30 UTC
    w = StepWindows.ending_at(until, timedelta(hours=6))
    assert w.end == datetime(2026, 1, 10, 12, tzinfo=UTC)
    assert w.latest_start == datetime(2026, 1, 10, 6, tzinfo=UTC)
    assert w.previous_start == datetime(2026, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("window", [timedelta(minutes=30), timedelta(minutes=90)])
def test_step_windows_refuse_part_hours(window: timedelta) -> None:
    with pytest.raises(QueryError, match="whole number of hours"):
        StepWindows.ending_at(NOW, window)


def test_a_price_file_gives_its_rows_with_the_source() -> None:
    prices = parse_prices(
        HEADER + "gpt-4.1, 2026-03-01 ,1.8,7.2,0.45\n\no3,2026-01-01,2,8,0\n", "f"
    )
    assert [(p.model, p.effective_from, p.input_usd_per_mtok, p.output_usd_per_mtok,
             p.cached_usd_per_mtok, p.source) for p in prices] == [
        ("gpt-4.1", date(2026, 3, 1), 1.8, 7.2, 0.45, "f"),
        ("o3", date(2026, 1, 1), 2.0, 8.0, 0.0, "f"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model,price\nx,1\n", "the first line must be the header"),
        ("", "found (nothing)"),
        (HEADER, "no price rows"),
        (HEADER + "a,2026-01-01,1,2\n", "line 2: expected 5 values, found 4"),
        (HEADER + "a,2026-01-01,nan,2,3\n", "line 2: input_usd_per_mtok 'nan' must be"),
        (HEADER + "a,2026-01-01,1,inf,3\n", "line 2: output_usd_per_mtok 'inf' must be"),
        (HEADER + "a,01/02/2026,1,2,3\n", "line 2: effective_from '01/02/2026' is not a date"),
        (HEADER + "a,2026-01-01,1,2,3\na,2026-01-01,1,2,4\n", "line 3: a from 2026-01-01"),
    ],
)
def test_a_bad_price_file_is_refused_whole_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(PriceFileError, match=r"(?i)nothing") as caught:
        parse_prices(text, "f", name="prices.csv")
    assert message in str(caught.value)
    assert str(caught.value).startswith("prices.csv")


def test_many_bad_rows_are_summarised() -> None:
    text = HEADER + "".join(f"m{i},2026-01-01,x,1,1\n" for i in range(12))
    with pytest.raises(PriceFileError) as caught:
        parse_prices(text, "f")
    assert "12 invalid row(s)" in str(caught.value) and "… 2 more" in str(caught.value)


@pytest.mark.parametrize(
    ("steps", "text"),
    [([1], "1"), ([1, 2, 3], "1-3"), ([1, 2, 3, 5, 7, 8], "1-3, 5, 7-8"), ([0, 4], "0, 4")],
)
def test_step_lists_read_as_ranges(steps: list[int], text: str) -> None:
    assert _ranges(steps) == text
