-- purpose: For each failed task, its earliest failing span (tool call or LLM call): the root cause of a cascading failure.
-- why: The field note's "cascading failures — one bad tool call produces a bad observation
--   that corrupts all downstream reasoning". The error that finally failed the task is
--   often far from the one that started it; the first failing span (lowest seq) is where
--   to look. A task is failed when it recorded a transition to failed; its spans are read
--   whatever their time. root_family is NULL when the task failed without any failing
--   span (an exception in the agent's own code).
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only tasks that failed at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 100 -- most rows returned
-- column: tenant LowCardinality(String) -- the task's tenant
-- column: task_id String -- the failed task
-- column: task_type LowCardinality(String) -- the task's type
-- column: failed_at DateTime64(6, 'UTC') -- when the task failed
-- column: task_error Nullable(String) -- the error the task failed with (type: detail)
-- column: root_family Nullable(String) -- tool_span or llm_call: the family of the first failing span
-- column: root_name Nullable(String) -- the tool, or the model of the LLM call
-- column: root_step Nullable(Int32) -- step of the first failing span
-- column: root_seq Nullable(Int64) -- position of the first failing span in the task's events
-- column: root_ts Nullable(DateTime64(6, 'UTC')) -- when the first failing span started
-- column: root_error Nullable(String) -- its error (type: detail)
-- column: failing_spans UInt64 -- failing spans of the task in all
WITH failed AS
(
    SELECT
        tenant,
        task_id,
        task_type,
        min(ts) AS failed_ts,
        argMin(
            if(error_type IS NULL AND error_detail IS NULL, NULL,
               concat(coalesce(error_type, 'Error'), ': ', coalesce(error_detail, ''))),
            ts) AS failure
    FROM state_transitions
    WHERE to_state = 'failed'
      AND ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
    GROUP BY tenant, task_id, task_type
),
failing AS
(
    SELECT tenant, task_id, 'tool_span' AS family, toString(tool) AS name, step, seq, ts,
           concat(coalesce(error_type, 'Error'), ': ', coalesce(error_detail, '')) AS error
    FROM tool_spans
    WHERE NOT success AND (tenant, task_id) IN (SELECT tenant, task_id FROM failed)
    UNION ALL
    SELECT tenant, task_id, 'llm_call' AS family, toString(model) AS name, step, seq, ts,
           concat(coalesce(error_type, 'Error'), ': ', coalesce(error_detail, '')) AS error
    FROM llm_calls
    WHERE NOT success AND (tenant, task_id) IN (SELECT tenant, task_id FROM failed)
),
roots AS
(
    SELECT
        tenant,
        task_id,
        argMin((family, name, step, seq, ts, error), seq) AS first_failure,
        count() AS n_failing
    FROM failing
    GROUP BY tenant, task_id
)
SELECT
    f.tenant AS tenant,
    f.task_id AS task_id,
    f.task_type AS task_type,
    f.failed_ts AS failed_at,
    f.failure AS task_error,
    r.first_failure.1 AS root_family,
    r.first_failure.2 AS root_name,
    r.first_failure.3 AS root_step,
    r.first_failure.4 AS root_seq,
    r.first_failure.5 AS root_ts,
    r.first_failure.6 AS root_error,
    coalesce(r.n_failing, 0) AS failing_spans
FROM failed AS f
LEFT JOIN roots AS r ON f.tenant = r.tenant AND f.task_id = r.task_id
ORDER BY failed_at DESC
LIMIT {limit:UInt32}
SETTINGS join_use_nulls = 1
