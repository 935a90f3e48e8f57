"""Copies an at-least-once producer resends never reach the tables (issue 9 item 5).

The resent copies are byte-identical (same event_id, same (task_id, seq), same hash)
at new offsets, so the offset-based deduplication tokens cannot catch them; the
consumer drops them and counts them. Ground truth: the ids this test produced.
"""

from __future__ import annotations

import pytest

from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.embedded import EmbeddedBroker
from agenttrail.store import Store
from tests.deadline import wait_until
from tests.integration.test_pipeline import (
    Produced,
    config,
    make_events,
    produce,
    running,
    stored_ids,
)


@pytest.mark.parametrize("store_decodes", [False, True], ids=["python", "store"])
def test_resent_copies_are_dropped_and_counted_and_each_event_is_stored_once(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store, store_decodes: bool
) -> None:
    events = make_events(tasks=6, per_task=10, prefix="resend")
    produced = produce(broker.bootstrap, topic, events)
    produce(broker.bootstrap, topic, events)  # resent before anything was stored
    cfg = config(broker.bootstrap, topic, unique_group, store_decodes=store_decodes)
    with running(cfg, store) as stats:
        wait_until(lambda: stats.snapshot().lag == 0 and stats.snapshot().events_total
                   >= produced.events, timeout=60, what="the first round stored")  # fmt: skip
        produce(broker.bootstrap, topic, events[:25])  # resent after they were stored
        wait_until(lambda: stats.snapshot().duplicates_dropped >= produced.events + 25
                   and stats.snapshot().lag == 0, timeout=60,
                   what="every copy dropped")  # fmt: skip
        final = stats.snapshot()
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes) and set(ids.values()) == {1}
    assert final.duplicates_dropped == produced.events + 25
    assert final.events_total == produced.events
    assert store.query("SELECT count() FROM dead_letters")[0][0] == 0


def test_a_different_event_on_the_same_task_and_seq_is_not_a_copy(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    one = sample_record("tool_span", task_id="shared-task", seq=0)
    other = sample_record("tool_span", task_id="shared-task", seq=0)  # a new event_id
    produced = Produced()
    produce(broker.bootstrap, topic, [("shared-task", one, sealed(one))], produced)
    produce(broker.bootstrap, topic, [("shared-task", other, sealed(other))], produced)
    with running(config(broker.bootstrap, topic, unique_group), store) as stats:
        wait_until(lambda: stats.snapshot().events_total >= 2, what="both events stored")
        assert stats.snapshot().duplicates_dropped == 0
    assert set(stored_ids(store)) == {str(one["event_id"]), str(other["event_id"])}
