-- purpose: The same tool called with the same arguments at least min_repeats times in one task: an agent going round in circles.
-- why: The field note's "infinite loops — a malformed observation sends the agent into a
--   cycle it never exits". A loop burns steps, tokens and money until a hard limit
--   stops it, so the outcome column usually says limit_exceeded; a loop that ended in
--   succeeded is a lucky escape worth a look too. Counting is per task, over tool and
--   args_hash, whether or not the calls were consecutive.
-- param: min_repeats UInt32 = 3 -- calls with the same tool and arguments in one task that count as a loop (k)
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only calls at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 100 -- most rows returned
-- column: tenant LowCardinality(String) -- the task's tenant
-- column: task_id String -- the task
-- column: task_type LowCardinality(String) -- the task's type
-- column: tool LowCardinality(String) -- the tool called in a loop
-- column: args_hash String -- SHA-256 of the canonical arguments repeated
-- column: arguments String -- the (sanitised) arguments
-- column: repeats UInt64 -- calls with this tool and these arguments
-- column: failed_calls UInt64 -- of which failed
-- column: first_step Int32 -- step of the first call
-- column: last_step Int32 -- step of the last call
-- column: outcome Nullable(String) -- the task's terminal state (succeeded, failed, limit_exceeded, killed); NULL while it has none
-- column: first_ts DateTime64(6, 'UTC') -- first call
-- column: last_ts DateTime64(6, 'UTC') -- last call
WITH loops AS
(
    SELECT
        tenant,
        task_id,
        task_type,
        tool,
        args_hash,
        any(args_json) AS args_text,
        count() AS n_calls,
        countIf(NOT success) AS n_failed,
        min(step) AS step_from,
        max(step) AS step_to,
        min(ts) AS first_call,
        max(ts) AS last_call
    FROM tool_spans
    WHERE ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
    GROUP BY tenant, task_id, task_type, tool, args_hash
    HAVING n_calls >= {min_repeats:UInt32}
),
outcomes AS
(
    SELECT tenant, task_id, toString(argMax(to_state, seq)) AS final_state
    FROM state_transitions
    WHERE to_state IN ('succeeded', 'failed', 'limit_exceeded', 'killed')
      AND (tenant, task_id) IN (SELECT tenant, task_id FROM loops)
    GROUP BY tenant, task_id
)
SELECT
    l.tenant AS tenant,
    l.task_id AS task_id,
    l.task_type AS task_type,
    l.tool AS tool,
    l.args_hash AS args_hash,
    l.args_text AS arguments,
    l.n_calls AS repeats,
    l.n_failed AS failed_calls,
    l.step_from AS first_step,
    l.step_to AS last_step,
    o.final_state AS outcome,
    l.first_call AS first_ts,
    l.last_call AS last_ts
FROM loops AS l
LEFT JOIN outcomes AS o ON l.tenant = o.tenant AND l.task_id = o.task_id
ORDER BY repeats DESC, last_ts DESC
LIMIT {limit:UInt32}
SETTINGS join_use_nulls = 1
