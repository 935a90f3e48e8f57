"""Typed values of named-query parameters: ``--param k=v`` text to the declared type."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from agenttrail.query._time import _TIME_HINT as TIME_HINT
from agenttrail.query._time import QueryError, parse_since

INT_TYPES = {f"{sign}Int{bits}": bits for bits in (8, 16, 32, 64) for sign in ("U", "")}
"""Integer types with their width."""


class UnsupportedType(ValueError):
    pass


def base_type(type_text: str) -> str:
    if type_text.startswith("Nullable(") and type_text.endswith(")"):
        return type_text[len("Nullable(") : -1]
    return type_text


def convert(base: str, text: str, now: datetime | None) -> Any:
    return converter(base)(text, now)


def converter(base: str) -> Callable[[str, datetime | None], Any]:
    """The converter of a (non-Nullable) type. Raises _UnsupportedType for others."""
    if base == "String":
        return lambda text, _now: text
    if base in INT_TYPES:
        return lambda text, _now: _to_int(base, text)
    if base in ("Float32", "Float64"):
        return lambda text, _now: _to_float(text)
    if base == "Bool":
        return lambda text, _now: _to_bool(text)
    if base == "Date":
        return lambda text, _now: _to_date(text)
    if base == "DateTime" or re.fullmatch(r"DateTime(64)?\(.*\)", base):
        return _to_time
    raise UnsupportedType(
        f"type {base} is not supported for parameters; use String, (U)Int8-64, Float32/64, "
        "Bool, Date, DateTime or DateTime64, optionally inside Nullable(...)"
    )


def _to_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("write a date as YYYY-MM-DD") from None


def _to_int(base: str, text: str) -> int:
    bits = INT_TYPES[base]
    if base.startswith("U"):
        low, high = 0, 2**bits - 1
    else:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"write a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{base} takes {low} to {high}")
    return value


def _to_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("write a number such as 3 or 0.8") from None
    if not math.isfinite(value):
        raise ValueError("write a finite number")
    return value


def _to_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("write true or false")


def _to_time(text: str, now: datetime | None) -> datetime:
    # The same ages and ISO times as every --since of the CLI.
    try:
        return parse_since(text, now)
    except QueryError:
        raise ValueError(f"write {TIME_HINT}") from None
