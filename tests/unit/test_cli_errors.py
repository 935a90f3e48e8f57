"""Commands turn bad input into one clear line and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agenttrail.cli import main


def test_demo_with_a_data_directory_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(main, ["demo", "--data", str(blocker / "data"), "--tasks", "1"])
    assert result.exit_code == 2
    assert "Cannot create the data directory" in result.output
    assert "--data" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_migrate_without_a_store_says_how_to_name_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.agenttrail store to fall back on
    monkeypatch.delenv("AGENTTRAIL_DATA", raising=False)
    monkeypatch.delenv("AGENTTRAIL_CLICKHOUSE", raising=False)
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 2
    assert "--data DIR" in result.output and "--clickhouse URL" in result.output


def test_reading_commands_find_the_demo_store_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from agenttrail.store import StoreConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENTTRAIL_DATA", raising=False)
    monkeypatch.delenv("AGENTTRAIL_CLICKHOUSE", raising=False)
    (tmp_path / ".agenttrail" / "clickhouse").mkdir(parents=True)
    target = StoreConfig().target()
    assert target.kind == "chdb"
    assert target.path is not None
    assert target.path.resolve() == (tmp_path / ".agenttrail" / "clickhouse").resolve()
