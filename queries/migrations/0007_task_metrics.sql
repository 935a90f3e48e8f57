-- Task metrics per hour, maintained as events arrive (the field note's early warnings:
-- success rate, mean step count, P50/P95 latency, tokens and cost per task type).
--
-- Two grains, because a task and an LLM call are different things:
--   task_metrics_hourly  per (tenant, task_type, agent, hour the task ended): tasks by
--                        outcome, steps, task duration (sum and quantile states);
--   llm_metrics_hourly   per (tenant, task_type, agent, model, hour of the call): calls,
--                        failures, tokens, reported cost and the unreported token sums
--                        priced at read time (0004), LLM latency (sum and quantile states).
-- A task that used several models is one task; "per model" figures are per LLM call.
--
-- A task counts once, when its first terminal transition arrives (from a non-terminal
-- state: a second terminal transition is an anomaly, not a second task). Its steps are
-- that transition's step, which the SDK keeps equal to max(step) of the task. Its
-- duration is that transition's ts minus the `started` transition's ts; the start is
-- looked up in task_starts, or in the block being inserted when both transitions arrive
-- together (inside a materialized view every reference to the source table reads the
-- inserted block). Tasks whose start was never stored count everywhere but in durations.
--
-- Quantile states are ClickHouse's `quantiles` (reservoir of 8192 values, linear
-- interpolation): exact while a merged group holds at most 8192 values, an unbiased
-- sample beyond. Readers merge states over any range of hours (quantilesMerge).
-- Deduplication of consumer retries: as in 0006.

CREATE TABLE IF NOT EXISTS task_starts
(
    tenant      LowCardinality(String),
    task_id     String,
    started_at  DateTime64(6, 'UTC')
)
ENGINE = MergeTree
ORDER BY (tenant, task_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_starts_from_state_transitions TO task_starts AS
SELECT tenant, task_id, ts AS started_at
FROM state_transitions
WHERE to_state = 'started';

CREATE TABLE IF NOT EXISTS task_metrics_hourly
(
    tenant          LowCardinality(String),
    task_type       LowCardinality(String),
    agent_name      LowCardinality(String),
    agent_version   LowCardinality(String),
    hour            DateTime('UTC'),
    tasks           SimpleAggregateFunction(sum, UInt64),
    succeeded       SimpleAggregateFunction(sum, UInt64),
    failed          SimpleAggregateFunction(sum, UInt64),
    limit_exceeded  SimpleAggregateFunction(sum, UInt64),
    killed          SimpleAggregateFunction(sum, UInt64),
    steps_sum       SimpleAggregateFunction(sum, Int64),
    timed_tasks     SimpleAggregateFunction(sum, UInt64),
    duration_ms_sum SimpleAggregateFunction(sum, Float64),
    duration_ms_state AggregateFunction(quantiles(0.5, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, task_type, agent_name, agent_version, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_metrics_from_state_transitions
TO task_metrics_hourly AS
SELECT
    e.tenant AS tenant,
    e.task_type AS task_type,
    e.agent_name AS agent_name,
    e.agent_version AS agent_version,
    toStartOfHour(e.ts) AS hour,
    count() AS tasks,
    countIf(e.to_state = 'succeeded') AS succeeded,
    countIf(e.to_state = 'failed') AS failed,
    countIf(e.to_state = 'limit_exceeded') AS limit_exceeded,
    countIf(e.to_state = 'killed') AS killed,
    sum(toInt64(e.step)) AS steps_sum,
    countIf(s.started_at IS NOT NULL) AS timed_tasks,
    sumIf(dateDiff('microsecond', assumeNotNull(s.started_at), e.ts) / 1000.0,
          s.started_at IS NOT NULL) AS duration_ms_sum,
    quantilesStateIf(0.5, 0.9, 0.95, 0.99)(
        dateDiff('microsecond', assumeNotNull(s.started_at), e.ts) / 1000.0,
        s.started_at IS NOT NULL) AS duration_ms_state
FROM
(
    SELECT tenant, task_id, task_type, agent_name, agent_version, ts, step, to_state
    FROM state_transitions
    WHERE to_state IN ('succeeded', 'failed', 'limit_exceeded', 'killed')
      AND (from_state IS NULL
           OR from_state NOT IN ('succeeded', 'failed', 'limit_exceeded', 'killed'))
) AS e
LEFT JOIN
(
    SELECT tenant, task_id, toNullable(min(started_at)) AS started_at
    FROM
    (
        SELECT tenant, task_id, ts AS started_at
        FROM state_transitions
        WHERE to_state = 'started'
        UNION ALL
        SELECT tenant, task_id, started_at
        FROM task_starts
        WHERE (tenant, task_id) IN (
            SELECT tenant, task_id FROM state_transitions
            WHERE to_state IN ('succeeded', 'failed', 'limit_exceeded', 'killed')
        )
    )
    GROUP BY tenant, task_id
) AS s
ON e.tenant = s.tenant AND e.task_id = s.task_id
GROUP BY tenant, task_type, agent_name, agent_version, hour;

CREATE TABLE IF NOT EXISTS llm_metrics_hourly
(
    tenant                           LowCardinality(String),
    task_type                        LowCardinality(String),
    agent_name                       LowCardinality(String),
    agent_version                    LowCardinality(String),
    model                            LowCardinality(String),
    hour                             DateTime('UTC'),
    calls                            SimpleAggregateFunction(sum, UInt64),
    failures                         SimpleAggregateFunction(sum, UInt64),
    input_tokens                     SimpleAggregateFunction(sum, Int64),
    output_tokens                    SimpleAggregateFunction(sum, Int64),
    cached_tokens                    SimpleAggregateFunction(sum, Int64),
    reported_calls                   SimpleAggregateFunction(sum, UInt64),
    reported_cost_usd                SimpleAggregateFunction(sum, Float64),
    unreported_calls                 SimpleAggregateFunction(sum, UInt64),
    unreported_uncached_input_tokens SimpleAggregateFunction(sum, Int64),
    unreported_cached_tokens         SimpleAggregateFunction(sum, Int64),
    unreported_output_tokens         SimpleAggregateFunction(sum, Int64),
    latency_ms_sum                   SimpleAggregateFunction(sum, Float64),
    latency_ms_state                 AggregateFunction(quantiles(0.5, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, task_type, agent_name, agent_version, model, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS llm_metrics_from_llm_calls TO llm_metrics_hourly AS
SELECT
    tenant, task_type, agent_name, agent_version, toString(model) AS model,
    toStartOfHour(ts) AS hour,
    count() AS calls,
    countIf(NOT success) AS failures,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_tokens) AS cached_tokens,
    countIf(cost_usd IS NOT NULL) AS reported_calls,
    sum(ifNull(cost_usd, 0)) AS reported_cost_usd,
    countIf(cost_usd IS NULL) AS unreported_calls,
    -- Qualified: the bare names would mean the aliases above.
    sumIf(greatest(llm_calls.input_tokens - llm_calls.cached_tokens, 0), cost_usd IS NULL)
        AS unreported_uncached_input_tokens,
    sumIf(llm_calls.cached_tokens, cost_usd IS NULL) AS unreported_cached_tokens,
    sumIf(llm_calls.output_tokens, cost_usd IS NULL) AS unreported_output_tokens,
    sum(latency_ms) AS latency_ms_sum,
    quantilesState(0.5, 0.9, 0.95, 0.99)(latency_ms) AS latency_ms_state
FROM llm_calls
GROUP BY tenant, task_type, agent_name, agent_version, model, hour;

-- Hourly task metrics, finalised (one row per key and hour).
CREATE VIEW IF NOT EXISTS task_metrics AS
SELECT
    tenant, task_type, agent_name, agent_version, hour,
    n_tasks AS tasks, n_succeeded AS succeeded, n_failed AS failed,
    n_limit_exceeded AS limit_exceeded, n_killed AS killed,
    n_succeeded / n_tasks AS success_rate,
    n_steps / n_tasks AS mean_steps,
    if(n_timed > 0, duration_total_ms / n_timed, NULL) AS mean_duration_ms,
    duration_ms_quantiles
FROM
(
    SELECT
        tenant, task_type, agent_name, agent_version, hour,
        sum(tasks) AS n_tasks,
        sum(succeeded) AS n_succeeded,
        sum(failed) AS n_failed,
        sum(limit_exceeded) AS n_limit_exceeded,
        sum(killed) AS n_killed,
        sum(steps_sum) AS n_steps,
        sum(timed_tasks) AS n_timed,
        sum(duration_ms_sum) AS duration_total_ms,
        quantilesMerge(0.5, 0.9, 0.95, 0.99)(duration_ms_state) AS duration_ms_quantiles
    FROM task_metrics_hourly
    GROUP BY tenant, task_type, agent_name, agent_version, hour
);

-- Hourly LLM-call metrics with cost at the current prices (one row per key and hour).
CREATE VIEW IF NOT EXISTS llm_metrics AS
SELECT
    m.tenant AS tenant, m.task_type AS task_type, m.agent_name AS agent_name,
    m.agent_version AS agent_version, m.model AS model, m.hour AS hour,
    m.calls AS calls, m.failures AS failures,
    m.input_tokens AS input_tokens, m.output_tokens AS output_tokens,
    m.cached_tokens AS cached_tokens,
    m.reported_cost_usd + if(p.priced = 1,
        (m.unreported_uncached_input_tokens * p.input_usd_per_mtok
         + m.unreported_cached_tokens * p.cached_usd_per_mtok
         + m.unreported_output_tokens * p.output_usd_per_mtok) / 1e6, 0) AS cost_usd,
    if(p.priced = 1, 0, m.unreported_calls) AS unpriced_calls,
    m.latency_ms_sum / m.calls AS mean_latency_ms,
    m.latency_ms_quantiles AS latency_ms_quantiles
FROM
(
    SELECT
        tenant, task_type, agent_name, agent_version, model, hour, toDate(hour) AS day,
        sum(calls) AS calls, sum(failures) AS failures,
        sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
        sum(cached_tokens) AS cached_tokens,
        sum(reported_cost_usd) AS reported_cost_usd,
        sum(unreported_calls) AS unreported_calls,
        sum(unreported_uncached_input_tokens) AS unreported_uncached_input_tokens,
        sum(unreported_cached_tokens) AS unreported_cached_tokens,
        sum(unreported_output_tokens) AS unreported_output_tokens,
        sum(latency_ms_sum) AS latency_ms_sum,
        quantilesMerge(0.5, 0.9, 0.95, 0.99)(latency_ms_state) AS latency_ms_quantiles
    FROM llm_metrics_hourly
    GROUP BY tenant, task_type, agent_name, agent_version, model, hour
) AS m
ASOF LEFT JOIN model_prices_current AS p
    ON m.model = p.model AND m.day >= p.effective_from;
