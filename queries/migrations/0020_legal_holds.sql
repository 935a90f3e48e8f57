-- Legal holds: a hold on a tenant (task_id = '') or on one task keeps its events past
-- their table's TTL until it is released. Append-only like everything else: placing and
-- releasing are both rows; the newest row of a (tenant, task_id) says whether a hold is
-- in force. The family tables' TTL (set by `agenttrail migrate` from the retention
-- settings, agenttrail/store/_retention.py) skips rows of held tenants and tasks.

CREATE TABLE IF NOT EXISTS legal_holds
(
    tenant     LowCardinality(String),
    task_id    String,
    released   Bool,
    reason     String,
    placed_by  String,
    at         DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (tenant, task_id, at);
