"""The optional Kafka clients an installation has, for the SDK and the consumers alike."""

from __future__ import annotations


def confluent_kafka_available() -> bool:
    """True when confluent-kafka (librdkafka, the ``[native]`` extra) can be imported."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True
