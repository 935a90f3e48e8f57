"""Render the migrations for a ClickHouse cluster: ``ON CLUSTER``, Replicated engines,
Distributed tables.

Every table ``T`` of the single-node DDL becomes ``T_local`` (the Replicated variant of
its engine, replicated per shard through Keeper) plus ``T`` itself, a Distributed table
over ``T_local`` sharded by ``cityHash64(task_id)`` (so a task stays on one shard and its
replay stays one index range read) or ``rand()`` for tables without tasks. Code keeps
reading and writing ``T``. Materialized views read and write the ``_local`` tables on
each node; plain views, functions, roles, grants and row policies are created on every
node. ``INSERT … SELECT`` backfills run once, through the Distributed tables.

The rendering is textual over agenttrail's own migrations (their layout is known:
one statement per ``CREATE``/``ALTER``/``GRANT``/``INSERT``); every rendered statement is
checked by parsing it with the engine (``formatQuery``) in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\s*\n?\(", re.S)
_ENGINE = re.compile(r"ENGINE = (\w*MergeTree)(\(\))?")
_CREATE_OTHER = re.compile(
    r"^(CREATE (?:OR REPLACE )?(?:MATERIALIZED VIEW|VIEW|FUNCTION|ROLE|ROW POLICY)"
    r"(?: IF NOT EXISTS)? \w+)"
)
_ALTER = re.compile(r"^ALTER TABLE (\w+)")
_GRANT = re.compile(r"^GRANT (.+?) ON (\w+|\*) TO (\w+)$", re.S)
_MV_TO = re.compile(r"\bTO (\w+)\b")


def _quote(cluster: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-{}]+", cluster):
        raise ValueError(
            f"Cluster name {cluster!r} has characters a cluster name cannot have; "
            "use the name from the server's remote_servers configuration."
        )
    return f"'{cluster}'"


def local_tables(statements: Iterable[str]) -> set[str]:
    """Names of the tables the statements create (each gets a ``_local`` twin)."""
    return {m.group(1) for s in statements if (m := _CREATE_TABLE.match(s))}


def _localize(sql: str, tables: set[str]) -> str:
    """Point table references at the ``_local`` tables (whole words only)."""
    if not tables:
        return sql
    pattern = re.compile(r"\b(" + "|".join(sorted(tables, key=len, reverse=True)) + r")\b")
    return pattern.sub(lambda m: f"{m.group(1)}_local", sql)


def render_statement(statement: str, cluster: str, tables: set[str]) -> list[str]:
    """The cluster form of one single-node statement (one or more statements).

    Args:
        statement: a statement of a migration file.
        cluster: the cluster name of the server's ``remote_servers``.
        tables: every table the migrations create (see :func:`local_tables`).
    """
    on = f"ON CLUSTER {_quote(cluster)}"
    if m := _CREATE_TABLE.match(statement):
        name = m.group(1)
        local = f"{name}_local"
        head = f"CREATE TABLE IF NOT EXISTS {local} {on}\n("
        body = statement[m.end() :]

        def replicated(e: re.Match[str]) -> str:
            return (
                f"ENGINE = Replicated{e.group(1)}('/clickhouse/tables/{{shard}}/{{database}}/"
                f"{local}', '{{replica}}')"
            )

        local_sql = head + _ENGINE.sub(replicated, body, count=1)
        key = "cityHash64(task_id)" if re.search(r"^\s+task_id\s", body, re.M) else "rand()"
        dist = (
            f"CREATE TABLE IF NOT EXISTS {name} {on} AS {local}\n"
            f"ENGINE = Distributed({_quote(cluster)}, currentDatabase(), {local}, {key})"
        )
        return [local_sql, dist]
    if m := _CREATE_OTHER.match(statement):
        rest = statement[m.end() :]
        if m.group(1).startswith("CREATE MATERIALIZED VIEW"):
            rest = _localize(rest, tables)
        elif m.group(1).startswith("CREATE ROW POLICY"):
            rest = re.sub(
                r"^ ON (\w+)",
                lambda t: (
                    f" ON {t.group(1)}, {t.group(1)}_local" if t.group(1) in tables else t.group(0)
                ),
                rest,
            )
        return [f"{m.group(1)} {on}{rest}"]
    if m := _ALTER.match(statement):
        name = m.group(1)
        target = f"{name}_local" if name in tables else name
        return [f"ALTER TABLE {target} {on}{statement[m.end() :]}"]
    if m := _GRANT.match(statement):
        privilege, table, role = m.groups()
        out = [f"GRANT {on} {privilege} ON {table} TO {role}"]
        if table in tables:
            out.append(f"GRANT {on} {privilege} ON {table}_local TO {role}")
        return out
    return [statement]


def render_cluster(
    statements: list[str], cluster: str, tables: set[str] | None = None
) -> list[str]:
    """The cluster form of a list of statements, in order."""
    tables = local_tables(statements) if tables is None else tables
    out: list[str] = []
    for s in statements:
        out.extend(render_statement(s, cluster, tables))
    return out


__all__ = ["local_tables", "render_cluster", "render_statement"]
