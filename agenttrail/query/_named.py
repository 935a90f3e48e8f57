"""Named forensic queries: SQL files in ``queries/forensics`` with a documented header.

A file ``queries/forensics/<name>.sql`` starts with a block of ``--`` comment lines in
which every line is a directive, the continuation of one, or a bare ``--``::

    -- purpose: One line: what the query finds.
    -- why: Which failure of the field note it finds and why that matters; a directive's
    --   text continues on lines that start with ``--`` and at least two spaces.
    -- param: min_repeats UInt32 = 3 -- what the parameter means
    -- param: tenant Nullable(String) = NULL -- a Nullable parameter may default to NULL
    -- param: task_id String -- no default: the caller must give it
    -- column: task_id String -- what each output column holds, in output order

The SQL after the header uses ``{name:Type}`` placeholders, bound by the driver (never
formatted into the text). Parsing checks that every placeholder is a declared
parameter of the same type and that every declared parameter is used, so the header
cannot drift from the SQL.

Values arrive as text, as typed after ``--param name=``; each is converted to its
declared type or refused with a :class:`QueryParamError` that says what to write.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agenttrail._contracts import queries_dir
from agenttrail.query._param_values import UnsupportedType, base_type, convert, converter
from agenttrail.store import Store

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_DIRECTIVE_RE = re.compile(r"^--\s?([a-z]+):\s*(.*)$")
_CONTINUATION_RE = re.compile(r"^--\s{2,}(\S.*)$")
_PLACEHOLDER_RE = re.compile(r"\{(\w+):([^{}]+)\}")
_DIRECTIVES = ("purpose", "why", "param", "column")


class NamedQueryError(Exception):
    """Base class of the errors of named queries."""


class QueryDefinitionError(NamedQueryError):
    """A query file is malformed: its header or its placeholders are wrong."""


class QueryParamError(NamedQueryError):
    """A parameter value was unknown, missing or not valid for its declared type."""


class UnknownQueryError(NamedQueryError):
    """No query file has the requested name."""


@dataclass(frozen=True)
class QueryParam:
    """One declared parameter.

    Attributes:
        name: the placeholder name.
        type: the ClickHouse type as written, e.g. ``Nullable(String)``.
        meaning: what it does.
        default_text: the default as written in the header; ``None`` when required.
        default: the default converted to the type (``None`` for ``NULL`` or required).
    """

    name: str
    type: str
    meaning: str
    default_text: str | None = None
    default: Any = None

    @property
    def required(self) -> bool:
        """Whether a value must be given (the header has no default)."""
        return self.default_text is None

    @property
    def nullable(self) -> bool:
        return self.type.startswith("Nullable(")

    def convert(self, text: str, now: datetime | None = None) -> Any:
        """Convert ``text`` (as typed on the command line) to a value of this type.

        Args:
            text: the value.
            now: the current time for ages such as ``24h`` (default: the clock, UTC).

        Raises:
            QueryParamError: the text is not a valid value; the message says what is.
        """
        base = self.type[len("Nullable(") : -1] if self.nullable else self.type
        try:
            return convert(base, text.strip() if base != "String" else text, now)
        except ValueError as exc:
            raise QueryParamError(
                f"Parameter {self.name} ({self.type}): {text!r} is not valid: {exc}."
            ) from None


@dataclass(frozen=True)
class QueryColumn:
    """One documented output column: its name, ClickHouse type and meaning."""

    name: str
    type: str
    meaning: str


@dataclass(frozen=True)
class NamedQuery:
    """A parsed query file. Immutable; :meth:`run` may be called any number of times.

    Attributes:
        name: the file name without ``.sql``.
        path: the file.
        purpose: one line saying what it finds.
        why: the longer explanation (may be empty).
        params: declared parameters, in header order.
        columns: documented output columns, in output order.
        sql: the SQL after the header, with its placeholders.
    """

    name: str
    path: Path
    purpose: str
    why: str
    params: tuple[QueryParam, ...]
    columns: tuple[QueryColumn, ...]
    sql: str = field(repr=False)

    def param(self, name: str) -> QueryParam:
        """The parameter called ``name``.

        Raises:
            QueryParamError: there is none; the message lists the parameters.
        """
        for p in self.params:
            if p.name == name:
                return p
        known = [p.name for p in self.params]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise QueryParamError(
            f"Query {self.name} has no parameter {name!r}; it takes "
            f"{', '.join(known) or 'none'}.{hint} "
            f"See `agenttrail query {self.name} --help-query`."
        )

    def bind(self, values: Mapping[str, object], now: datetime | None = None) -> dict[str, Any]:
        """Every parameter's value: ``values`` converted, defaults for the rest.

        Args:
            values: parameter name → value as text (other values are converted with
                ``str()`` first, so ``3`` and ``"3"`` are the same).
            now: the current time for ages such as ``24h`` (default: the clock, UTC).

        Raises:
            QueryParamError: an unknown parameter, a value invalid for its type, or a
                required parameter not given.
        """
        bound: dict[str, Any] = {}
        for name, value in values.items():
            bound[name] = self.param(name).convert(str(value), now)
        for p in self.params:
            if p.name in bound:
                continue
            if p.required:
                raise QueryParamError(
                    f"Query {self.name} needs parameter {p.name} ({p.type}: {p.meaning}); "
                    f"pass --param {p.name}=VALUE."
                )
            bound[p.name] = p.default
        return bound

    def run(
        self, store: Store, values: Mapping[str, object], now: datetime | None = None
    ) -> QueryResult:
        """Bind ``values`` (see :meth:`bind`) and run the query. Blocks until done.

        Values reach the store as bound parameters; they are never part of the SQL text.

        Raises:
            QueryParamError: see :meth:`bind`; nothing was sent to the store.
            QueryDefinitionError: the rows do not have the documented columns.
            StoreError: the store is unreachable or rejected the query.
        """
        bound = self.bind(values, now)
        rows = store.query(self.sql, bound)
        width = len(self.columns)
        if rows and len(rows[0]) != width:
            raise QueryDefinitionError(
                f"Query {self.name} returned {len(rows[0])} columns but {self.path} documents "
                f"{width}; fix the file's `-- column:` lines."
            )
        return QueryResult(self, bound, rows)


@dataclass(frozen=True)
class QueryResult:
    """The rows a named query returned, with the documented columns.

    Attributes:
        query: the query that ran.
        params: the bound parameter values (defaults included).
        rows: one tuple per row, values in the order of ``query.columns``.
    """

    query: NamedQuery
    params: dict[str, Any]
    rows: list[tuple[Any, ...]]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.query.columns]

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        names = self.column_names
        return [dict(zip(names, row, strict=True)) for row in self.rows]


def forensics_dir() -> Path:
    """Directory of the named forensic queries (``queries/forensics``)."""
    return queries_dir() / "forensics"


def discover_named_queries(directory: Path | None = None) -> dict[str, NamedQuery]:
    """Parse every ``*.sql`` file of ``directory`` (default :func:`forensics_dir`).

    Returns:
        name → query, sorted by name.

    Raises:
        QueryDefinitionError: a file is malformed (the message names the file and line).
        FileNotFoundError: the directory does not exist.
    """
    directory = directory or forensics_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"Named query directory {directory} does not exist.")
    queries = {}
    for path in sorted(directory.glob("*.sql")):
        query = parse_named_query(path.read_text(encoding="utf-8"), path)
        queries[query.name] = query
    return queries


def load_named_query(name: str, directory: Path | None = None) -> NamedQuery:
    """The query called ``name``.

    Raises:
        UnknownQueryError: no such file; the message lists the names there are.
        QueryDefinitionError: the file is malformed.
    """
    queries = discover_named_queries(directory)
    if name not in queries:
        close = difflib.get_close_matches(name, list(queries), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise UnknownQueryError(
            f"There is no named query {name!r}.{hint} Known: {', '.join(queries)} "
            "(`agenttrail query --list` describes them)."
        )
    return queries[name]


def parse_named_query(text: str, path: Path) -> NamedQuery:
    """Parse one query file's text; ``path`` gives its name and locates errors.

    Raises:
        QueryDefinitionError: the name, the header or the placeholders are wrong.
    """
    name = path.stem
    if not _NAME_RE.match(name):
        raise QueryDefinitionError(
            f"{path}: query names are lower-case letters, digits and underscores; rename the file."
        )
    lines = text.splitlines()
    entries: list[tuple[int, str, str]] = []  # (line number, directive, text)
    body_start = len(lines)
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if not line.startswith("--"):
            body_start = number - 1
            break
        if line.strip("- ") == "":
            continue
        directive = _DIRECTIVE_RE.match(line)
        continuation = _CONTINUATION_RE.match(line)
        if directive and directive.group(1) in _DIRECTIVES:
            entries.append((number, directive.group(1), directive.group(2).strip()))
        elif continuation and entries:
            at, kind, so_far = entries[-1]
            entries[-1] = (at, kind, f"{so_far} {continuation.group(1).strip()}")
        else:
            raise QueryDefinitionError(
                f"{path}:{number}: header line is neither a directive "
                f"(-- {': / -- '.join(_DIRECTIVES)}:) nor a continuation (--   text): {line!r}"
            )
    for number, raw in enumerate(lines[body_start:], start=body_start + 1):
        stray = _DIRECTIVE_RE.match(raw.strip())
        if stray and stray.group(1) in _DIRECTIVES:
            raise QueryDefinitionError(
                f"{path}:{number}: `-- {stray.group(1)}:` after the header ended at line "
                f"{body_start}; keep the header one block of `--` lines (no blank lines)."
            )
    sql = "\n".join(lines[body_start:]).strip().rstrip(";").strip()
    purposes = [t for _, kind, t in entries if kind == "purpose"]
    if len(purposes) != 1 or not purposes[0]:
        raise QueryDefinitionError(
            f"{path}: the header needs exactly one non-empty `-- purpose:` line, "
            f"found {len(purposes)}."
        )
    params = tuple(_parse_param(path, n, t) for n, kind, t in entries if kind == "param")
    columns = tuple(_parse_column(path, n, t) for n, kind, t in entries if kind == "column")
    _check_unique(path, "parameter", [p.name for p in params])
    _check_unique(path, "column", [c.name for c in columns])
    if not columns:
        raise QueryDefinitionError(f"{path}: document the output with `-- column:` lines.")
    if not sql:
        raise QueryDefinitionError(f"{path}: there is no SQL after the header.")
    _check_placeholders(path, sql, params)
    why = " ".join(t for _, kind, t in entries if kind == "why")
    return NamedQuery(name, path, purposes[0], why, params, columns, sql)


def _parse_param(path: Path, number: int, text: str) -> QueryParam:
    spec, meaning = _split_meaning(path, number, text, "param: name Type [= default]")
    parts = spec.split(None, 1)
    if len(parts) != 2 or not parts[0].isidentifier():
        raise QueryDefinitionError(
            f"{path}:{number}: write `-- param: name Type [= default] -- meaning`, got {text!r}."
        )
    name, rest = parts
    type_text, default_text = _split_type(rest)
    if not type_text:
        raise QueryDefinitionError(
            f"{path}:{number}: parameter {name} has no type; write "
            "`-- param: name Type [= default] -- meaning`."
        )
    if default_text is not None and default_text == "":
        raise QueryDefinitionError(f"{path}:{number}: `=` without a default for {name}.")
    try:
        converter(base_type(type_text))
    except UnsupportedType as exc:
        raise QueryDefinitionError(f"{path}:{number}: parameter {name}: {exc}") from None
    param = QueryParam(name, type_text, meaning, default_text)
    if default_text is None:
        return param
    if default_text == "NULL":
        if not param.nullable:
            raise QueryDefinitionError(
                f"{path}:{number}: parameter {name} defaults to NULL but its type "
                f"{type_text} is not Nullable(...)."
            )
        return param
    try:
        default = param.convert(default_text, datetime(1970, 1, 1, tzinfo=UTC))
    except QueryParamError as exc:
        raise QueryDefinitionError(f"{path}:{number}: bad default: {exc}") from None
    return QueryParam(name, type_text, meaning, default_text, default)


def _parse_column(path: Path, number: int, text: str) -> QueryColumn:
    spec, meaning = _split_meaning(path, number, text, "column: name Type")
    parts = spec.split(None, 1)
    if len(parts) != 2 or not parts[0].isidentifier():
        raise QueryDefinitionError(
            f"{path}:{number}: write `-- column: name Type -- meaning`, got {text!r}."
        )
    return QueryColumn(parts[0], " ".join(parts[1].split()), meaning)


def _split_meaning(path: Path, number: int, text: str, form: str) -> tuple[str, str]:
    spec, sep, meaning = text.partition(" -- ")
    if not sep or not meaning.strip():
        raise QueryDefinitionError(
            f"{path}:{number}: say what it means: `-- {form} -- meaning`, got {text!r}."
        )
    return spec.strip(), meaning.strip()


def _split_type(rest: str) -> tuple[str, str | None]:
    """Split ``Type [= default]``; the type may hold spaces inside parentheses."""
    depth = 0
    for i, char in enumerate(rest):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char == "=":
            return " ".join(rest[:i].split()), rest[i + 1 :].strip()
    return " ".join(rest.split()), None


def _check_unique(path: Path, what: str, names: list[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise QueryDefinitionError(f"{path}: {what} {', '.join(twice)} declared twice.")


def _check_placeholders(path: Path, sql: str, params: tuple[QueryParam, ...]) -> None:
    declared = {p.name: p.type for p in params}
    used = set()
    for match in _PLACEHOLDER_RE.finditer(sql):
        name, type_text = match.group(1), " ".join(match.group(2).split())
        if name not in declared:
            raise QueryDefinitionError(
                f"{path}: the SQL uses {{{name}:{type_text}}} but the header declares no "
                f"parameter {name}; add `-- param: {name} {type_text} ... -- meaning`."
            )
        if declared[name] != type_text:
            raise QueryDefinitionError(
                f"{path}: placeholder {{{name}:{type_text}}} does not match the declared "
                f"type {declared[name]}; use one type for a parameter."
            )
        used.add(name)
    unused = [n for n in declared if n not in used]
    if unused:
        raise QueryDefinitionError(
            f"{path}: parameter(s) {', '.join(unused)} are declared but the SQL never uses "
            "them; remove them or use them."
        )
