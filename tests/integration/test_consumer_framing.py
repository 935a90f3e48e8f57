"""Bad input framed in a fetcher child (``_framing``): a message under the newest header
that the store's check refuses, one of an unknown schema, one oversize, a tombstone —
each ends as the same dead letter (offset, reason, raw bytes) as without fetchers, and
every good event around them is stored once. Real broker, real engine."""

from __future__ import annotations

from agenttrail.embedded import EmbeddedBroker
from agenttrail.store import Store
from tests.deadline import wait_until
from tests.integration.test_consumer_fencing import pipeline
from tests.integration.test_pipeline import (
    BAD_INPUT,
    config,
    produce_bad_input,
    stored_ids,
    stored_positions,
    table_counts,
)


def test_bad_input_framed_by_fetchers_is_dead_lettered_as_without_them(
    broker: EmbeddedBroker, topic: str, unique_group: str, store: Store
) -> None:
    produced, expected = produce_bad_input(broker.bootstrap, topic, 1)
    cfg = config(broker.bootstrap, topic, unique_group, max_payload_bytes=8192, fetchers=2)

    def letters() -> int:
        return int(store.query("SELECT count() FROM dead_letters")[0][0])

    with pipeline(cfg, store):
        wait_until(lambda: sum(table_counts(store).values()) >= produced.events
                   and letters() >= len(BAD_INPUT), timeout=90,
                   what="the good events and the dead letters stored")  # fmt: skip
    rows = store.query(
        "SELECT kafka_offset, reason, hex(raw), hex(message_key) FROM dead_letters "
        "WHERE kafka_partition = 1 ORDER BY kafka_offset"
    )
    assert [tuple(r[:3]) for r in rows] == expected
    assert {r[3] for r in rows} == {b"raw".hex().upper()}  # keys kept from the chunks
    assert letters() == len(BAD_INPUT)
    ids = stored_ids(store)
    assert set(ids) == set(produced.hashes) and set(ids.values()) == {1}
    # Every offset of the partition once: the good events and the dead letters.
    assert stored_positions(store) == {(1, o): 1 for o in range(produced.messages + len(BAD_INPUT))}
