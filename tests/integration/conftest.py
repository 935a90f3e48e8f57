"""Shared integration fixtures: one real embedded broker per test session.

The broker is started by ``EmbeddedBroker.start()``, the same call ``agenttrail broker``
makes, so these tests exercise what users run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from agenttrail.embedded import EmbeddedBroker, embedded_consumer_config
from agenttrail.store import Store, migrate, open_store

BROKER_PARTITIONS = 4
"""Partitions of the events topic on the session broker (tests compare against it)."""


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A Tansu broker on a free loopback port with agenttrail's topics; stopped at session end.

    Its log is kept in the session's temporary directory for post-mortems.
    """
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    embedded = EmbeddedBroker(port=0, partitions=BROKER_PARTITIONS, log_path=log_path)
    with embedded.start(timeout=30.0):
        yield embedded


@pytest.fixture
def unique_group(request: pytest.FixtureRequest) -> str:
    """A consumer group id no other test uses, so committed offsets never leak between tests."""
    return f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:12]}"


# --- Store and ingest fixtures (backend pipeline) ------------------------------------

INGEST_KAFKA_OPTIONS = {
    **embedded_consumer_config(),
    # Shorter than the embedded default so a group forms in ~1.5 s and a killed member
    # is noticed quickly; still several heartbeats per session on a loaded CI machine.
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 500,
}
"""kafka-python settings of the ingest consumers started by integration tests."""


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A data directory of this test only; the in-process store lives in DIR/clickhouse."""
    return tmp_path / "data"


@pytest.fixture
def store(store_dir: Path) -> Iterator[Store]:
    """A migrated in-process store of this test only, closed afterwards.

    chdb hosts one store directory per process, so a test must close it (this fixture
    does) before another test's store can open.
    """
    opened = open_store(data=store_dir)
    try:
        migrate(opened)
        yield opened
    finally:
        opened.close()


@pytest.fixture
def topic(broker: EmbeddedBroker, request: pytest.FixtureRequest) -> str:
    """A fresh 4-partition topic of this test only, so no other test's events leak in."""
    name = f"events-{request.node.name[:30]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace(
        "]", ""
    )
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name, BROKER_PARTITIONS, 1)])
        admin.wait_for_topics([name], timeout_ms=30_000)
    finally:
        admin.close()
    return name


KAFKA_CLIENTS = ["kafka-python", "confluent-kafka"]
"""The SDK's Kafka clients (``kafka_client`` setting); SDK tests run against each."""


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every Recorder of the test, and of the agent processes it starts (they inherit
    the environment), delivers with this client: ``AGENTTRAIL_KAFKA_CLIENT``."""
    client: str = request.param
    if client == "confluent-kafka":
        pytest.importorskip("confluent_kafka", reason="pip install 'agenttrail[native]'")
    monkeypatch.setenv("AGENTTRAIL_KAFKA_CLIENT", client)
    return client


@pytest.fixture(params=["confluent-kafka", "kafka-python"])
def fetcher_client(request: pytest.FixtureRequest) -> str:
    """The Kafka client of the fetcher processes: their guarantees are checked with both."""
    return str(request.param)
