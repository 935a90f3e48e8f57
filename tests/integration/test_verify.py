"""``verify`` against stores holding exactly what an attacker or an accident left behind.

Each test seals a known set of tasks itself (the ground truth), then stores an altered
version of that set — one event changed, one forged, one left out, a task's tail cut —
and checks that ``verify`` names the task, the event and what is wrong, and finds
nothing in the untouched set. Nothing is updated or deleted in the store: the damage is
built before the insert, which is indistinguishable for the verifier.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.consumers.testing import sample_record
from agenttrail.events import canonical_hash, default_registry, seal
from agenttrail.store import FAMILY_TABLES, KAFKA_COLUMNS, Store
from agenttrail.verify import FindingKind, check_chains, record_to_row, verify_store

FAMILIES = ["llm_call", "tool_span", "agent_message", "guard_event"]


def make_task(
    task_id: str, events: int, producer: str, pseq0: int, tenant: str = "acme"
) -> list[dict[str, Any]]:
    """A sealed, correctly chained task: started, ``events - 2`` mixed events, succeeded."""
    reg = default_registry()
    out: list[dict[str, Any]] = []
    prev = ""
    for seq in range(events):
        if seq == 0 or seq == events - 1:
            r = sample_record("state_transition", task_id=task_id, seq=seq, tenant=tenant)
            if seq == events - 1:
                r.update(from_state="running", to_state="succeeded", boundary=None)
        else:
            r = sample_record(
                FAMILIES[seq % len(FAMILIES)], task_id=task_id, seq=seq, tenant=tenant
            )
        r["producer_id"] = producer
        r["producer_seq"] = pseq0 + seq
        seal(reg.latest(r["event_type"]), r, prev)
        prev = r["hash"]
        out.append(r)
    return out


def store_events(
    store: Store, records: Iterable[dict[str, Any]], ingested_at: datetime | None = None
) -> None:
    """Insert records as the consumer does (one row per event in its family's table).

    ``ingested_at`` backdates the arrival time (what a row stored long ago looks like).
    """
    reg = default_registry()
    by_family: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_family.setdefault(r["event_type"], []).append(r)
    for family, recs in by_family.items():
        entry = reg.latest(family)
        rows = [record_to_row(entry, r) for r in recs]
        names = list(rows[0])
        columns = [[row[n] for row in rows] for n in names]
        columns.append([0] * len(rows))
        columns.append(list(range(len(rows))))
        names = [*names, *KAFKA_COLUMNS]
        if ingested_at is not None:
            names.append("ingested_at")
            columns.append([ingested_at] * len(rows))
        store.insert_columns(FAMILY_TABLES[family], names, columns)


def kinds_of(report: Any, task_id: str) -> set[str]:
    return {str(f.kind) for f in report.findings if f.task_id == task_id}


def test_an_intact_store_verifies_clean(store: Store) -> None:
    tasks = [make_task(f"t{i}", 12, "p1", i * 12) for i in range(5)]
    store_events(store, [e for t in tasks for e in t])
    report = check_chains(store)
    assert report.findings == []
    assert report.events == 60
    assert report.tasks == 5


def test_each_kind_of_damage_is_named_with_its_task_and_event(store: Store) -> None:
    intact = make_task("intact", 10, "p1", 0)
    altered = make_task("altered", 10, "p1", 10)
    forged = make_task("forged", 10, "p1", 20)
    missing = make_task("missing", 10, "p1", 30)
    duplicated = make_task("duplicated", 10, "p1", 40)

    # An altered copy: the stored cost is not what was sealed.
    victim = next(e for e in altered if e["event_type"] == "llm_call")
    tampered = copy.deepcopy(victim)
    tampered["cost_usd"] = 0.0001
    altered[altered.index(victim)] = tampered

    # A forged event: well-formed, correctly hashed, spliced in at seq 4.
    fake = sample_record("tool_span", task_id="forged", seq=4)
    fake.update(producer_id="p1", producer_seq=24)
    seal(default_registry().latest("tool_span"), fake, forged[3]["hash"])
    forged[4] = fake

    # A missing event: seq 5 never reached the store.
    del missing[5]

    stored = [*intact, *altered, *forged, *missing, *duplicated, duplicated[3]]
    store_events(store, stored)
    report = check_chains(store)

    assert kinds_of(report, "intact") == set()
    assert kinds_of(report, "altered") == {"modified"}
    (mod,) = [f for f in report.findings if f.task_id == "altered"]
    assert mod.event_id == str(victim["event_id"]) and mod.seq == victim["seq"]
    assert canonical_hash(default_registry().latest("llm_call"), tampered) != victim["hash"]

    assert "broken_link" in kinds_of(report, "forged")
    link = next(f for f in report.findings if f.task_id == "forged" and f.kind == "broken_link")
    assert link.seq == 5  # the real event after the forgery no longer links

    assert kinds_of(report, "missing") == {"broken_link", "seq_gap"}
    gap = next(f for f in report.findings if f.task_id == "missing" and f.kind == "seq_gap")
    assert gap.seq == 5 and "seq 5 missing" in gap.detail

    assert kinds_of(report, "duplicated") == {"duplicate"}


def test_a_missing_head_and_reordering_are_reported(store: Store) -> None:
    headless = make_task("headless", 6, "p1", 0)[2:]
    reordered = make_task("reordered", 6, "p2", 0)
    reordered[2]["producer_seq"], reordered[3]["producer_seq"] = 3, 2
    prev = ""
    for e in sorted(reordered, key=lambda e: e["producer_seq"]):  # sealed in emission order
        seal(default_registry().latest(e["event_type"]), e, prev)
        prev = e["hash"]
    store_events(store, [*headless, *reordered])
    report = check_chains(store)
    assert {"broken_link", "seq_gap"} <= kinds_of(report, "headless")
    assert kinds_of(report, "reordered") == {"reordered"}


def test_filters_select_whole_tasks(store: Store) -> None:
    a = make_task("a", 5, "p1", 0, tenant="acme")
    b = make_task("b", 5, "p1", 5, tenant="globex")
    b_bad = copy.deepcopy(b)
    b_bad[2]["prev_hash"] = "0" * 64
    store_events(store, [*a, *b_bad])
    assert check_chains(store, tenant="acme").ok
    assert check_chains(store, task_id="a").events == 5
    assert not check_chains(store, tenant="globex").ok


def test_verify_command_exits_1_naming_the_task(store: Store, store_dir: Path) -> None:
    good = make_task("good", 5, "p1", 0)
    bad = make_task("bad", 5, "p1", 5)
    bad[1] = {**bad[1], "tenant": "acme", "step": 99}
    store_events(store, [*good, *bad])
    store.close()
    runner = CliRunner()
    result = runner.invoke(main, ["verify", "--data", str(store_dir)])
    assert result.exit_code == 1, result.output
    assert "bad" in result.output and "modified" in result.output
    ok = runner.invoke(main, ["verify", "--data", str(store_dir), "--task", "good", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 16383, 16384, 2**31 - 1, -1, -(2**63), 2**63 - 1]
)
def test_engine_hash_matches_python_at_varint_edges(store: Store, value: int) -> None:
    r = make_task("edge", 3, "p1", 0)[1]
    entry = default_registry().latest(r["event_type"])
    r = {**r, "producer_seq": value}
    seal(entry, r, r["prev_hash"])
    store_events(store, [r])
    table = FAMILY_TABLES[r["event_type"]]
    from agenttrail.verify._avro_sql import hash_select
    from agenttrail.verify._engine import family_columns

    sql = hash_select([entry], family_columns(store, table), table)
    ((got,),) = store.query(f"SELECT expected_hash FROM ({sql})")
    assert got == r["hash"]


def test_a_whole_deleted_task_shows_as_missing_producer_seqs(store: Store) -> None:
    kept_a = make_task("kept-a", 6, "p9", 0)
    make_task("deleted", 6, "p9", 6)  # sealed as producer_seq 6…11, then never stored
    kept_b = make_task("kept-b", 6, "p9", 12)
    store_events(store, [*kept_a, *kept_b])
    report = verify_store(store)
    (p9,) = [p for p in report.producers if p.producer_id == "p9"]
    assert (p9.produced, p9.stored, p9.missing) == (18, 12, [[6, 11]])
    assert [f.kind for f in report.findings] == [FindingKind.MISSING_EVENTS]


def test_dead_lettered_events_are_not_missing(store: Store) -> None:
    events = make_task("lettered", 6, "p7", 0)
    letter = events.pop(3)
    framed = seal(
        default_registry().latest(letter["event_type"]), dict(letter), letter["prev_hash"]
    )
    store.insert_columns(
        "dead_letters",
        ["topic", "kafka_partition", "kafka_offset", "reason", "error", "raw", "raw_size"],
        [["t"], [0], [9], ["invalid_record"], ["test"], [framed], [len(framed)]],
    )
    store_events(store, events)
    report = verify_store(store)
    (p7,) = report.producers
    assert (p7.produced, p7.stored, p7.dead_lettered, p7.missing) == (6, 5, 1, [])


def test_since_selects_whole_tasks_with_recent_events(store: Store) -> None:
    from datetime import UTC, timedelta

    from agenttrail.events import default_registry, seal

    old = make_task("old", 5, "p1", 0)
    new = make_task("new", 5, "p1", 5)
    prev = ""
    for e in new:  # the same task moved to now, resealed
        e["ts"] = datetime.now(UTC) - timedelta(minutes=5) + timedelta(milliseconds=e["seq"])
        seal(default_registry().latest(e["event_type"]), e, prev)
        prev = e["hash"]
    store_events(store, [*old, *new])
    report = check_chains(store, since=datetime.now(UTC) - timedelta(hours=1))
    assert (report.events, report.tasks, report.ok) == (5, 1, True)


def test_checking_in_buckets_finds_the_same(store: Store) -> None:
    tasks = [make_task(f"b{i}", 6, "p1", i * 6) for i in range(8)]
    tasks[5][3]["prev_hash"] = "f" * 64  # one broken link, in some bucket
    store_events(store, [e for t in tasks for e in t])
    whole = check_chains(store)
    bucketed = check_chains(store, bucket_events=10)  # 48 events in 5 buckets
    assert (
        {(f.kind, f.task_id, f.seq) for f in bucketed.findings}
        == {(f.kind, f.task_id, f.seq) for f in whole.findings}
        == {(FindingKind.MODIFIED, "b5", 3), (FindingKind.BROKEN_LINK, "b5", 3)}
    )
