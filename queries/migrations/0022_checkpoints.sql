-- Producer checkpoints (schemas/checkpoint/v1.avsc): how many events each producer had
-- sealed, and the chain head of every task that moved since its previous checkpoint.
-- `agenttrail verify` reconciles the event tables against them (produced, stored,
-- missing, dead-lettered) and checks each named head is still stored; with a public key
-- it also checks their Ed25519 signatures. Append-only like every event table; a
-- producer's checkpoints are one chain (task_id checkpoint:<producer_id>, seq 0, 1, 2…).
-- The head_* arrays are parallel, one entry per task. The TTL is the policy's
-- (AGENTTRAIL_RETENTION_CHECKPOINTS_DAYS), rendered by `agenttrail migrate`.

CREATE TABLE IF NOT EXISTS checkpoints
(
    event_id           UUID,
    event_type         LowCardinality(String),
    schema_version     UInt16,
    tenant             LowCardinality(String),
    task_id            String,
    task_type          LowCardinality(String),
    agent_name         LowCardinality(String),
    agent_version      LowCardinality(String),
    trace_id           String,
    span_id            String,
    parent_span_id     Nullable(String),
    step               Int32,
    seq                Int64,
    ts                 DateTime64(6, 'UTC'),
    producer_id        String,
    producer_seq       Int64,
    final              Bool,
    interval_s         Float64,
    head_tenants       Array(String),
    head_task_ids      Array(String) CODEC(ZSTD(3)),
    head_task_types    Array(String),
    head_seqs          Array(Int64),
    head_hashes        Array(String) CODEC(ZSTD(3)),
    head_ts            Array(Int64),
    head_closed        Array(Bool),
    key_id             LowCardinality(Nullable(String)),
    signature          Nullable(String),
    prev_hash          String,
    hash               String,
    kafka_partition    Int32,
    kafka_offset       Int64,
    ingested_at        DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, task_id, seq)
TTL toDateTime(ts) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;
