-- task_index: where a task's events are, looked up by task id alone.
--
-- The family tables are ordered by (tenant, task_id, seq), so a read that knows only the
-- task id cannot use the primary index cleanly (granules spanning a tenant boundary are
-- read in every part), and every part whose key range spans the id is read, even parts
-- written days before or after the task. task_index, ordered by task id, answers "which
-- tenant, and between which timestamps" from one granule per part; replay then adds
-- tenant = … AND ts BETWEEN first_ts AND last_ts, which prunes parts by their ts min/max
-- and narrows each remaining part to the task's index range (see agenttrail/query/_replay.py).
-- Its rows are tiny, so its granules are 1,024 rows instead of 8,192: a lookup reads one
-- granule in each part.
--
-- first_ts and last_ts are min and max of ts over every stored event of the task (all
-- five families feed it, and the events stored before this migration are indexed by
-- it), so the bounds never exclude a stored event. A retried block indexed twice would
-- change nothing (min and max are idempotent); the deduplication window is there anyway.

CREATE TABLE IF NOT EXISTS task_index
(
    task_id   String,
    tenant    LowCardinality(String),
    first_ts  SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_ts   SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (task_id, tenant)
SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 50000;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_index_from_llm_calls TO task_index AS
SELECT task_id, tenant, min(ts) AS first_ts, max(ts) AS last_ts
FROM llm_calls GROUP BY task_id, tenant;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_index_from_tool_spans TO task_index AS
SELECT task_id, tenant, min(ts) AS first_ts, max(ts) AS last_ts
FROM tool_spans GROUP BY task_id, tenant;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_index_from_state_transitions TO task_index AS
SELECT task_id, tenant, min(ts) AS first_ts, max(ts) AS last_ts
FROM state_transitions GROUP BY task_id, tenant;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_index_from_agent_messages TO task_index AS
SELECT task_id, tenant, min(ts) AS first_ts, max(ts) AS last_ts
FROM agent_messages GROUP BY task_id, tenant;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_index_from_guard_events TO task_index AS
SELECT task_id, tenant, min(ts) AS first_ts, max(ts) AS last_ts
FROM guard_events GROUP BY task_id, tenant;

-- Events stored before this migration: min and max are idempotent, so indexing them
-- again (a re-run after a crash, or an event stored by the views above meanwhile)
-- changes nothing.
INSERT INTO task_index SELECT task_id, tenant, min(ts), max(ts) FROM llm_calls
GROUP BY task_id, tenant;

INSERT INTO task_index SELECT task_id, tenant, min(ts), max(ts) FROM tool_spans
GROUP BY task_id, tenant;

INSERT INTO task_index SELECT task_id, tenant, min(ts), max(ts) FROM state_transitions
GROUP BY task_id, tenant;

INSERT INTO task_index SELECT task_id, tenant, min(ts), max(ts) FROM agent_messages
GROUP BY task_id, tenant;

INSERT INTO task_index SELECT task_id, tenant, min(ts), max(ts) FROM guard_events
GROUP BY task_id, tenant;
