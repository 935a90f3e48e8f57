-- purpose: The slowest tool calls, slowest first.
-- why: The field note asks for tool spans with latency so that "when something goes wrong
--   at step 7 of a 12-step chain" the slow step is visible; a slow tool also holds the
--   agent's wall-clock budget and, with noisy results, its context window. Filter by
--   tool, or keep only calls above min_latency_ms.
-- param: tool Nullable(String) = NULL -- only this tool; every tool when not given
-- param: min_latency_ms Float64 = 0 -- only calls that took at least this many milliseconds
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only calls at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 20 -- most rows returned
-- column: tenant LowCardinality(String) -- the task's tenant
-- column: task_id String -- the task
-- column: task_type LowCardinality(String) -- the task's type
-- column: tool LowCardinality(String) -- the tool
-- column: step Int32 -- step of the call
-- column: seq Int64 -- position of the call in the task's events
-- column: ts DateTime64(6, 'UTC') -- when the call started
-- column: latency_ms Float64 -- how long it took
-- column: success Bool -- whether it succeeded
-- column: side_effect LowCardinality(String) -- read, write or irreversible
-- column: result_size Int64 -- bytes of the result
-- column: error_detail Nullable(String) -- the error, when it failed
SELECT
    tenant, task_id, task_type, tool, step, seq, ts, latency_ms, success, side_effect,
    result_size, error_detail
FROM tool_spans
WHERE ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
  AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
  AND ({tool:Nullable(String)} IS NULL OR tool = {tool:Nullable(String)})
  AND ts >= {since:DateTime64(6, 'UTC')}
  AND latency_ms >= {min_latency_ms:Float64}
ORDER BY latency_ms DESC
LIMIT {limit:UInt32}
