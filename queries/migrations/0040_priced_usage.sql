-- One definition of what LLM usage costs at a price: the function agenttrail_priced_cost.
--
-- Until now the formula (uncached input, cached and output tokens, each times its price
-- per million tokens) was written out in 0004 (llm_call_costs), 0006 (task_costs),
-- 0007 (llm_metrics) and agenttrail/query/_metrics.py. Applied migrations are immutable,
-- so this one redefines those views on the function; the query code calls it too, and
-- tests/unit/test_single_source.py fails if the formula is written anywhere else.
--
--   agenttrail_priced_cost(uncached_input_tokens, cached_tokens, output_tokens,
--                          input_usd_per_mtok, cached_usd_per_mtok, output_usd_per_mtok)
--     = (uncached_input_tokens * input_usd_per_mtok + cached_tokens * cached_usd_per_mtok
--        + output_tokens * output_usd_per_mtok) / 1e6
--
-- Uncached input is greatest(input_tokens - cached_tokens, 0): the materialized views of
-- 0006 and 0007 store it that way already (changing a materialized view means dropping it,
-- and inserts made in between would be lost, so they stay as they are).
--
-- A ClickHouse SQL function belongs to the server, not to a database: every agenttrail
-- database on one server shares it, which is why its name is prefixed and why a changed
-- formula must get a new name in a new migration. On a server, the migrating user needs
-- the CREATE FUNCTION privilege.

CREATE FUNCTION IF NOT EXISTS agenttrail_priced_cost AS
    (x_uncached_in, x_cached_in, x_out, x_in_price, x_cached_price, x_out_price) ->
    (x_uncached_in * x_in_price + x_cached_in * x_cached_price + x_out * x_out_price) / 1e6;

CREATE OR REPLACE VIEW llm_call_costs AS
SELECT
    c.tenant AS tenant,
    c.task_id AS task_id,
    c.seq AS seq,
    c.step AS step,
    c.ts AS ts,
    c.model AS model,
    c.input_tokens AS input_tokens,
    c.output_tokens AS output_tokens,
    c.cached_tokens AS cached_tokens,
    c.cost_usd AS reported_cost_usd,
    multiIf(
        c.cost_usd IS NOT NULL, c.cost_usd,
        p.priced = 1, agenttrail_priced_cost(greatest(c.input_tokens - c.cached_tokens, 0),
                                             c.cached_tokens, c.output_tokens,
                                             p.input_usd_per_mtok, p.cached_usd_per_mtok,
                                             p.output_usd_per_mtok),
        NULL) AS cost_usd,
    multiIf(c.cost_usd IS NOT NULL, 'agent', p.priced = 1, 'price', 'unpriced') AS cost_source,
    if(c.cost_usd IS NULL AND p.priced = 1, p.effective_from, NULL) AS price_effective_from
FROM
(
    SELECT tenant, task_id, seq, step, ts, toDate(ts) AS day, toString(model) AS model,
           input_tokens, output_tokens, cached_tokens, cost_usd
    FROM llm_calls
) AS c
ASOF LEFT JOIN model_prices_current AS p
    ON c.model = p.model AND c.day >= p.effective_from;

CREATE OR REPLACE VIEW task_costs AS
SELECT
    u.tenant AS tenant,
    u.task_id AS task_id,
    sum(u.reported_cost_usd)
      + sum(if(p.priced = 1,
               agenttrail_priced_cost(u.unreported_uncached_input_tokens,
                                      u.unreported_cached_tokens, u.unreported_output_tokens,
                                      p.input_usd_per_mtok, p.cached_usd_per_mtok,
                                      p.output_usd_per_mtok),
               0)) AS cost_usd,
    sum(if(p.priced = 1, 0, u.unreported_calls)) AS unpriced_calls
FROM llm_usage_by_task AS u
ASOF LEFT JOIN model_prices_current AS p
    ON u.model = p.model AND u.day >= p.effective_from
GROUP BY tenant, task_id;

CREATE OR REPLACE VIEW llm_metrics AS
SELECT
    m.tenant AS tenant, m.task_type AS task_type, m.agent_name AS agent_name,
    m.agent_version AS agent_version, m.model AS model, m.hour AS hour,
    m.calls AS calls, m.failures AS failures,
    m.input_tokens AS input_tokens, m.output_tokens AS output_tokens,
    m.cached_tokens AS cached_tokens,
    m.reported_cost_usd + if(p.priced = 1,
        agenttrail_priced_cost(m.unreported_uncached_input_tokens, m.unreported_cached_tokens,
                               m.unreported_output_tokens, p.input_usd_per_mtok,
                               p.cached_usd_per_mtok, p.output_usd_per_mtok), 0) AS cost_usd,
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
