"""The stuck group join, forced: kafka-python 3.0.12 sometimes takes the SyncGroup answer,
marks itself joined (``need_rejoin()`` False) and never applies the assignment, so the
consumer holds no partition for good while the group thinks it holds them all. Here the
real client's coordinator, against the real embedded broker, drops exactly one
assignment; the pipeline must see the state, replace the consumer with a new group
member, and store every event once (counted from what the test produced)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agenttrail.consumers._fetchers import FetcherPool
from agenttrail.embedded import EmbeddedBroker
from agenttrail.store import Store
from tests.deadline import wait_until
from tests.integration.conftest import BROKER_PARTITIONS
from tests.integration.test_consumer_fencing import pipeline
from tests.integration.test_consumer_fetchers import assert_exactly_once, everything_stored
from tests.integration.test_pipeline import config, make_events, produce


def group_member(consumer: Any) -> Any:
    """The KafkaConsumer that is the group member (a fetcher pool's own one)."""
    return consumer._group if isinstance(consumer, FetcherPool) else consumer


def drop_next_assignment(member: Any) -> threading.Event:
    """Make the member's coordinator take the next SyncGroup answer without applying it
    (what kafka-python does in the bug); later joins are left alone."""
    coordinator = member._coordinator
    real = coordinator._on_join_complete_async
    dropped = threading.Event()

    async def on_join_complete(*args: Any, **kwargs: Any) -> None:
        if not dropped.is_set():
            dropped.set()
            return None
        return await real(*args, **kwargs)

    coordinator._on_join_complete_async = on_join_complete
    return dropped


@pytest.mark.parametrize("fetchers", [0, 2])
def test_a_join_that_never_applies_its_assignment_is_replaced_and_nothing_is_lost(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store, fetchers: int
) -> None:
    produced = produce(broker.bootstrap, topic, make_events(6, 10, prefix="before"))
    cfg = config(broker.bootstrap, topic, unique_group, fetchers=fetchers, stuck_join_s=1.0)
    with pipeline(cfg, store) as p:
        wait_until(lambda: everything_stored(store, produced) and p.stats.snapshot().lag == 0,
                   timeout=90, what="the first events stored")  # fmt: skip
        stuck = p._consumer
        member = group_member(stuck)
        dropped = drop_next_assignment(member)
        member._coordinator.request_rejoin()  # a rebalance, as a broker restart causes
        wait_until(dropped.is_set, timeout=30, what="the assignment dropped")
        # The stuck state itself: revoked, never assigned again, and a client that
        # says it needs no rejoin (its subscription may still list the old partitions).
        wait_until(lambda: p.stats.snapshot().partitions == (), timeout=30,
                   what="the partitions revoked")  # fmt: skip
        assert not member._coordinator.need_rejoin()
        failures = p.stats.snapshot().broker_failures
        produce(broker.bootstrap, topic, make_events(6, 10, prefix="after"), produced)
        # Recovery: a new group member takes every partition and stores what came since.
        wait_until(lambda: p._consumer is not stuck, timeout=90,
                   what="the stuck consumer replaced")  # fmt: skip
        wait_until(lambda: everything_stored(store, produced) and p.stats.snapshot().lag == 0,
                   timeout=90, what="the later events stored")  # fmt: skip
        snapshot = p.stats.snapshot()
        assert set(snapshot.partitions) == set(range(BROKER_PARTITIONS))
        assert snapshot.broker_failures == failures + 1
        assert "group join stuck" in (snapshot.last_broker_error or "")
    assert_exactly_once(store, produced)
