"""Shared integration fixtures: one real embedded broker per test session.

The broker is started by ``EmbeddedBroker.start()``, the same call ``agenttrail broker``
makes, so these tests exercise what users run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from agenttrail.embedded import EmbeddedBroker

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
