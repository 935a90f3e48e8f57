-- Messages the consumer could not decode or validate. Nothing is dropped: the raw bytes
-- are kept (String holds arbitrary bytes) with the reason (DecodeError.reason, or
-- invalid_record), the error message and where the message sat in Kafka.
-- Inserts carry insert_deduplication_token like the family tables, so a retried batch
-- does not store its dead letters twice.

CREATE TABLE IF NOT EXISTS dead_letters
(
    topic            LowCardinality(String),
    kafka_partition  Int32,
    kafka_offset     Int64,
    message_key      Nullable(String),
    reason           LowCardinality(String),
    error            String CODEC(ZSTD(3)),
    raw              String CODEC(ZSTD(3)),
    raw_size         Int64,
    kafka_timestamp  Nullable(DateTime64(3, 'UTC')),
    first_seen       DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(first_seen)
ORDER BY (topic, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 10000;
