"""Expand a dashboard query as Grafana and grafana-clickhouse-datasource would, so that the
tests can run every panel's SQL on the in-process engine.

The order and the semantics follow the plugin (src/data/CHDatasource.ts and
pkg/macros/macros.go of grafana/clickhouse-datasource, and its docs/sources/query-editor.md):

1. ``$__conditionalAll(condition, $var)`` (front end, innermost last first): ``1=1`` when
   the variable's current value is ``$__all`` or empty, else the condition;
2. Grafana's template variables: ``${var:singlequote}`` quotes each value with ``'`` and
   escapes ``'`` as ``\\'``, joined by ``,``; ``${var}`` / ``$var`` insert the value(s)
   joined by ``,``; "All" without an ``allValue`` means every option;
3. the back-end macros, with the time range in whole seconds (``toDateTime(<unix>)``) or
   milliseconds (``fromUnixTimestamp64Milli(<ms>)``), the interval floored to at least
   1 second: ``$__timeFilter(c)`` → ``c >= toDateTime(from) AND c <= toDateTime(to)``,
   ``$__timeInterval(c)`` → ``toStartOfInterval(toDateTime(c), INTERVAL n second)``,
   ``$__interval_s``, ``$__fromTime``, ``$__toTime`` and their ``_ms`` forms,
   ``$__dateFilter``, ``$__timeFrom``, ``$__timeTo``.

Anything of the form ``$name`` left after that is an undefined variable: an error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime

ALL = "$__all"


class MacroError(ValueError):
    """The query uses a macro wrongly or a variable that is not defined."""


@dataclass
class Variable:
    """A template variable's current selection and its options."""

    current: list[str]
    options: list[str] = field(default_factory=list)

    @property
    def values(self) -> list[str]:
        return self.options if self.current == [ALL] else self.current


def _args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Split the arguments of the call whose ``(`` is at ``open_paren``; return them and
    the index after the closing ``)``. Commas inside parentheses or quotes do not split."""
    depth, quote, start, args = 0, "", open_paren + 1, []
    i = open_paren
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return [a.strip() for a in args], i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
        i += 1
    raise MacroError(f"Unclosed macro call at {sql[open_paren - 20 : open_paren + 20]!r}")


def conditional_all(sql: str, variables: dict[str, Variable]) -> str:
    macro = "$__conditionalAll("
    index = sql.rfind(macro)
    while index != -1:
        args, end = _args(sql, index + len(macro) - 1)
        if len(args) != 2:
            raise MacroError(f"$__conditionalAll takes 2 arguments, got {len(args)}")
        found = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", args[1])
        phrase = args[0]
        if found:
            var = variables.get(found.group(0))
            if var is None:
                raise MacroError(f"$__conditionalAll names undefined variable {found.group(0)}")
            if var.current in ([ALL], [""], []):
                phrase = "1=1"
        sql = sql[:index] + phrase + sql[end:]
        index = sql.rfind(macro)
    return sql


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def template_variables(sql: str, variables: dict[str, Variable]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        if name.startswith("__"):
            return match.group(0)  # a macro, expanded later
        var = variables.get(name)
        if var is None:
            raise MacroError(f"Variable ${name} is used but not defined")
        fmt = match.group("fmt")
        if fmt == "singlequote":
            return ",".join(_quote(v) for v in var.values)
        if fmt in (None, "raw"):
            return ",".join(var.values)
        raise MacroError(f"Format {fmt!r} of ${name} is not handled by this helper")

    pattern = r"\$\{(?P<braced>\w+)(?::(?P<fmt>\w+))?\}|\$(?P<plain>\w+)"
    return re.sub(pattern, replace, sql)


def backend_macros(sql: str, time_from: datetime, time_to: datetime, interval_s: float) -> str:
    seconds = int(max(interval_s, 1))
    millis = int(max(interval_s * 1000, 1))
    f_s, t_s = int(time_from.timestamp()), int(time_to.timestamp())
    f_ms, t_ms = math.floor(time_from.timestamp() * 1000), math.floor(time_to.timestamp() * 1000)
    functions = {
        "timeFilter": lambda c: f"{c} >= toDateTime({f_s}) AND {c} <= toDateTime({t_s})",
        "timeFilter_ms": lambda c: (
            f"{c} >= fromUnixTimestamp64Milli({f_ms}) AND {c} <= fromUnixTimestamp64Milli({t_ms})"
        ),
        "dateFilter": lambda c: (
            f"{c} >= toDate('{time_from:%Y-%m-%d}') AND {c} <= toDate('{time_to:%Y-%m-%d}')"
        ),
        "timeFrom": lambda c: f"{c} >= toDateTime({f_s})",
        "timeTo": lambda c: f"{c} <= toDateTime({t_s})",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {seconds} second)",
        "timeInterval_ms": lambda c: (
            f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {millis} millisecond)"
        ),
    }
    values = {
        "interval_s": str(seconds),
        "fromTime": f"toDateTime({f_s})",
        "toTime": f"toDateTime({t_s})",
        "fromTime_ms": f"fromUnixTimestamp64Milli({f_ms})",
        "toTime_ms": f"fromUnixTimestamp64Milli({t_ms})",
    }
    out: list[str] = []
    i = 0
    for match in re.finditer(r"\$__(\w+)", sql):
        if match.start() < i:
            continue
        name = match.group(1)
        out.append(sql[i : match.start()])
        if name in functions:
            if match.end() >= len(sql) or sql[match.end()] != "(":
                raise MacroError(f"$__{name} needs one argument in parentheses")
            args, end = _args(sql, match.end())
            if len(args) != 1:
                raise MacroError(f"$__{name} takes 1 argument, got {len(args)}")
            out.append(functions[name](args[0]))
            i = end
        elif name in values:
            out.append(values[name])
            i = match.end()
        else:
            raise MacroError(f"Unknown macro $__{name}")
    out.append(sql[i:])
    return "".join(out)


def expand(
    sql: str,
    *,
    time_from: datetime,
    time_to: datetime,
    interval_s: float,
    variables: dict[str, Variable] | None = None,
) -> str:
    """The SQL the plugin sends to ClickHouse for this query, time range and selection."""
    variables = variables or {}
    sql = conditional_all(sql, variables)
    sql = template_variables(sql, variables)
    sql = backend_macros(sql, time_from, time_to, interval_s)
    leftover = re.search(r"\$\{?\w+", sql)
    if leftover:
        raise MacroError(f"{leftover.group(0)} is left unexpanded")
    return sql
