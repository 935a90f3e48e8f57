"""A new user's first hour (issue 7): mistakes get one clear line, and create nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from agenttrail.cli import main

READING_COMMANDS = [
    ["runs"],
    ["metrics"],
    ["replay", "inv-00001"],
    ["replay", "inv-00001", "--step", "1"],
    ["query", "tool_loops"],
    ["prices", "list"],
    ["prices", "load", "{prices}"],
]


@pytest.mark.parametrize("args", READING_COMMANDS, ids=lambda a: " ".join(a))
def test_a_mistyped_data_directory_is_reported_and_nothing_is_created(
    args: list[str], tmp_path: Path
) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
        "m,2026-01-01,1,2,0.5\n"
    )
    missing = tmp_path / "no-such-dir"
    argv = [a.replace("{prices}", str(prices)) for a in args]
    result = CliRunner().invoke(main, [*argv, "--data", str(missing)])
    assert result.exit_code == 2, result.output
    assert f"There is no store at {missing / 'clickhouse'}" in result.output
    assert "migrate" not in result.output.split("There is no store")[0]
    assert not missing.exists(), "a reading command created the directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices.csv"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_clickhouse_url_where_nothing_listens_gives_one_clear_line(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from agenttrail.cli._common import open_or_exit

    port = _closed_port()
    with pytest.raises(SystemExit) as exited:
        # Through the group callback, as the console script runs it (it sets up logging).
        main.main(
            ["runs", "--clickhouse", f"http://127.0.0.1:{port}/agenttrail"], standalone_mode=False
        )
    assert exited.value.code == 2
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f"127.0.0.1:{port}" in lines[0] and "connection refused" in lines[0]
    for noise in ("Unexpected Http Driver Exception", "urllib3", "object at 0x", "Max retries"):
        assert noise not in err
    assert open_or_exit  # the same helper every reading command uses
