-- Ledger rows name the broker/topic incarnation their offsets belong to (see
-- agenttrail/consumers/_incarnation.py): the embedded broker numbers offsets from 0
-- again after every start, while this table outlives it, so a consumer resumes only
-- from rows of the incarnation it reads now. Rows written before this migration keep
-- '' (the legacy incarnation) and are never used to resume a topic that has an id.

ALTER TABLE ingest_ledger ADD COLUMN IF NOT EXISTS incarnation LowCardinality(String) DEFAULT '' AFTER topic;
