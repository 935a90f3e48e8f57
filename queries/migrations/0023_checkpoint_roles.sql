-- agenttrail: server-only
-- The roles of 0021_roles.sql on the checkpoints table: the consumer inserts checkpoints
-- like any event, auditors may re-materialize its TTL after a legal hold is released,
-- and a tenant's reader sees the checkpoints of its own tenant only.
GRANT INSERT ON checkpoints TO agenttrail_writer;
GRANT ALTER MATERIALIZE TTL ON checkpoints TO agenttrail_auditor;
GRANT SELECT ON checkpoints TO agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_all_tenants ON checkpoints FOR SELECT USING 1
    TO ALL EXCEPT agenttrail_tenant_reader;
CREATE ROW POLICY IF NOT EXISTS agenttrail_own_tenant ON checkpoints FOR SELECT
    USING tenant IN (SELECT tenant FROM tenant_readers WHERE user_name = currentUser())
    TO agenttrail_tenant_reader;
