"""The fetcher children's Kafka client: kafka-python, or librdkafka (confluent-kafka).

The consumer is configured in kafka-python's terms (``kafka_settings``, ``kafka_options``).
A child that fetches with librdkafka gets the same settings in librdkafka's names
(:func:`librdkafka_settings`); a setting with no librdkafka equivalent is never dropped
silently: ``fetcher_client="auto"`` then fetches with kafka-python and logs which
setting decided it, and ``"confluent-kafka"`` refuses to start and names it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from agenttrail.consumers._errors import ConsumerError
from agenttrail.events._clients import confluent_kafka_available

log = logging.getLogger("agenttrail.consumers")

FetcherClient = Literal["auto", "kafka-python", "confluent-kafka"]


class FetcherClientUnusable(ConsumerError):
    """``fetcher_client="confluent-kafka"`` was asked for and cannot be used."""


def _servers(value: Any) -> str:
    return value if isinstance(value, str) else ",".join(value)


def _hostname_check(value: Any) -> str:
    return "https" if value else "none"


# kafka-python name → (librdkafka name, conversion). Only settings that mean the same.
_SAME: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "bootstrap_servers": ("bootstrap.servers", _servers),
    "client_id": ("client.id", str),
    "auto_offset_reset": ("auto.offset.reset", str),
    "max_partition_fetch_bytes": ("max.partition.fetch.bytes", int),
    "fetch_max_bytes": ("fetch.max.bytes", int),
    "fetch_min_bytes": ("fetch.min.bytes", int),
    "fetch_max_wait_ms": ("fetch.wait.max.ms", int),
    "isolation_level": ("isolation.level", str),
    "check_crcs": ("check.crcs", bool),
    "reconnect_backoff_ms": ("reconnect.backoff.ms", int),
    "reconnect_backoff_max_ms": ("reconnect.backoff.max.ms", int),
    "retry_backoff_ms": ("retry.backoff.ms", int),
    "metadata_max_age_ms": ("metadata.max.age.ms", int),
    "connections_max_idle_ms": ("connections.max.idle.ms", int),
    "receive_buffer_bytes": ("socket.receive.buffer.bytes", int),
    "send_buffer_bytes": ("socket.send.buffer.bytes", int),
    "security_protocol": ("security.protocol", str),
    "sasl_mechanism": ("sasl.mechanism", str),
    "sasl_plain_username": ("sasl.username", str),
    "sasl_plain_password": ("sasl.password", str),
    "ssl_cafile": ("ssl.ca.location", str),
    "ssl_certfile": ("ssl.certificate.location", str),
    "ssl_keyfile": ("ssl.key.location", str),
    "ssl_password": ("ssl.key.password", str),
    "ssl_crlfile": ("ssl.crl.location", str),
    "ssl_check_hostname": ("ssl.endpoint.identification.algorithm", _hostname_check),
}

# Settings of the group member or of kafka-python's own machinery: a child is no group
# member, commits nothing and has librdkafka's own timeouts.
_GROUP_ONLY = frozenset({
    "group_id", "group_instance_id", "session_timeout_ms", "heartbeat_interval_ms",
    "max_poll_interval_ms", "max_poll_records", "enable_auto_commit",
    "auto_commit_interval_ms", "partition_assignment_strategy", "leave_group_on_close",
    "default_offset_commit_callback", "exclude_internal_topics", "consumer_timeout_ms",
    "api_version", "api_version_auto_timeout_ms", "bootstrap_timeout_ms",
    "request_timeout_ms", "retry_backoff_max_ms",
})  # fmt: skip

_CHILD_DEFAULTS: dict[str, Any] = {
    # Never used for a join (the child only assigns) but required by the client.
    "group.id": "agenttrail-fetcher",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    # librdkafka waits this long before fetching again for a partition whose prefetch
    # queue was full; its default (1 s) stalls a child that drains faster than that.
    "fetch.queue.backoff.ms": 10,
    # Prefetch bound per child (librdkafka's default is 64 MB).
    "queued.max.messages.kbytes": 32 * 1024,
    "log.connection.close": False,
}


def untranslatable(settings: dict[str, Any]) -> list[str]:
    """Settings that have no librdkafka equivalent (and are not the group member's only)."""
    return sorted(k for k in settings if k not in _SAME and k not in _GROUP_ONLY)


def librdkafka_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A fetcher child's librdkafka configuration for these kafka-python settings.

    Raises:
        FetcherClientUnusable: a setting has no librdkafka equivalent.
    """
    missing = untranslatable(settings)
    if missing:
        raise FetcherClientUnusable(
            f"fetcher_client='confluent-kafka' cannot carry the Kafka setting(s) "
            f"{', '.join(missing)} (no librdkafka equivalent). Remove them from "
            "kafka_options, or use fetcher_client='kafka-python' (--fetcher-client)."
        )
    out = dict(_CHILD_DEFAULTS)
    for key, value in settings.items():
        if key in _SAME and value is not None:
            name, convert = _SAME[key]
            out[name] = convert(value)
    return out


def choose(requested: FetcherClient, settings: dict[str, Any]) -> str:
    """The client the fetcher children use.

    ``auto`` takes librdkafka when confluent-kafka is installed and every setting
    translates, else kafka-python (logging why).

    Raises:
        FetcherClientUnusable: ``confluent-kafka`` was asked for and is not installed, a
            setting does not translate, or librdkafka refuses the configuration.
    """
    if requested == "kafka-python":
        return requested
    if not confluent_kafka_available():
        if requested == "confluent-kafka":
            raise FetcherClientUnusable(
                "fetcher_client='confluent-kafka' needs the confluent-kafka package: "
                "pip install 'agenttrail[native]', or use fetcher_client='kafka-python'."
            )
        return "kafka-python"
    missing = untranslatable(settings)
    if missing and requested == "auto":
        log.info("fetcher processes use kafka-python: the setting(s) %s have no librdkafka "
                 "equivalent", ", ".join(missing))  # fmt: skip
        return "kafka-python"
    try:
        _refused(librdkafka_settings(settings))
    except FetcherClientUnusable as exc:
        if requested == "confluent-kafka":
            raise
        log.info("fetcher processes use kafka-python: %s", exc)
        return "kafka-python"
    return "confluent-kafka"


def _refused(config: dict[str, Any]) -> None:
    """Raise if librdkafka refuses the configuration (it connects to nothing here)."""
    from confluent_kafka import Consumer, KafkaException

    try:
        Consumer(config).close()
    except (KafkaException, ValueError, TypeError) as exc:
        raise FetcherClientUnusable(
            f"librdkafka refused the fetcher configuration: {exc}. Fix kafka_options, or "
            "use fetcher_client='kafka-python' (--fetcher-client)."
        ) from exc
