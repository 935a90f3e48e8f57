"""Retention from settings, the 30-day floor, events that arrive already old, legal holds.

TTL is exercised for real: rows are stored with old timestamps (and, where the test
needs it, an old arrival time), ``OPTIMIZE … FINAL`` makes the engine apply the TTL
now, and the test counts what is left against what it stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.query import get_run, replay_task
from agenttrail.store import (
    RetentionConfig,
    RetentionError,
    Store,
    apply_retention,
    load_retention,
    place_hold,
    policy_in_force,
    release_hold,
)
from tests.integration.test_verify import make_task, store_events


def _age(records: list[dict], days: int) -> list[dict]:
    """The records as if they happened ``days`` ago (resealed, so they stay a valid chain)."""
    from agenttrail.events import default_registry, seal

    prev = ""
    for r in records:
        r["ts"] = (
            r["ts"] - (datetime(2026, 1, 15, tzinfo=UTC) - datetime.now(UTC)) - timedelta(days=days)
        )
        seal(default_registry().latest(r["event_type"]), r, prev)
        prev = r["hash"]
    return records


def _stored(store: Store, task_id: str) -> int:
    return int(
        store.query(
            "SELECT count() FROM (SELECT task_id FROM llm_calls UNION ALL SELECT task_id FROM "
            "tool_spans UNION ALL SELECT task_id FROM state_transitions UNION ALL SELECT task_id "
            "FROM agent_messages UNION ALL SELECT task_id FROM guard_events) "
            "WHERE task_id = {t:String}",
            {"t": task_id},
        )[0][0]
    )


def _expire_now(store: Store) -> None:
    for table in ("llm_calls", "tool_spans", "state_transitions", "agent_messages", "guard_events"):
        store.command(f"OPTIMIZE TABLE {table} FINAL")


def test_29_days_for_llm_calls_is_refused_with_what_to_do() -> None:
    with pytest.raises(RetentionError, match="llm_calls must be kept at least 30 days"):
        load_retention(llm_calls_days=29)
    with pytest.raises(RetentionError, match="guard_events"):
        load_retention(guard_events_days=29)
    assert load_retention(llm_calls_days=30).llm_calls_days == 30
    assert load_retention(tool_spans_days=7).tool_spans_days == 7  # no floor there


def test_migrate_refuses_29_days_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTTRAIL_RETENTION_LLM_CALLS_DAYS", "29")
    result = CliRunner().invoke(main, ["migrate", "--data", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert (
        "at least 30 days" in result.output
        and "AGENTTRAIL_RETENTION_LLM_CALLS_DAYS" in result.output
    )


def test_defaults_and_settings_are_in_force_after_migrate(store: Store) -> None:
    days = {p.table: p.days for p in policy_in_force(store)}
    assert days == {
        "llm_calls": 184, "guard_events": 184, "tool_spans": 400,
        "state_transitions": 400, "agent_messages": 400, "checkpoints": 400,
    }  # fmt: skip
    changed = apply_retention(store, RetentionConfig(tool_spans_days=90))
    assert changed == ["tool_spans"]
    assert {p.table: p.days for p in policy_in_force(store)}["tool_spans"] == 90
    assert apply_retention(store, RetentionConfig(tool_spans_days=90)) == []
    assert all(p.honours_holds for p in policy_in_force(store))


def test_an_event_older_than_retention_on_arrival_is_kept_and_runs_and_replay_agree(
    store: Store,
) -> None:
    old = _age(make_task("ancient", 6, "p1", 0), days=800)  # past every table's 400/184 days
    store_events(store, old)
    _expire_now(store)
    assert _stored(store, "ancient") == 6
    (run,) = get_run(store, "ancient")
    assert run.outcome == "succeeded"
    assert len(replay_task(store, "ancient")) == 6


def test_a_legal_hold_keeps_events_past_the_ttl_until_released(store: Store) -> None:
    # The holds are placed first: rows stored 800 days ago are past every TTL, and the
    # engine's background merges may remove them the moment they are inserted.
    place_hold(store, "acme", "held", reason="case 1", by="test")
    place_hold(store, "globex", reason="case 2", by="test")
    long_ago = datetime.now(UTC) - timedelta(days=800)
    for task, pseq in (("held", 0), ("free", 6), ("tenant-held", 12)):
        tenant = "globex" if task == "tenant-held" else "acme"
        records = _age(make_task(task, 6, "p1", pseq, tenant=tenant), days=800)
        store_events(store, records, ingested_at=long_ago)  # stored 800 days ago
    _expire_now(store)
    assert [_stored(store, t) for t in ("held", "free", "tenant-held")] == [6, 0, 6]
    release_hold(store, "acme", "held", reason="case closed", by="test")
    _expire_now(store)
    assert [_stored(store, t) for t in ("held", "free", "tenant-held")] == [0, 0, 6]


def test_retention_show_prints_the_policy_and_holds(store: Store, store_dir: Path) -> None:
    place_hold(store, "acme", "inv-1", reason="case 7", by="test")
    store.close()
    runner = CliRunner()
    shown = runner.invoke(main, ["retention", "show", "--data", str(store_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert {t["table"]: t["days"] for t in body["tables"]}["llm_calls"] == 184
    assert body["holds"][0]["task_id"] == "inv-1"
    text = runner.invoke(main, ["retention", "show", "--data", str(store_dir)])
    assert "llm_calls" in text.output and "case 7" in text.output
