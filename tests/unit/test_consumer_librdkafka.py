"""The fetcher children's client (``_librdkafka``): kafka-python settings carried to
librdkafka under their own names, nothing dropped silently, and a clear error or a
logged fallback when librdkafka cannot be used."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from agenttrail.consumers import ConsumerConfig, ConsumerError
from agenttrail.consumers import _librdkafka as lib
from agenttrail.consumers._librdkafka import FetcherClientUnusable, choose, librdkafka_settings


def test_settings_are_carried_under_librdkafka_names() -> None:
    out = librdkafka_settings({
        "bootstrap_servers": ["a:9092", "b:9093"],
        "client_id": "ingest-fetcher0",
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": 8 << 20,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
        "ssl_cafile": "/etc/ca.pem",
        "ssl_check_hostname": False,
        # The group member's own: not the child's.
        "group_id": None, "session_timeout_ms": 10_000, "enable_auto_commit": False,
    })  # fmt: skip
    assert out["bootstrap.servers"] == "a:9092,b:9093"
    assert out["client.id"] == "ingest-fetcher0"
    assert out["auto.offset.reset"] == "earliest"
    assert out["max.partition.fetch.bytes"] == 8 << 20
    assert (out["security.protocol"], out["sasl.mechanism"]) == ("SASL_SSL", "PLAIN")
    assert (out["sasl.username"], out["sasl.password"]) == ("u", "p")
    assert out["ssl.ca.location"] == "/etc/ca.pem"
    assert out["ssl.endpoint.identification.algorithm"] == "none"
    assert "session.timeout.ms" not in out and out["enable.auto.commit"] is False
    # librdkafka's 1 s refetch pause after a full prefetch queue would stall a child.
    assert out["fetch.queue.backoff.ms"] < 100


def test_a_setting_without_a_librdkafka_equivalent_is_named_not_dropped() -> None:
    with pytest.raises(FetcherClientUnusable, match="sasl_oauth_token_provider") as raised:
        librdkafka_settings({"bootstrap_servers": "a:9092", "sasl_oauth_token_provider": 1})
    assert isinstance(raised.value, ConsumerError)
    assert "fetcher_client='kafka-python'" in str(raised.value)


def test_auto_takes_librdkafka_when_it_can_and_kafka_python_when_a_setting_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = {"bootstrap_servers": ["127.0.0.1:1"], "group_id": "g"}
    assert choose("auto", plain) == "confluent-kafka"
    assert choose("kafka-python", plain) == "kafka-python"
    with caplog.at_level(logging.INFO, logger="agenttrail.consumers"):
        assert choose("auto", {**plain, "ssl_context": object()}) == "kafka-python"
    assert "ssl_context" in caplog.text
    with pytest.raises(FetcherClientUnusable, match="ssl_context"):
        choose("confluent-kafka", {**plain, "ssl_context": object()})


def test_a_configuration_librdkafka_refuses_is_an_error_when_asked_for_a_fallback_on_auto(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = {"bootstrap_servers": ["127.0.0.1:1"], "security_protocol": "CARRIER_PIGEON"}
    with pytest.raises(FetcherClientUnusable, match="librdkafka refused") as raised:
        choose("confluent-kafka", bad)
    assert "security.protocol" in str(raised.value)
    with caplog.at_level(logging.INFO, logger="agenttrail.consumers"):
        assert choose("auto", bad) == "kafka-python"
    assert "refused" in caplog.text


def test_without_confluent_kafka_auto_uses_kafka_python_and_asking_for_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lib, "confluent_kafka_available", lambda: False)
    plain = {"bootstrap_servers": ["127.0.0.1:1"]}
    assert choose("auto", plain) == "kafka-python"
    with pytest.raises(FetcherClientUnusable, match=r"agenttrail\[native\]"):
        choose("confluent-kafka", plain)


def test_the_client_is_configured_like_every_consumer_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ConsumerConfig().fetcher_client == "auto"
    monkeypatch.setenv("AGENTTRAIL_FETCHER_CLIENT", "kafka-python")
    assert ConsumerConfig().fetcher_client == "kafka-python"
    assert ConsumerConfig(fetcher_client="confluent-kafka").fetcher_client == "confluent-kafka"
    with pytest.raises(ValidationError, match="fetcher_client"):
        ConsumerConfig(fetcher_client="librdkafka")
