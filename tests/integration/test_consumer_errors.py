"""The consumers' errors keep their meaning (issue 8 item 3): a broker that cannot be
reached is a :class:`BrokerUnavailable` (root :class:`ConsumerError`) naming the
bootstrap servers and what to do, with kafka-python's error as its cause."""

from __future__ import annotations

import socket
import threading

import pytest
from kafka.errors import KafkaError

from agenttrail.consumers import (
    BrokerUnavailable,
    ConsumerConfig,
    ConsumerError,
    IngestPipeline,
    InvalidRecord,
    PartitionFenced,
)
from agenttrail.store import Store


def _dead_bootstrap() -> str:
    # A port taken and released: nothing listens there for the test's duration.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_an_unreachable_broker_is_a_consumer_error_that_names_it(store: Store) -> None:
    bootstrap = _dead_bootstrap()
    config = ConsumerConfig(
        bootstrap=bootstrap, topic="t", group="g", kafka_options={"bootstrap_timeout_ms": 3000}
    )
    pipeline = IngestPipeline(config, store)
    with pytest.raises(BrokerUnavailable) as caught:
        pipeline.run(threading.Event())
    assert isinstance(caught.value, ConsumerError)
    assert caught.value.bootstrap == bootstrap
    assert bootstrap in str(caught.value) and "--bootstrap" in str(caught.value)
    assert isinstance(caught.value.__cause__, KafkaError)


def test_every_error_of_the_package_has_one_root() -> None:
    for error in (BrokerUnavailable, InvalidRecord, PartitionFenced):
        assert issubclass(error, ConsumerError)
