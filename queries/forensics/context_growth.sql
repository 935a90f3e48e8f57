-- purpose: Input tokens per step of the tasks whose largest prompt came within min_fill of the model's context window.
-- why: The field note's "context window exhaustion — long conversations fill the context
--   and degrade reasoning quality", and "large, noisy tool responses overwhelm the
--   context window". For every task with an LLM call whose input_tokens reached min_fill
--   of that call's context_window, the input tokens of each call in order show how fast
--   the history grew and which step made it jump. Calls recorded without context_window
--   cannot be judged (they still appear in a listed task's per-step tokens).
-- param: min_fill Float64 = 0.8 -- fraction of the context window the largest prompt must reach (0.8 = 80 %)
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only LLM calls at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 100 -- most rows returned
-- column: tenant LowCardinality(String) -- the task's tenant
-- column: task_id String -- the task
-- column: task_type LowCardinality(String) -- the task's type
-- column: model String -- the model of the fullest call
-- column: context_window Int64 -- the context window of the fullest call
-- column: fill Float64 -- largest input_tokens / context_window over the task's calls
-- column: llm_calls UInt64 -- LLM calls of the task
-- column: first_input_tokens Int64 -- input tokens of the first call
-- column: max_input_tokens Int64 -- input tokens of the largest call
-- column: growth_per_step Float64 -- mean increase of input tokens from one call to the next
-- column: input_tokens_by_step Array(Int64) -- input tokens of every call, in order
-- column: last_ts DateTime64(6, 'UTC') -- the task's last LLM call
WITH per_task AS
(
    SELECT
        tenant,
        task_id,
        task_type,
        maxIf(input_tokens / coalesce(context_window, 0), coalesce(context_window, 0) > 0)
            AS top_fill,
        argMaxIf(
            (toString(model), coalesce(context_window, 0)),
            input_tokens / coalesce(context_window, 0),
            coalesce(context_window, 0) > 0) AS fullest,
        count() AS n_calls,
        arrayMap(p -> p.2, arraySort(groupArray((seq, input_tokens)))) AS tokens_by_step,
        max(ts) AS latest
    FROM llm_calls
    WHERE ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
    GROUP BY tenant, task_id, task_type
    HAVING top_fill >= {min_fill:Float64} AND top_fill > 0
)
SELECT
    tenant,
    task_id,
    task_type,
    fullest.1 AS model,
    fullest.2 AS context_window,
    top_fill AS fill,
    n_calls AS llm_calls,
    tokens_by_step[1] AS first_input_tokens,
    arrayMax(tokens_by_step) AS max_input_tokens,
    if(n_calls > 1, (tokens_by_step[-1] - tokens_by_step[1]) / (n_calls - 1), 0) AS growth_per_step,
    tokens_by_step AS input_tokens_by_step,
    latest AS last_ts
FROM per_task
ORDER BY fill DESC, last_ts DESC
LIMIT {limit:UInt32}
