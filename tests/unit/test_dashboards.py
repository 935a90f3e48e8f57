"""Dashboard JSON lint (uids, data source references, variables) and the macro helper
against the plugin's documented expansions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.grafana_macros import ALL, MacroError, Variable, expand

ROOT = Path(__file__).resolve().parents[2]
BOARDS = sorted((ROOT / "dashboards").glob("*.json"))
PLUGIN = "grafana-clickhouse-datasource"
EXPECTED = {"fleet", "replay", "tools", "safety", "cost", "pipeline"}


def _load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


def _provisioned_sources() -> dict[str, str]:
    doc = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/clickhouse.yaml").read_text())
    return {s["uid"]: s["type"] for s in doc["datasources"]}


def _queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, sql) of every panel target and every query variable."""
    found = [(f"panel {p['title']!r}", t["rawSql"]) for p in board["panels"] for t in p["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            found.append((f"variable {var['name']}", var["query"]["rawSql"]))
    return found


def test_the_six_dashboards_exist() -> None:
    assert {p.stem for p in BOARDS} == EXPECTED


def test_uids_are_unique_and_panel_ids_unique_per_dashboard() -> None:
    uids = [_load(p)["uid"] for p in BOARDS]
    assert len(set(uids)) == len(uids)
    for path in BOARDS:
        board = _load(path)
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), path.name
        assert all(len(u) <= 40 for u in uids), "Grafana refuses uids over 40 characters"


def test_every_data_source_reference_resolves_to_the_provisioned_source() -> None:
    sources = _provisioned_sources()
    for path in BOARDS:
        board = _load(path)
        refs = [p["datasource"] for p in board["panels"]]
        refs += [t["datasource"] for p in board["panels"] for t in p["targets"]]
        refs += [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
        for ref in refs:
            assert sources.get(ref["uid"]) == ref["type"] == PLUGIN, (path.name, ref)


def test_every_variable_used_is_defined() -> None:
    for path in BOARDS:
        board = _load(path)
        defined = {v["name"] for v in board["templating"]["list"]}
        texts = [sql for _, sql in _queries(board)] + [p["title"] for p in board["panels"]]
        for text in texts:
            for name in re.findall(r"\$\{?(\w+)", text):
                assert name.startswith("__") or name in defined, (path.name, name, text[:80])


def test_panels_fit_the_grid_and_use_the_sql_editor() -> None:
    for path in BOARDS:
        for panel in _load(path)["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (path.name, panel["title"])
            for t in panel["targets"]:
                assert t["editorType"] == "sql" and t["format"] in (0, 1, 2, 3)
                assert (panel["type"] == "traces") == (t["format"] == 3), panel["title"]
                assert (panel["type"] == "timeseries") == (t["format"] == 0), panel["title"]


# -- the helper against the plugin's documented examples ------------------------------

T0 = datetime.fromtimestamp(1415792726.123, tz=UTC)
T1 = datetime.fromtimestamp(1447328726.456, tz=UTC)


def _x(sql: str, **variables: Variable) -> str:
    return expand(sql, time_from=T0, time_to=T1, interval_s=20, variables=variables)


def test_time_macros_expand_as_documented() -> None:
    assert _x("$__timeFilter(time)") == (
        "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"
    )
    assert _x("$__timeFilter_ms(time)") == (
        "time >= fromUnixTimestamp64Milli(1415792726123) AND "
        "time <= fromUnixTimestamp64Milli(1447328726456)"
    )
    assert _x("$__timeInterval(column)") == (
        "toStartOfInterval(toDateTime(column), INTERVAL 20 second)"
    )
    assert _x("$__timeInterval_ms(column)") == (
        "toStartOfInterval(toDateTime64(column, 3), INTERVAL 20000 millisecond)"
    )
    assert _x("$__interval_s") == "20"
    assert _x("$__fromTime $__toTime") == "toDateTime(1415792726) toDateTime(1447328726)"
    assert _x("$__fromTime_ms") == "fromUnixTimestamp64Milli(1415792726123)"
    assert _x("$__dateFilter(date)") == (
        "date >= toDate('2014-11-12') AND date <= toDate('2015-11-12')"
    )
    # The interval is never below one second.
    sub_second = expand("$__interval_s", time_from=T0, time_to=T1, interval_s=0.2)
    assert sub_second == "1"


def test_conditional_all_and_singlequote() -> None:
    sql = "WHERE $__conditionalAll(db IN (${db:singlequote}), $db)"
    assert _x(sql, db=Variable([ALL], ["a", "b"])) == "WHERE 1=1"
    assert _x(sql, db=Variable(["a", "o'neil"])) == "WHERE db IN ('a','o\\'neil')"
    assert _x("x IN (${db:singlequote})", db=Variable([ALL], ["a", "b"])) == "x IN ('a','b')"


def test_undefined_variables_and_unknown_macros_are_errors() -> None:
    with pytest.raises(MacroError, match="not defined"):
        _x("WHERE x = ${nope:singlequote}")
    with pytest.raises(MacroError, match="Unknown macro"):
        _x("$__timeFilterr(ts)")
    with pytest.raises(MacroError, match="1 argument"):
        _x("$__timeFilter(a, b)")
