"""The task index that bounds replay reads: complete for events stored before it existed.

Replay reads each family table only within the tenant and time span task_index gives;
an event missing from the index would silently vanish from the replay. These tests
store events in a store migrated up to 0008, then apply 0009, and replay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agenttrail.query import locate_task, replay_task
from agenttrail.store import Store, discover, migrate, open_store

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
COLUMNS = ["tenant", "task_id", "task_type", "agent_name", "agent_version", "step", "seq",
           "ts", "event_type", "span_id"]  # fmt: skip


def insert(
    store: Store, table: str, family: str, rows: list[tuple[str, str, int, datetime]]
) -> None:
    values = [
        [tenant, task_id, "indexing", "agent", "1", 0, seq, ts, family, f"{task_id}-{seq}"]
        for tenant, task_id, seq, ts in rows
    ]
    store.insert_columns(
        table,
        COLUMNS,
        [list(c) for c in zip(*values, strict=True)],
        dedup_token=f"{table}:{rows[0][1]}:{rows[0][2]}",
    )


def test_events_stored_before_the_index_existed_are_replayed_and_later_ones_too(
    store_dir: Path,
) -> None:
    with open_store(data=store_dir) as store:
        migrate(store, [m for m in discover() if m.version <= 8])
        # Same id in two tenants; one task spans two days and two monthly partitions'
        # worth of ordering questions: seq 2 is hours later than seq 1.
        insert(
            store,
            "state_transitions",
            "state_transition",
            [("acme", "t-1", 0, T0), ("globex", "t-1", 0, T0 + timedelta(days=1))],
        )
        insert(store, "llm_calls", "llm_call", [("acme", "t-1", 1, T0 + timedelta(seconds=5))])
        insert(store, "tool_spans", "tool_span", [("acme", "t-1", 2, T0 + timedelta(hours=30))])
        migrate(store)  # applies 0009: its views and the backfill of what is stored
        insert(store, "guard_events", "guard_event",
               [("acme", "t-1", 3, T0 + timedelta(hours=31))])  # fmt: skip
        locations = {loc.tenant: loc for loc in locate_task(store, "t-1")}
        assert sorted(locations) == ["acme", "globex"]
        assert locations["acme"].first_ts == T0
        assert locations["acme"].last_ts == T0 + timedelta(hours=31)
        timeline = replay_task(store, "t-1")
        assert [(e.tenant, e.seq, e.family) for e in timeline] == [
            ("acme", 0, "state_transition"),
            ("acme", 1, "llm_call"),
            ("acme", 2, "tool_span"),
            ("acme", 3, "guard_event"),
            ("globex", 0, "state_transition"),
        ]
        assert [e.seq for e in replay_task(store, "t-1", tenant="globex")] == [0]
        migrate(store)  # nothing pending: the backfill is not run twice
        assert len(replay_task(store, "t-1")) == 5
