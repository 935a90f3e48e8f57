-- Exactly-once state of the consumer, one append-only row per batch and state
-- (the pattern of ClickHouse's Kafka Connect sink and its state store):
--   'before': the batch [first_offset, last_offset] of a partition is about to be inserted;
--   'after':  every table insert of that batch succeeded.
-- On (re)assignment the consumer reads the newest row of each partition: after 'before'
-- it re-forms exactly that range (so the retry carries the same deduplication tokens);
-- after 'after' it resumes at last_offset + 1. Rows expire after 90 days; an idle
-- partition then falls back to the offset committed in Kafka, which is never behind
-- an 'after' row by more than one batch.

CREATE TABLE IF NOT EXISTS ingest_ledger
(
    consumer_group   LowCardinality(String),
    topic            LowCardinality(String),
    kafka_partition  Int32,
    first_offset     Int64,
    last_offset      Int64,
    state            Enum8('before' = 1, 'after' = 2),
    events           UInt32,
    dead_letters     UInt32,
    consumer         String,
    written_at       DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (consumer_group, topic, kafka_partition, last_offset, state)
TTL toDateTime(written_at) + INTERVAL 90 DAY;
