-- One append-only table per event family (agenttrail/store/_tables.py maps family → table).
-- Columns mirror the family's Avro fields (schemas/<family>/v1.avsc), then where the row
-- came from in Kafka and when it was stored. Big text is ZSTD-compressed; repetitive
-- strings are LowCardinality. A task's events sit together: ORDER BY (tenant, task_id, seq).
--
-- Exactly-once ingestion relies on non_replicated_deduplication_window: the consumer
-- tags each insert with insert_deduplication_token, and a retried insert is dropped.
--
-- Retention: rows expire 400 days after ts (whole monthly parts are dropped). To change
-- it, add a migration with ALTER TABLE … MODIFY TTL; LLM call logs must be kept at
-- least 30 days (the field note's checklist).
--
-- Statements end with a semicolon at the end of a line; each is idempotent.

CREATE TABLE IF NOT EXISTS llm_calls
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
    provider           LowCardinality(String),
    model              LowCardinality(String),
    model_version      LowCardinality(Nullable(String)),
    system_prompt_hash Nullable(String),
    prompt_version     LowCardinality(Nullable(String)),
    prompt_hash        String,
    messages_json      String CODEC(ZSTD(3)),
    message_count      Int32,
    params_json        String CODEC(ZSTD(3)),
    response_text      Nullable(String) CODEC(ZSTD(3)),
    response_json      Nullable(String) CODEC(ZSTD(3)),
    tool_calls_json    Nullable(String) CODEC(ZSTD(3)),
    finish_reason      LowCardinality(Nullable(String)),
    input_tokens       Int64,
    output_tokens      Int64,
    cached_tokens      Int64,
    context_window     Nullable(Int64),
    cost_usd           Nullable(Float64),
    latency_ms         Float64,
    ttft_ms            Nullable(Float64),
    success            Bool,
    error_type         LowCardinality(Nullable(String)),
    error_detail       Nullable(String) CODEC(ZSTD(3)),
    redactions         Array(String),
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

CREATE TABLE IF NOT EXISTS tool_spans
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
    tool               LowCardinality(String),
    tool_version       LowCardinality(Nullable(String)),
    args_json          String CODEC(ZSTD(3)),
    args_hash          String,
    idempotency_key    Nullable(String),
    attempt            Int32,
    side_effect        LowCardinality(String),
    declared           Bool,
    result_summary     Nullable(String) CODEC(ZSTD(3)),
    result_size        Int64,
    latency_ms         Float64,
    success            Bool,
    error_type         LowCardinality(Nullable(String)),
    error_detail       Nullable(String) CODEC(ZSTD(3)),
    redactions         Array(String),
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

-- The task boundary (a nested Avro record, set on a task's first transition only) is
-- flattened into boundary_* columns; has_boundary tells whether it was present.
CREATE TABLE IF NOT EXISTS state_transitions
(
    event_id                    UUID,
    event_type                  LowCardinality(String),
    schema_version              UInt16,
    tenant                      LowCardinality(String),
    task_id                     String,
    task_type                   LowCardinality(String),
    agent_name                  LowCardinality(String),
    agent_version               LowCardinality(String),
    trace_id                    String,
    span_id                     String,
    parent_span_id              Nullable(String),
    step                        Int32,
    seq                         Int64,
    ts                          DateTime64(6, 'UTC'),
    producer_id                 String,
    producer_seq                Int64,
    from_state                  LowCardinality(Nullable(String)),
    to_state                    LowCardinality(String),
    reason                      Nullable(String) CODEC(ZSTD(3)),
    error_type                  LowCardinality(Nullable(String)),
    error_detail                Nullable(String) CODEC(ZSTD(3)),
    has_boundary                Bool,
    boundary_entry_json         Nullable(String) CODEC(ZSTD(3)),
    boundary_exit_condition     Nullable(String),
    boundary_max_tokens         Nullable(Int64),
    boundary_max_steps          Nullable(Int32),
    boundary_max_wall_clock_s   Nullable(Float64),
    boundary_max_spend_usd      Nullable(Float64),
    boundary_side_effect_budget Array(String),
    boundary_escalation_path    Nullable(String),
    boundary_declared_tools     Array(String),
    prev_hash                   String,
    hash                        String,
    kafka_partition             Int32,
    kafka_offset                Int64,
    ingested_at                 DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, task_id, seq)
TTL toDateTime(ts) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS agent_messages
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
    message_id         String,
    in_reply_to        Nullable(String),
    sender             LowCardinality(String),
    recipient          LowCardinality(String),
    direction          LowCardinality(String),
    contract_name      LowCardinality(String),
    contract_version   LowCardinality(String),
    payload_json       String CODEC(ZSTD(3)),
    payload_size       Int64,
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

CREATE TABLE IF NOT EXISTS guard_events
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
    kind               LowCardinality(String),
    limit_name         LowCardinality(Nullable(String)),
    limit_value        Nullable(Float64),
    observed_value     Nullable(Float64),
    action             Nullable(String),
    decision           LowCardinality(Nullable(String)),
    decided_by         LowCardinality(Nullable(String)),
    detail             Nullable(String) CODEC(ZSTD(3)),
    original_hash      Nullable(String),
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
