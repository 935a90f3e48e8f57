"""``agenttrail dashboards push`` against a Grafana double that records the requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agenttrail.cli import main
from tests.grafana_double import TOKEN, USER, GrafanaState, grafana

ROOT = Path(__file__).resolve().parents[2]
BOARDS = {
    json.loads(p.read_text())["uid"]: json.loads(p.read_text())
    for p in (ROOT / "dashboards").glob("*.json")
}
DS_UID = "agenttrail-clickhouse"


@pytest.fixture
def served() -> Iterator[tuple[str, GrafanaState]]:
    with grafana() as pair:
        yield pair


def _push(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        main,
        ["dashboards", "push", "--grafana", url, *args, "--json"],
        env={"AGENTTRAIL_CH_READER_PASSWORD": "ch-secret", **(env or {})},
    )


def _actions(result: Result) -> dict[str, str]:
    assert result.exit_code == 0, result.output
    return {c["uid"]: c["action"] for c in json.loads(result.output)["changes"]}


def test_first_push_creates_the_datasource_folder_and_every_dashboard(
    served: tuple[str, GrafanaState],
) -> None:
    url, state = served
    actions = _actions(_push(url, "--token", TOKEN))
    assert actions == {DS_UID: "created", "agenttrail": "created"} | {
        uid: "created" for uid in BOARDS
    }
    source = state.datasources[DS_UID]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert source["jsonData"]["host"] == "clickhouse" and source["jsonData"]["port"] == 8123
    assert state.secrets[DS_UID] == {"password": "ch-secret"}
    assert state.folders["agenttrail"]["title"] == "agenttrail"
    for uid, board in BOARDS.items():
        stored = state.dashboards[uid]
        assert stored["meta"]["folderUid"] == "agenttrail"
        assert {k: v for k, v in stored["dashboard"].items() if k not in ("id", "version")} == {
            k: v for k, v in board.items() if k not in ("id", "version")
        }
    assert all(auth == f"Bearer {TOKEN}" for *_, auth in state.requests)


def test_a_second_push_changes_nothing_and_sends_no_write(
    served: tuple[str, GrafanaState],
) -> None:
    url, state = served
    _actions(_push(url, "--token", TOKEN))
    writes = len(state.writes())
    result = _push(url, "--token", TOKEN)
    assert set(_actions(result).values()) == {"unchanged"}
    assert json.loads(result.output)["changed"] == 0
    assert len(state.writes()) == writes


def test_an_edited_dashboard_and_a_moved_data_source_are_updated(
    served: tuple[str, GrafanaState],
) -> None:
    url, state = served
    _actions(_push(url, "--token", TOKEN))
    state.dashboards["agenttrail-tools"]["dashboard"]["title"] = "edited by hand"
    actions = _actions(
        _push(url, "--token", TOKEN, "--clickhouse-url", "https://reader@ch.example:8443/audit")
    )
    assert actions.pop("agenttrail-tools") == "updated"
    assert actions.pop(DS_UID) == "updated"
    assert set(actions.values()) == {"unchanged"}
    assert (
        state.dashboards["agenttrail-tools"]["dashboard"]["title"]
        == BOARDS["agenttrail-tools"]["title"]
    )
    assert state.dashboards["agenttrail-tools"]["dashboard"]["version"] == 2
    data = state.datasources[DS_UID]["jsonData"]
    assert (data["host"], data["port"], data["secure"], data["username"]) == (
        "ch.example",
        8443,
        True,
        "reader",
    )
    assert data["defaultDatabase"] == "audit"


def test_basic_auth_user_works_and_text_output_says_what_changed(
    served: tuple[str, GrafanaState],
) -> None:
    url, _ = served
    result = CliRunner().invoke(
        main,
        ["dashboards", "push", "--grafana", url, "--user", USER[0]],
        env={"GRAFANA_PASSWORD": USER[1], "AGENTTRAIL_CH_READER_PASSWORD": "x"},
    )
    assert result.exit_code == 0, result.output
    assert "created   dashboard  agenttrail-fleet" in result.output
    assert f"Grafana {url}: {len(BOARDS) + 2} change(s)." in result.output
    again = CliRunner().invoke(
        main,
        ["dashboards", "push", "--grafana", url, "--user", USER[0]],
        env={"GRAFANA_PASSWORD": USER[1]},
    )
    assert "nothing to change" in again.output


def test_a_wrong_token_exits_2_and_says_what_to_pass(served: tuple[str, GrafanaState]) -> None:
    url, state = served
    result = _push(url, "--token", "wrong")
    assert result.exit_code == 2
    assert "refused data source 'agenttrail-clickhouse'" in result.output
    assert "service account token" in result.output
    assert state.writes() == []


def test_no_grafana_listening_exits_2_naming_the_url() -> None:
    result = _push("http://127.0.0.1:9", "--token", TOKEN)
    assert result.exit_code == 2
    assert "Grafana at http://127.0.0.1:9 did not answer" in result.output
