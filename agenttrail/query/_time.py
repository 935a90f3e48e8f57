"""Time windows of the read commands: ``--since`` values and durations (30m, 24h, 7d)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_TIME_HINT = "a duration (30m, 24h, 7d, 2w) or an ISO date/time (2026-01-15, 2026-01-15T10:00Z)"


class QueryError(Exception):
    """A read of the record could not be answered as asked (bad argument, nothing found)."""


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``15m``, ``24h``, ``7d`` or ``2w`` (a number and one unit).

    Raises:
        QueryError: the text is not a positive number followed by s, m, h, d or w.
    """
    match = _DURATION_RE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise QueryError(
            f"{text!r} is not a duration; write a positive number and a unit, e.g. 30m, "
            "24h, 7d or 2w."
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The start of a time window: ``24h`` means 24 hours before ``now``; an ISO date or
    time means that instant (UTC unless it names an offset).

    Args:
        text: the value of ``--since``.
        now: the reference time for durations (default: the current time).

    Returns:
        An aware UTC datetime.

    Raises:
        QueryError: the text is neither a duration nor an ISO date/time.
    """
    if _DURATION_RE.match(text):
        return (now or datetime.now(UTC)) - parse_duration(text)
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise QueryError(f"{text!r} is not {_TIME_HINT}.") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
