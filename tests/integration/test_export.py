"""Compliance exports: round trip through ``export verify`` in every format, and damage
to an exported file — one flipped byte, one removed row — is detected and named.

The ground truth is the set of sealed events the test stored itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.events import default_registry
from agenttrail.export import ExportError, ExportFilters, check_export, export_store
from agenttrail.store import Store
from tests.integration.test_verify import make_task, store_events

FORMATS = ["jsonl", "csv", "parquet"]


def _seed(store: Store) -> list[dict]:
    events = [e for i in range(6) for e in make_task(f"task-{i}", 11, "p1", i * 11)]
    other = make_task("other-tenant", 7, "p2", 0, tenant="globex")
    # Values that stress the formats: NULLs, a backslash, quotes, newlines, non-ASCII.
    events[3]["parent_span_id"] = None
    tricky = next(e for e in events if e["event_type"] == "tool_span")
    tricky["result_summary"] = '\\N "quoted", new\nline, ünïcode ✓'
    from agenttrail.events import default_registry, seal

    prev = ""
    for e in [x for x in events if x["task_id"] == tricky["task_id"]]:
        seal(default_registry().latest(e["event_type"]), e, prev)
        prev = e["hash"]
    store_events(store, [*events, *other])
    return events + other


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_round_trips_through_export_verify(
    store: Store, tmp_path: Path, fmt: str
) -> None:
    truth = _seed(store)
    out = tmp_path / "audit"
    manifest = export_store(store, out, fmt=fmt)
    assert manifest["rows"] == len(truth)
    per_family: dict[str, int] = {}
    for e in truth:
        per_family[e["event_type"]] = per_family.get(e["event_type"], 0) + 1
    assert {f["family"]: f["rows"] for f in manifest["files"] if f["rows"]} == per_family
    assert manifest["verification"]["ok"] is True
    newest = {f: default_registry().latest(f).version for f in per_family}
    written = [f for f in manifest["files"] if f["rows"]]
    assert all(f["schema_versions"] == [newest[f["family"]]] for f in written)
    report = check_export(out)
    assert report.findings == []
    assert report.events == len(truth) and report.tasks == 7


def test_filters_export_whole_tasks_of_one_tenant(store: Store, tmp_path: Path) -> None:
    _seed(store)
    manifest = export_store(store, tmp_path / "a", selection=ExportFilters(tenant="globex"))
    assert manifest["rows"] == 7
    assert manifest["filters"]["tenant"] == "globex"
    assert check_export(tmp_path / "a").ok
    with pytest.raises(ExportError, match="already holds an export"):
        export_store(store, tmp_path / "a")


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_flipped_byte_is_detected(store: Store, tmp_path: Path, fmt: str) -> None:
    _seed(store)
    out = tmp_path / "audit"
    export_store(store, out, fmt=fmt)
    path = out / f"tool_spans.{fmt}"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = check_export(out)
    changed = [f for f in report.findings if f.kind == "file_changed"]
    assert changed and all("tool_spans" in f.detail for f in changed)


def test_a_changed_value_names_the_event(store: Store, tmp_path: Path) -> None:
    truth = _seed(store)
    out = tmp_path / "audit"
    export_store(store, out, fmt="jsonl")
    path = out / "llm_calls.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    row["cost_usd"] = 0.0001
    lines[2] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    report = check_export(out)
    (modified,) = [f for f in report.findings if f.kind == "modified"]
    assert modified.event_id == row["event_id"]
    assert any(e["event_id"] == row["event_id"] for e in truth)
    assert any(f.kind == "file_changed" for f in report.findings)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_removed_row_is_detected_and_its_task_named(
    store: Store, tmp_path: Path, fmt: str
) -> None:
    _seed(store)
    out = tmp_path / "audit"
    export_store(store, out, fmt=fmt)
    path = out / f"agent_messages.{fmt}"
    lines = path.read_text().split("\n")
    removed = lines.pop(2)  # header (csv) or a row (jsonl); either way one event goes
    path.write_text("\n".join(lines))
    report = check_export(out)
    kinds = {str(f.kind) for f in report.findings}
    assert "file_changed" in kinds and "seq_gap" in kinds
    gap = next(f for f in report.findings if f.kind == "seq_gap")
    assert gap.task_id in removed


def test_the_export_commands_exit_0_then_1_after_damage(
    store: Store, store_dir: Path, tmp_path: Path
) -> None:
    _seed(store)
    store.close()
    out = tmp_path / "audit"
    runner = CliRunner()
    made = runner.invoke(
        main, ["export", "--data", str(store_dir), "--out", str(out), "--format", "csv"]
    )
    assert made.exit_code == 0, made.output
    assert (out / "manifest.json").is_file()
    ok = runner.invoke(main, ["export", "verify", str(out)])
    assert ok.exit_code == 0, ok.output
    (out / "guard_events.csv").write_text("nothing\n")
    bad = runner.invoke(main, ["export", "verify", str(out), "--json"])
    assert bad.exit_code == 1
    assert any("guard_events.csv" in f["detail"] for f in json.loads(bad.output)["findings"])
    assert runner.invoke(main, ["export", "verify", str(tmp_path)]).exit_code == 2


def test_task_type_and_time_window_filters(store: Store, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    truth = _seed(store)
    other = make_task("other-type", 5, "p3", 0)
    for e in other:
        e["task_type"] = "software_delivery"
    from agenttrail.events import default_registry, seal

    prev = ""
    for e in other:
        seal(default_registry().latest(e["event_type"]), e, prev)
        prev = e["hash"]
    store_events(store, other)
    by_type = export_store(
        store, tmp_path / "t", selection=ExportFilters(task_type="software_delivery")
    )
    assert by_type["rows"] == 5 and check_export(tmp_path / "t").ok
    # Every seeded event happened on 2026-01-15: a window around that day holds them all,
    # a window after it none.
    day = ExportFilters(
        since=datetime(2026, 1, 15, tzinfo=UTC), until=datetime(2026, 1, 16, tzinfo=UTC)
    )
    assert export_store(store, tmp_path / "d", selection=day)["rows"] == len(truth) + 5
    later = ExportFilters(since=datetime(2026, 2, 1, tzinfo=UTC))
    assert export_store(store, tmp_path / "l", selection=later)["rows"] == 0
