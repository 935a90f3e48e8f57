-- Model prices and per-call cost.
--
-- model_prices holds USD per million tokens (input, output, cached input) of a model,
-- effective from a date (UTC). It is append-only like everything else: the shipped list
-- is a seed migration (0005), `agenttrail prices load FILE` appends the user's rows.
-- For one (model, effective_from) the row with the newest loaded_at wins; for a call on
-- day D the price is the winning row with the greatest effective_from <= D (an ASOF
-- join). A model without such a row is "unpriced": its calls count in unpriced_calls
-- and add nothing to cost_usd, so a missing price is visible, never a silent zero.
--
-- Cost of one LLM call:
--   * the agent's own cost_usd when it reported one (the provider's bill is the truth);
--   * otherwise ( max(input_tokens - cached_tokens, 0) * input_usd_per_mtok
--               + cached_tokens * cached_usd_per_mtok
--               + output_tokens * output_usd_per_mtok ) / 1e6,
--     i.e. cached tokens are the part of the prompt tokens served from the cache
--     (OpenAI's convention; the SDK documents input_tokens as the prompt tokens billed).
--
-- Recomputation: costs are never stored. The derived tables (0006, 0007) keep the
-- agents' reported cost and, for calls without one, the token sums per model and day;
-- every read prices those sums with the current winners of model_prices. Loading a new
-- price therefore changes every cost it applies to at the next query, and no raw row —
-- nor any derived row — is rewritten.

CREATE TABLE IF NOT EXISTS model_prices
(
    model                LowCardinality(String),
    effective_from       Date,
    input_usd_per_mtok   Float64,
    output_usd_per_mtok  Float64,
    cached_usd_per_mtok  Float64,
    source               String,
    loaded_at            DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (model, effective_from, loaded_at);

-- The winning row of each (model, effective_from). priced = 1 tells a matched ASOF join
-- row from the defaults an unmatched one gets.
CREATE VIEW IF NOT EXISTS model_prices_current AS
SELECT
    model,
    effective_from,
    winner.1 AS input_usd_per_mtok,
    winner.2 AS output_usd_per_mtok,
    winner.3 AS cached_usd_per_mtok,
    winner.4 AS source,
    last_loaded_at AS loaded_at,
    toUInt8(1) AS priced
FROM
(
    SELECT
        model,
        effective_from,
        argMax((input_usd_per_mtok, output_usd_per_mtok, cached_usd_per_mtok, source),
               loaded_at) AS winner,
        max(loaded_at) AS last_loaded_at
    FROM model_prices
    GROUP BY model, effective_from
);

-- Every LLM call with its cost and where the cost came from: 'agent' (reported),
-- 'price' (computed from model_prices at the call's day), 'unpriced' (neither; cost NULL).
-- Filter on tenant/task_id to read an index range of llm_calls.
CREATE VIEW IF NOT EXISTS llm_call_costs AS
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
        p.priced = 1, (greatest(c.input_tokens - c.cached_tokens, 0) * p.input_usd_per_mtok
                       + c.cached_tokens * p.cached_usd_per_mtok
                       + c.output_tokens * p.output_usd_per_mtok) / 1e6,
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
