"""Consumer settings: constructor argument > environment (``AGENTTRAIL_*``) > default."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agenttrail.consumers._librdkafka import FetcherClient
from agenttrail.events import DEFAULT_MAX_PAYLOAD_BYTES, EVENTS_TOPIC


class ConsumerConfig(BaseSettings):
    """How the ingest consumer reads Kafka and batches into the store."""

    model_config = SettingsConfigDict(env_prefix="AGENTTRAIL_", extra="ignore")

    bootstrap: str = Field(
        default="127.0.0.1:9092",
        description="AGENTTRAIL_BOOTSTRAP: Kafka bootstrap servers, HOST:PORT[,HOST:PORT].",
    )
    topic: str = Field(default=EVENTS_TOPIC, description="AGENTTRAIL_TOPIC: topic to ingest.")
    schema_registry: str | None = Field(
        default=None,
        description="AGENTTRAIL_SCHEMA_REGISTRY: Schema Registry URL; schema ids are the "
        "registry's, unknown ones resolved through it (the packaged ids when unset).",
    )
    group: str = Field(
        default="agenttrail-ingest",
        description="AGENTTRAIL_GROUP: consumer group; processes in one group share partitions.",
    )
    batch_size: int = Field(
        default=20000,
        gt=0,
        description="AGENTTRAIL_BATCH_SIZE: a partition's batch is inserted at this many messages.",
    )
    min_batch_size: int = Field(
        default=2000,
        gt=0,
        description="AGENTTRAIL_MIN_BATCH_SIZE: while the writer has nothing to do, a "
        "partition's batch is inserted as soon as it has this many messages.",
    )
    batch_bytes: int = Field(
        default=16 * 1024 * 1024,
        gt=0,
        description="AGENTTRAIL_BATCH_BYTES: ... or at this many bytes of messages.",
    )
    batch_ms: int = Field(
        default=500,
        gt=0,
        description="AGENTTRAIL_BATCH_MS: ... or when its oldest message has waited this long.",
    )
    backoff_initial_s: float = Field(
        default=0.2, gt=0, description="First wait before retrying a failed insert."
    )
    backoff_max_s: float = Field(
        default=30.0, gt=0, description="Cap of the exponential backoff between insert retries."
    )
    max_payload_bytes: int = Field(
        default=DEFAULT_MAX_PAYLOAD_BYTES,
        gt=0,
        description="Larger messages are dead-lettered as oversize.",
    )
    max_buffered_batches: int = Field(
        default=2,
        gt=0,
        description="A partition is paused while this many batches' worth of messages wait.",
    )
    fetchers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="AGENTTRAIL_FETCHERS: child processes that fetch the partitions (each "
        "takes partition % N); 0 fetches in the consumer process.",
    )
    fetcher_client: FetcherClient = Field(
        default="auto",
        description="AGENTTRAIL_FETCHER_CLIENT: the fetcher processes' Kafka client: "
        "'confluent-kafka' (librdkafka, the [native] extra: parses in C, a fraction of the "
        "CPU per record), 'kafka-python', or 'auto' (librdkafka when installed and every "
        "kafka_options setting has a librdkafka equivalent).",
    )
    poll_timeout_ms: int = Field(default=100, gt=0, description="Longest wait of one poll.")
    stuck_join_s: float = Field(
        default=15.0,
        gt=0,
        description="AGENTTRAIL_STUCK_JOIN_S: a consumer revoked its partitions and given "
        "none for this long (and for at least three session timeouts) while the Kafka client "
        "says it is joined is taken for stuck in its group join and replaced by a new group "
        "member. Lower it to recover sooner; a join that takes longer than this is "
        "restarted, which costs a rebalance.",
    )
    store_decodes: bool = Field(
        default=True,
        description="AGENTTRAIL_STORE_DECODES: let the in-process store decode flat "
        "families' Avro (checked there first; anything failing a check is decoded here).",
    )
    migrate: bool = Field(
        default=True,
        description="AGENTTRAIL_MIGRATE: apply pending migrations at start; when false, "
        "refuse to start on an unmigrated store.",
    )
    kafka_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra kafka-python KafkaConsumer settings (e.g. session_timeout_ms, "
        "security_protocol); they override agenttrail's defaults.",
    )
