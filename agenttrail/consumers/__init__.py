"""Kafka → ClickHouse ingestion: decode → validate → batch → insert → commit.

Exactly-once in effect: each partition's batch is recorded in the offset ledger before
it is inserted, every insert carries a deduplication token derived from the batch's
offset range, and offsets are committed only afterwards. Bad input is dead-lettered;
a failing store is retried, never dead-lettered.

Example:
    >>> stop = threading.Event()                                  # doctest: +SKIP
    >>> stats = IngestStats()
    >>> t = threading.Thread(target=run_consumer, args=(ConsumerConfig(), stop),
    ...                      kwargs={"stats": stats}, daemon=True)
    >>> t.start(); ...; print(stats.snapshot().events_total); stop.set(); t.join()
"""

from agenttrail.consumers._backoff import Backoff
from agenttrail.consumers._batch import Batch, PartitionBuffer
from agenttrail.consumers._columns import DEAD_LETTER_COLUMNS, DeadLetter, TableLayout, layout_for
from agenttrail.consumers._config import ConsumerConfig
from agenttrail.consumers._decode import (
    BatchDecoder,
    Decoder,
    PreparedBatch,
    PythonDecoder,
    StoreDecoder,
    TableInsert,
)
from agenttrail.consumers._errors import BrokerRefused, BrokerUnavailable, ConsumerError
from agenttrail.consumers._ledger import LedgerEntry, OffsetLedger, PartitionFenced
from agenttrail.consumers._pipeline import IngestPipeline
from agenttrail.consumers._run import prepare_store, run_consumer
from agenttrail.consumers._stats import Backlog, IngestSnapshot, IngestStats
from agenttrail.consumers._validate import InvalidRecord, validate_record
from agenttrail.consumers._writer import BatchWriter

__all__ = [
    "DEAD_LETTER_COLUMNS",
    "Backlog",
    "Backoff",
    "Batch",
    "BatchDecoder",
    "BatchWriter",
    "BrokerRefused",
    "BrokerUnavailable",
    "ConsumerConfig",
    "ConsumerError",
    "DeadLetter",
    "Decoder",
    "IngestPipeline",
    "IngestSnapshot",
    "IngestStats",
    "InvalidRecord",
    "LedgerEntry",
    "OffsetLedger",
    "PartitionBuffer",
    "PartitionFenced",
    "PreparedBatch",
    "PythonDecoder",
    "StoreDecoder",
    "TableInsert",
    "TableLayout",
    "layout_for",
    "prepare_store",
    "run_consumer",
    "validate_record",
]
