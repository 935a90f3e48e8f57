"""The cluster rendering of every migration, and the role DDL, parse in the real engine.

The in-process engine has neither a cluster nor access control, so these statements
cannot run here; ``formatQuery`` parses each exactly as a server would before running it.
"""

from __future__ import annotations

import re

from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.store import Store, discover
from agenttrail.store._cluster import local_tables, render_cluster


def _all_statements() -> list[str]:
    return [s for m in discover() for s in m.statements()]


def _parses(store: Store, sql: str) -> str:
    return str(store.query("SELECT formatQuery({q:String})", {"q": sql})[0][0])


def test_every_rendered_cluster_statement_parses(store: Store) -> None:
    statements = _all_statements()
    rendered = render_cluster(statements, "prod")
    for sql in rendered:
        _parses(store, sql)
    tables = local_tables(statements)
    assert {"llm_calls", "tool_spans", "dead_letters", "task_runs_state", "legal_holds"} <= tables
    for table in tables:
        local = [s for s in rendered if s.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local ")]
        dist = [s for s in rendered if s.startswith(f"CREATE TABLE IF NOT EXISTS {table} ON")]
        assert len(local) == 1 and "ON CLUSTER 'prod'" in local[0]
        assert re.search(r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/", local[0])
        assert len(dist) == 1 and "ENGINE = Distributed('prod'" in dist[0]
    for sql in rendered:
        if sql.startswith(("CREATE", "ALTER", "GRANT")):
            assert "ON CLUSTER 'prod'" in sql, sql
    views = [s for s in rendered if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views and all(re.search(r"\sTO \w+_local AS", v) for v in views)
    assert "FROM llm_calls_local" in next(v for v in views if "task_index_from_llm_calls" in v)


def test_the_role_and_row_policy_ddl_parses(store: Store) -> None:
    (roles,) = [m for m in discover() if m.name == "roles"]
    assert roles.server_only
    statements = roles.statements()
    for sql in statements:
        _parses(store, sql)
    text = "\n".join(statements)
    for role in ("agenttrail_writer", "agenttrail_reader", "agenttrail_auditor"):
        assert f"CREATE ROLE IF NOT EXISTS {role}" in text
    writer = [s for s in statements if s.endswith("TO agenttrail_writer")]
    assert writer and all(
        s.startswith(
            ("GRANT INSERT", "GRANT SELECT ON ingest_ledger", "GRANT SELECT ON schema_migrations")
        )
        for s in writer
    )
    assert not re.search(r"\b(UPDATE|DELETE)\b", text)
    assert "CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON llm_calls" in text


def test_the_embedded_store_records_server_only_migrations_without_running_them(
    store: Store,
) -> None:
    applied = {int(v) for (v,) in store.query("SELECT version FROM schema_migrations")}
    assert 21 in applied
    assert store.query("SELECT count() FROM system.tables WHERE name = 'tenant_readers'")[0][0] == 0


def test_migrate_print_shows_the_cluster_sql_without_a_store() -> None:
    result = CliRunner().invoke(main, ["migrate", "--cluster", "prod", "--print"])
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE IF NOT EXISTS llm_calls_local ON CLUSTER 'prod'" in result.output
    assert "ReplicatedMergeTree" in result.output
