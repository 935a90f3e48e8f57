-- agenttrail: server-only
-- Roles and row policies of a production ClickHouse server. The in-process engine has no
-- access control, so `agenttrail migrate` records this file as applied there without
-- running it (tests parse every statement with the engine's formatQuery instead).
--
--   agenttrail_writer         the consumer: INSERT on the event tables, dead_letters and
--                             the ledger (and the tables the materialized views write),
--                             SELECT on the ledger only. No ALTER, no DELETE, no UPDATE.
--   agenttrail_reader         SELECT on every agenttrail table (dashboards, CLI reads).
--   agenttrail_auditor        SELECT, plus placing/releasing legal holds (INSERT into
--                             legal_holds, ALTER MATERIALIZE TTL for a release); exports
--                             and verify need nothing more than SELECT.
--   agenttrail_tenant_reader  SELECT on the tenant-bearing tables, filtered by row policy
--                             to the tenants listed for the user in tenant_readers.
--
-- Grant a role to a user: GRANT agenttrail_reader TO grafana; for a tenant's reader also
-- INSERT INTO tenant_readers (user_name, tenant) VALUES ('acme_viewer', 'acme').
-- Statements use the migrated database (the current database of the migration).
CREATE TABLE IF NOT EXISTS tenant_readers
(
    user_name  String,
    tenant     LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (user_name, tenant);
CREATE ROLE IF NOT EXISTS agenttrail_writer;
CREATE ROLE IF NOT EXISTS agenttrail_reader;
CREATE ROLE IF NOT EXISTS agenttrail_auditor;
CREATE ROLE IF NOT EXISTS agenttrail_tenant_reader;

GRANT INSERT ON llm_calls TO agenttrail_writer;
GRANT INSERT ON tool_spans TO agenttrail_writer;
GRANT INSERT ON state_transitions TO agenttrail_writer;
GRANT INSERT ON agent_messages TO agenttrail_writer;
GRANT INSERT ON guard_events TO agenttrail_writer;
GRANT INSERT ON dead_letters TO agenttrail_writer;
GRANT INSERT ON ingest_ledger TO agenttrail_writer;
GRANT INSERT ON task_runs_state TO agenttrail_writer;
GRANT INSERT ON task_index TO agenttrail_writer;
GRANT INSERT ON task_starts TO agenttrail_writer;
GRANT INSERT ON task_metrics_hourly TO agenttrail_writer;
GRANT INSERT ON llm_metrics_hourly TO agenttrail_writer;
GRANT INSERT ON llm_usage_by_task TO agenttrail_writer;
GRANT SELECT ON ingest_ledger TO agenttrail_writer;
GRANT SELECT ON schema_migrations TO agenttrail_writer;
GRANT SELECT ON * TO agenttrail_reader;
GRANT SELECT ON * TO agenttrail_auditor;
GRANT INSERT ON legal_holds TO agenttrail_auditor;
GRANT ALTER MATERIALIZE TTL ON llm_calls TO agenttrail_auditor;
GRANT ALTER MATERIALIZE TTL ON tool_spans TO agenttrail_auditor;
GRANT ALTER MATERIALIZE TTL ON state_transitions TO agenttrail_auditor;
GRANT ALTER MATERIALIZE TTL ON agent_messages TO agenttrail_auditor;
GRANT ALTER MATERIALIZE TTL ON guard_events TO agenttrail_auditor;

GRANT SELECT ON llm_calls TO agenttrail_tenant_reader;
GRANT SELECT ON tool_spans TO agenttrail_tenant_reader;
GRANT SELECT ON state_transitions TO agenttrail_tenant_reader;
GRANT SELECT ON agent_messages TO agenttrail_tenant_reader;
GRANT SELECT ON guard_events TO agenttrail_tenant_reader;
GRANT SELECT ON task_runs_state TO agenttrail_tenant_reader;
GRANT SELECT ON task_index TO agenttrail_tenant_reader;
GRANT SELECT ON task_starts TO agenttrail_tenant_reader;
GRANT SELECT ON task_metrics_hourly TO agenttrail_tenant_reader;
GRANT SELECT ON llm_metrics_hourly TO agenttrail_tenant_reader;
GRANT SELECT ON llm_usage_by_task TO agenttrail_tenant_reader;
GRANT SELECT ON legal_holds TO agenttrail_tenant_reader;
GRANT SELECT ON task_runs TO agenttrail_tenant_reader;
GRANT SELECT ON task_replay TO agenttrail_tenant_reader;

-- Once a table has a row policy, a user no policy covers sees no rows: every other
-- user keeps seeing all tenants through the first policy of each table.
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON llm_calls FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON llm_calls FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON tool_spans FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON tool_spans FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON state_transitions FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON state_transitions FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON agent_messages FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON agent_messages FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON guard_events FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON guard_events FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON task_runs_state FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON task_runs_state FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON task_index FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON task_index FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON task_starts FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON task_starts FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON task_metrics_hourly FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON task_metrics_hourly FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON llm_metrics_hourly FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON llm_metrics_hourly FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON llm_usage_by_task FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON llm_usage_by_task FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON legal_holds FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON legal_holds FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
