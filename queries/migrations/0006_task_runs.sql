-- task_runs: the task-run record of the field note, maintained as events arrive.
--
-- Each family table feeds task_runs_state (AggregatingMergeTree, one row per task after
-- merges) through its own materialized view; each view aggregates only the block being
-- inserted, so ingest cost is per block and a read never rescans the raw events. The
-- view task_runs finalises the partial states (GROUP BY tenant, task_id) and adds the
-- cost, priced at read time (see 0004), from llm_usage_by_task.
--
-- Definitions:
--   start_time  min(ts) over every event of the task (the `started` transition's ts);
--   end_time    ts of the first transition into a terminal state (NULL while running);
--   steps       max(step) over every event (the SDK numbers LLM calls 1, 2, ...);
--   outcome     to_state of that first terminal transition: succeeded, failed,
--               limit_exceeded or killed; 'running' while there is none;
--   error       its error_type: error_detail, else (for a non-success) its reason;
--   tool_calls  (seq, step, tool, latency_ms, success) of every tool span, in seq order;
--   cost_usd    sum of the calls' cost (reported, or priced; unpriced_calls counts the rest).
--
-- Exactly once: a materialized view fires on every insert block, including a consumer
-- retry whose block the family table drops as a duplicate (same
-- insert_deduplication_token). The derived tables therefore deduplicate too
-- (non_replicated_deduplication_window); ClickHouse derives each view's token from the
-- source block's, so a retried block adds nothing here either, while distinct blocks
-- with identical aggregates are kept. The window is sized for every source feeding the
-- table (5 families x the raw tables' 10000). This relies on
-- deduplicate_blocks_in_dependent_materialized_views = 1, ClickHouse's default: an
-- inserting session that turns it off double-counts retries.
--
-- Events stored before this migration are not in the derived tables (a view sees only
-- inserts made after it exists).

CREATE TABLE IF NOT EXISTS task_runs_state
(
    tenant               LowCardinality(String),
    task_id              String,
    task_type            SimpleAggregateFunction(any, LowCardinality(String)),
    agent_name           SimpleAggregateFunction(any, LowCardinality(String)),
    agent_version        SimpleAggregateFunction(any, LowCardinality(String)),
    start_time           SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_event_at        SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    events               SimpleAggregateFunction(sum, UInt64),
    max_seq              SimpleAggregateFunction(max, Int64),
    steps                SimpleAggregateFunction(max, Int32),
    llm_calls            SimpleAggregateFunction(sum, UInt64),
    llm_failures         SimpleAggregateFunction(sum, UInt64),
    input_tokens         SimpleAggregateFunction(sum, Int64),
    output_tokens        SimpleAggregateFunction(sum, Int64),
    cached_tokens        SimpleAggregateFunction(sum, Int64),
    llm_latency_ms       SimpleAggregateFunction(sum, Float64),
    models               AggregateFunction(groupUniqArray, String),
    tool_calls           AggregateFunction(groupArray,
                             Tuple(seq Int64, step Int32, tool String, latency_ms Float64,
                                   success Bool)),
    tool_failures        SimpleAggregateFunction(sum, UInt64),
    agent_messages       SimpleAggregateFunction(sum, UInt64),
    guard_events         SimpleAggregateFunction(sum, UInt64),
    terminal_transitions SimpleAggregateFunction(sum, UInt64),
    terminal             AggregateFunction(argMin,
                             Tuple(state String, ts DateTime64(6, 'UTC'), reason Nullable(String),
                                   error_type Nullable(String), error_detail Nullable(String)),
                             Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, task_id)
SETTINGS non_replicated_deduplication_window = 50000;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_runs_from_llm_calls TO task_runs_state AS
SELECT
    tenant, task_id,
    any(task_type) AS task_type, any(agent_name) AS agent_name,
    any(agent_version) AS agent_version,
    min(ts) AS start_time, max(ts) AS last_event_at,
    count() AS events, max(seq) AS max_seq, max(step) AS steps,
    count() AS llm_calls, countIf(NOT success) AS llm_failures,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(cached_tokens) AS cached_tokens, sum(latency_ms) AS llm_latency_ms,
    groupUniqArrayState(toString(model)) AS models
FROM llm_calls
GROUP BY tenant, task_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_runs_from_tool_spans TO task_runs_state AS
SELECT
    tenant, task_id,
    any(task_type) AS task_type, any(agent_name) AS agent_name,
    any(agent_version) AS agent_version,
    min(ts) AS start_time, max(ts) AS last_event_at,
    count() AS events, max(seq) AS max_seq, max(step) AS steps,
    groupArrayState(
        CAST((seq, step, toString(tool), latency_ms, success)
             AS Tuple(seq Int64, step Int32, tool String, latency_ms Float64, success Bool))
    ) AS tool_calls,
    countIf(NOT success) AS tool_failures
FROM tool_spans
GROUP BY tenant, task_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_runs_from_state_transitions TO task_runs_state AS
SELECT
    tenant, task_id,
    any(task_type) AS task_type, any(agent_name) AS agent_name,
    any(agent_version) AS agent_version,
    min(ts) AS start_time, max(ts) AS last_event_at,
    count() AS events, max(seq) AS max_seq, max(step) AS steps,
    countIf(to_state IN ('succeeded', 'failed', 'limit_exceeded', 'killed'))
        AS terminal_transitions,
    argMinStateIf(
        CAST((toString(to_state), ts, reason, CAST(error_type AS Nullable(String)), error_detail)
             AS Tuple(state String, ts DateTime64(6, 'UTC'), reason Nullable(String),
                      error_type Nullable(String), error_detail Nullable(String))),
        seq,
        to_state IN ('succeeded', 'failed', 'limit_exceeded', 'killed')
    ) AS terminal
FROM state_transitions
GROUP BY tenant, task_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_runs_from_agent_messages TO task_runs_state AS
SELECT
    tenant, task_id,
    any(task_type) AS task_type, any(agent_name) AS agent_name,
    any(agent_version) AS agent_version,
    min(ts) AS start_time, max(ts) AS last_event_at,
    count() AS events, max(seq) AS max_seq, max(step) AS steps,
    count() AS agent_messages
FROM agent_messages
GROUP BY tenant, task_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_runs_from_guard_events TO task_runs_state AS
SELECT
    tenant, task_id,
    any(task_type) AS task_type, any(agent_name) AS agent_name,
    any(agent_version) AS agent_version,
    min(ts) AS start_time, max(ts) AS last_event_at,
    count() AS events, max(seq) AS max_seq, max(step) AS steps,
    count() AS guard_events
FROM guard_events
GROUP BY tenant, task_id;

-- LLM usage per task, model and day (UTC), split by whether the agent reported a cost:
-- the input of cost at read time. A SummingMergeTree: any number of unmerged rows per key
-- sum to the same totals, and pricing is linear, so reads need no FINAL.
CREATE TABLE IF NOT EXISTS llm_usage_by_task
(
    tenant                          LowCardinality(String),
    task_id                         String,
    model                           LowCardinality(String),
    day                             Date,
    calls                           UInt64,
    reported_calls                  UInt64,
    reported_cost_usd               Float64,
    unreported_calls                UInt64,
    unreported_uncached_input_tokens Int64,
    unreported_cached_tokens        Int64,
    unreported_output_tokens        Int64
)
ENGINE = SummingMergeTree
ORDER BY (tenant, task_id, model, day)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS llm_usage_by_task_from_llm_calls TO llm_usage_by_task AS
SELECT
    tenant, task_id, toString(model) AS model, toDate(ts) AS day,
    count() AS calls,
    countIf(cost_usd IS NOT NULL) AS reported_calls,
    sum(ifNull(cost_usd, 0)) AS reported_cost_usd,
    countIf(cost_usd IS NULL) AS unreported_calls,
    sumIf(greatest(input_tokens - cached_tokens, 0), cost_usd IS NULL)
        AS unreported_uncached_input_tokens,
    sumIf(cached_tokens, cost_usd IS NULL) AS unreported_cached_tokens,
    sumIf(output_tokens, cost_usd IS NULL) AS unreported_output_tokens
FROM llm_calls
GROUP BY tenant, task_id, model, day;

-- Cost per task at the current prices. Filter on tenant/task_id to read an index range.
CREATE VIEW IF NOT EXISTS task_costs AS
SELECT
    u.tenant AS tenant,
    u.task_id AS task_id,
    sum(u.reported_cost_usd)
      + sum(if(p.priced = 1,
               (u.unreported_uncached_input_tokens * p.input_usd_per_mtok
                + u.unreported_cached_tokens * p.cached_usd_per_mtok
                + u.unreported_output_tokens * p.output_usd_per_mtok) / 1e6,
               0)) AS cost_usd,
    sum(if(p.priced = 1, 0, u.unreported_calls)) AS unpriced_calls
FROM llm_usage_by_task AS u
ASOF LEFT JOIN model_prices_current AS p
    ON u.model = p.model AND u.day >= p.effective_from
GROUP BY tenant, task_id;

-- The finalised record of each task, without cost (cheap to filter and list).
CREATE VIEW IF NOT EXISTS task_run_records AS
SELECT
    tenant,
    task_id,
    any(task_type) AS task_type,
    any(agent_name) AS agent_name,
    any(agent_version) AS agent_version,
    min(start_time) AS start_time,
    if(sum(terminal_transitions) > 0, argMinMerge(terminal).ts, NULL) AS end_time,
    max(last_event_at) AS last_event_at,
    max(steps) AS steps,
    sum(events) AS events,
    max(max_seq) AS max_seq,
    sum(llm_calls) AS llm_calls,
    sum(llm_failures) AS llm_failures,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_tokens) AS cached_tokens,
    sum(llm_latency_ms) AS llm_latency_ms,
    arraySort(groupUniqArrayMerge(models)) AS models,
    arraySort(t -> t.seq, groupArrayMerge(tool_calls)) AS tool_calls,
    sum(tool_failures) AS tool_failures,
    sum(agent_messages) AS agent_messages,
    sum(guard_events) AS guard_events,
    if(sum(terminal_transitions) > 0, argMinMerge(terminal).state, 'running') AS outcome,
    if(sum(terminal_transitions) > 0,
       multiIf(argMinMerge(terminal).error_type IS NOT NULL,
               concat(assumeNotNull(argMinMerge(terminal).error_type), ': ',
                      ifNull(argMinMerge(terminal).error_detail, '')),
               argMinMerge(terminal).state != 'succeeded', argMinMerge(terminal).reason,
               NULL),
       NULL) AS error,
    if(end_time IS NULL, NULL,
       dateDiff('microsecond', start_time, assumeNotNull(end_time)) / 1000.0) AS duration_ms
FROM task_runs_state
GROUP BY tenant, task_id;

-- The task-run record with its cost at the current prices.
CREATE VIEW IF NOT EXISTS task_runs AS
SELECT
    r.*,
    ifNull(c.cost_usd, 0) AS cost_usd,
    ifNull(c.unpriced_calls, 0) AS unpriced_calls
FROM task_run_records AS r
LEFT JOIN task_costs AS c USING (tenant, task_id);
