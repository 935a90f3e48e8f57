-- Fencing of consumers that lost their partitions (issue 8 item 7).
--
-- When a consumer is assigned a partition it appends a claim here BEFORE it reads the
-- ledger; before every insert it appends the batch's 'before' ledger row and THEN checks
-- that the newest claim of the partition is still its own. A zombie (frozen past its
-- session timeout, its partition given to another consumer) therefore either checked
-- before the new owner's claim, so its 'before' row was already there when the new
-- owner read the ledger and the new owner redoes exactly that range with the same
-- deduplication tokens; or it checked after, saw the newer claim, and writes nothing.
-- claimed_at is the server's clock (one order for every consumer process of the store).
-- Ledger rows carry the claimed_at of their writer's claim, so rows of a newer claim win
-- over anything an older claim's zombie appended later.

CREATE TABLE IF NOT EXISTS ingest_claims
(
    consumer_group   LowCardinality(String),
    topic            LowCardinality(String),
    incarnation      LowCardinality(String),
    kafka_partition  Int32,
    claim            String,
    consumer         String,
    claimed_at       DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (consumer_group, topic, incarnation, kafka_partition, claimed_at)
TTL toDateTime(claimed_at) + INTERVAL 90 DAY;

ALTER TABLE ingest_ledger ADD COLUMN IF NOT EXISTS claimed_at DateTime64(6, 'UTC') DEFAULT toDateTime64(0, 6, 'UTC') AFTER consumer;
