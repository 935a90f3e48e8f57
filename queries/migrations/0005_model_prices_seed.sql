-- The shipped price list: providers' published standard-tier list prices, USD per
-- million tokens (input, output, cached input), as of 2025. Contracts, batch and
-- long-context tiers differ: override with `agenttrail prices load FILE`, whose rows
-- win over these (newer loaded_at) without changing this file.
--
-- Calls on a day before a model's first effective_from are unpriced (visible as
-- unpriced_calls); load older prices if you need to cost them.
--
-- A newer shipped list is a new numbered seed migration; this one never changes. The
-- NOT IN guard makes a re-run after a crash insert nothing twice.

INSERT INTO model_prices
    (model, effective_from, input_usd_per_mtok, output_usd_per_mtok, cached_usd_per_mtok, source)
SELECT model, effective_from, input, output, cached, 'shipped:0005'
FROM values(
    'model String, effective_from Date, input Float64, output Float64, cached Float64',
    ('gpt-4.1',          '2025-01-01',  2.00,  8.00, 0.50),
    ('gpt-4.1-mini',     '2025-01-01',  0.40,  1.60, 0.10),
    ('gpt-4.1-nano',     '2025-01-01',  0.10,  0.40, 0.025),
    ('gpt-4o',           '2025-01-01',  2.50, 10.00, 1.25),
    ('gpt-4o-mini',      '2025-01-01',  0.15,  0.60, 0.075),
    ('o3',               '2025-04-16', 10.00, 40.00, 2.50),
    ('o3',               '2025-06-10',  2.00,  8.00, 0.50),
    ('o4-mini',          '2025-04-16',  1.10,  4.40, 0.275),
    ('claude-sonnet-4',  '2025-01-01',  3.00, 15.00, 0.30),
    ('claude-opus-4',    '2025-01-01', 15.00, 75.00, 1.50),
    ('claude-3-5-haiku', '2025-01-01',  0.80,  4.00, 0.08),
    ('gemini-2.5-pro',   '2025-01-01',  1.25, 10.00, 0.31),
    ('gemini-2.5-flash', '2025-01-01',  0.30,  2.50, 0.075)
)
WHERE (model, effective_from) NOT IN (
    SELECT model, effective_from FROM model_prices WHERE source = 'shipped:0005'
);
