-- purpose: Tasks stopped by a hard limit (tokens, steps, wall-clock, spend), with the limit and the value that crossed it.
-- why: The field note: "Agents that lack clear exit conditions are the most common source
--   of runaway costs. Cap token budgets, step counts, and wall-clock time independently",
--   and "hard resource limits, not soft warnings". A hit is a guard event of kind
--   limit_exceeded (it carries the limit's name, value and the observed value) or a
--   transition to limit_exceeded (an emitter that records only the transition); a task
--   appears once, with whatever either recorded. Many hits of one task type mean the
--   limit or the agent needs attention.
-- param: limit_name Nullable(String) = NULL -- only hits of this limit (tokens, steps, wall_clock, spend); every limit when not given
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only hits at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 100 -- most rows returned
-- column: tenant LowCardinality(String) -- the task's tenant
-- column: task_id String -- the task
-- column: task_type LowCardinality(String) -- the task's type
-- column: limit_name Nullable(String) -- the limit crossed; NULL when only a transition was recorded
-- column: limit_value Nullable(Float64) -- the configured limit
-- column: observed_value Nullable(Float64) -- the value that crossed it
-- column: step Int32 -- the task's step when it was stopped
-- column: hit_at DateTime64(6, 'UTC') -- when it was stopped
-- column: guard_event_recorded Bool -- whether a limit_exceeded guard event was recorded
-- column: transition_recorded Bool -- whether a limit_exceeded transition was recorded
-- column: detail Nullable(String) -- the guard event's message, else the transition's reason
WITH hits AS
(
    SELECT
        tenant, task_id, task_type, step, ts,
        CAST(limit_name AS Nullable(String)) AS hit_limit,
        limit_value AS hit_value,
        observed_value AS hit_observed,
        detail AS hit_detail,
        1 AS from_guard
    FROM guard_events
    WHERE kind = 'limit_exceeded'
      AND ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
    UNION ALL
    SELECT
        tenant, task_id, task_type, step, ts,
        CAST(NULL AS Nullable(String)),
        CAST(NULL AS Nullable(Float64)),
        CAST(NULL AS Nullable(Float64)),
        reason,
        0
    FROM state_transitions
    WHERE to_state = 'limit_exceeded'
      AND ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
),
per_task AS
(
    SELECT
        tenant,
        task_id,
        task_type,
        argMinIf(hit_limit, ts, from_guard = 1) AS name_of_limit,
        argMinIf(hit_value, ts, from_guard = 1) AS value_of_limit,
        argMinIf(hit_observed, ts, from_guard = 1) AS value_observed,
        min(step) AS first_step,
        min(ts) AS first_hit,
        toBool(max(from_guard) = 1) AS has_guard,
        toBool(min(from_guard) = 0) AS has_transition,
        argMin(hit_detail, (from_guard = 0, ts)) AS hit_message
    FROM hits
    GROUP BY tenant, task_id, task_type
)
SELECT
    tenant,
    task_id,
    task_type,
    name_of_limit AS limit_name,
    value_of_limit AS limit_value,
    value_observed AS observed_value,
    first_step AS step,
    first_hit AS hit_at,
    has_guard AS guard_event_recorded,
    has_transition AS transition_recorded,
    hit_message AS detail
FROM per_task
WHERE {limit_name:Nullable(String)} IS NULL OR name_of_limit = {limit_name:Nullable(String)}
ORDER BY hit_at DESC
LIMIT {limit:UInt32}
