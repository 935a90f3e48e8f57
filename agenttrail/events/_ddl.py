"""Read table columns out of migration SQL, without a database.

Understands the statements the migrations use: ``CREATE TABLE [IF NOT EXISTS] t (...)``
and ``ALTER TABLE t ADD COLUMN [IF NOT EXISTS] c Type ...`` / ``DROP COLUMN [IF EXISTS]
c``, applied in file order, so the result is the columns a store has after every
migration ran. Comments (``--`` to the end of a line) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CREATE = re.compile(
    r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:\w+\.)?(\w+)\s*\(", re.IGNORECASE
)
_ALTER = re.compile(r"ALTER\s+TABLE\s+(?:\w+\.)?(\w+)\s+(.*)", re.IGNORECASE | re.DOTALL)
_ADD = re.compile(r"ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+(.*)", re.I | re.DOTALL)
_DROP = re.compile(r"DROP\s+COLUMN\s+(?:IF\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
_TYPE_END = re.compile(r"\s+(?:CODEC|DEFAULT|MATERIALIZED|ALIAS|COMMENT|TTL|AFTER|FIRST)\b", re.I)
_INDEX = re.compile(r"(?:INDEX|PROJECTION|CONSTRAINT)\s", re.IGNORECASE)


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _split_top_level(body: str, sep: str = ",") -> list[str]:
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(body):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def _balanced(text: str, open_at: int) -> str:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    raise ValueError(f"unbalanced parentheses after: {text[open_at : open_at + 80]!r}")


def _column(definition: str) -> tuple[str, str]:
    name, _, rest = definition.strip().partition(" ")
    rest = rest.strip()
    m = _TYPE_END.search(rest)
    return name.strip('`"'), (rest[: m.start()] if m else rest).strip()


def table_columns(sql_texts: Iterable[str]) -> dict[str, dict[str, str]]:
    """Table → {column: type as written}, after every statement of ``sql_texts`` in order.

    Raises:
        ValueError: a ``CREATE TABLE`` whose column list does not close.
    """
    tables: dict[str, dict[str, str]] = {}
    for sql in sql_texts:
        text = _strip_comments(sql)
        for statement in text.split(";"):
            create = _CREATE.search(statement)
            if create and " AS " not in statement[: create.start()].upper():
                table = create.group(1)
                body = _balanced(statement, create.end() - 1)
                columns = dict(_column(d) for d in _split_top_level(body) if not _INDEX.match(d))
                tables.setdefault(table, columns)  # IF NOT EXISTS: the first one wins
                continue
            alter = _ALTER.search(statement)
            if not alter or alter.group(1) not in tables:
                continue
            for action in _split_top_level(alter.group(2)):
                if add := _ADD.match(action):
                    tables[alter.group(1)].setdefault(*_column(f"{add.group(1)} {add.group(2)}"))
                elif drop := _DROP.match(action):
                    tables[alter.group(1)].pop(drop.group(1), None)
    return tables
