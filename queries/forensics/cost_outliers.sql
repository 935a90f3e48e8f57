-- purpose: Tasks whose LLM cost is far above the typical cost of their task type: more than factor × the type's median.
-- why: The field note: runaway costs are what tasks without clear exit conditions
--   produce, and "task-level cost accounting" is on the production checklist. A task
--   costs sum(cost_usd) over its LLM calls; calls recorded without cost_usd count as 0
--   until the price table lands (calls_without_cost says how many there were), so an
--   unpriced task can look cheap. The typical cost is the median (quantileExact) of the
--   tasks of the same tenant and task type in the window; types with fewer than
--   min_tasks tasks have no meaningful typical cost and are skipped. The p95 is shown
--   for comparison.
-- param: factor Float64 = 3 -- a task is an outlier when it cost more than factor × the median of its task type
-- param: min_tasks UInt32 = 5 -- task types with fewer tasks than this are not judged
-- param: tenant Nullable(String) = NULL -- only this tenant; every tenant when not given
-- param: task_type Nullable(String) = NULL -- only this task type; every type when not given
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- only LLM calls at or after this time: ISO 8601 (2026-01-15T10:00:00Z) or an age (24h, 7d)
-- param: limit UInt32 = 100 -- most rows returned
-- column: tenant LowCardinality(String) -- the task's tenant
-- column: task_id String -- the task
-- column: task_type LowCardinality(String) -- the task's type
-- column: cost_usd Float64 -- the task's LLM cost (calls without cost_usd count as 0)
-- column: median_cost_usd Float64 -- median cost of the tasks of its type
-- column: p95_cost_usd Float64 -- 95th percentile cost of the tasks of its type
-- column: times_median Nullable(Float64) -- cost_usd / median_cost_usd; NULL when the median is 0
-- column: tasks_of_type UInt64 -- tasks of the type the median is taken over
-- column: llm_calls UInt64 -- LLM calls of the task
-- column: calls_without_cost UInt64 -- of which had no cost_usd (counted as 0)
-- column: input_tokens Int64 -- input tokens of the task
-- column: output_tokens Int64 -- output tokens of the task
WITH task_costs AS
(
    SELECT
        tenant,
        task_id,
        task_type,
        sum(coalesce(cost_usd, 0)) AS task_cost,
        count() AS n_calls,
        countIf(cost_usd IS NULL) AS n_unpriced,
        sum(input_tokens) AS tokens_in,
        sum(output_tokens) AS tokens_out
    FROM llm_calls
    WHERE ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
      AND ({task_type:Nullable(String)} IS NULL OR task_type = {task_type:Nullable(String)})
      AND ts >= {since:DateTime64(6, 'UTC')}
    GROUP BY tenant, task_id, task_type
),
typical AS
(
    SELECT
        tenant,
        task_type,
        count() AS n_tasks,
        quantileExact(0.5)(task_cost) AS median_cost,
        quantileExact(0.95)(task_cost) AS p95_cost
    FROM task_costs
    GROUP BY tenant, task_type
    HAVING n_tasks >= {min_tasks:UInt32}
)
SELECT
    c.tenant AS tenant,
    c.task_id AS task_id,
    c.task_type AS task_type,
    c.task_cost AS cost_usd,
    t.median_cost AS median_cost_usd,
    t.p95_cost AS p95_cost_usd,
    if(t.median_cost > 0, c.task_cost / t.median_cost, NULL) AS times_median,
    t.n_tasks AS tasks_of_type,
    c.n_calls AS llm_calls,
    c.n_unpriced AS calls_without_cost,
    c.tokens_in AS input_tokens,
    c.tokens_out AS output_tokens
FROM task_costs AS c
INNER JOIN typical AS t ON c.tenant = t.tenant AND c.task_type = t.task_type
WHERE c.task_cost > {factor:Float64} * t.median_cost
ORDER BY times_median DESC NULLS FIRST, cost_usd DESC
LIMIT {limit:UInt32}
