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


def test_an_empty_cached_price_means_cached_tokens_cost_the_input_price() -> None:
    from agenttrail.query import parse_prices

    (price,) = parse_prices(
        "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
        "mistral-large,2026-03-01,2.00,6.00,\n",
        source="test",
    )
    assert price.cached_usd_per_mtok == 2.00
    assert price.input_usd_per_mtok == 2.00 and price.output_usd_per_mtok == 6.00


@pytest.mark.parametrize("column", [2, 3])
def test_an_empty_input_or_output_price_is_still_refused(column: int) -> None:
    from agenttrail.query import PriceFileError, parse_prices

    cells = ["m", "2026-03-01", "1", "2", "0.5"]
    cells[column] = ""
    with pytest.raises(PriceFileError, match="is not a number"):
        parse_prices(
            "model,effective_from,input_usd_per_mtok,output_usd_per_mtok,cached_usd_per_mtok\n"
            + ",".join(cells)
            + "\n",
            source="test",
        )


def test_the_readme_install_brings_what_schemas_check_needs() -> None:
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    match = re.search(r"pip install -e '\.\[([a-z,]+)\]'", readme)
    assert match, "the README's install command was not found"
    extras = match.group(1).split(",")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    installed = list(project["dependencies"])
    for extra in extras:
        installed += project["optional-dependencies"][extra]
    names = {re.split(r"[<>=\[ ;]", req, maxsplit=1)[0].lower() for req in installed}
    # What `agenttrail schemas check` imports beyond the core (agenttrail/events/_compat.py).
    assert "avro" in names, f"`schemas check` needs avro; the README installs {sorted(names)}"


def test_replay_step_0_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["replay", "t-1", "--step", "0", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "0 is not in the range x>=1" in result.output


def test_the_readme_event_field_tables_match_the_avsc_files() -> None:
    from agenttrail._contracts import schemas_dir
    from agenttrail.cli._field_table import BEGIN, END, render_field_tables

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert BEGIN in readme and END in readme, "the README has no generated field tables"
    copy = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert copy == render_field_tables(schemas_dir()).strip(), (
        "README.md's event fields differ from the .avsc files; regenerate them with "
        "`agenttrail schemas fields` and paste the output between the markers"
    )


def test_every_field_of_every_schema_is_in_the_readme() -> None:
    import json

    from agenttrail._contracts import schemas_dir

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for avsc in schemas_dir().glob("*/v*.avsc"):
        for field in json.loads(avsc.read_text())["fields"]:
            assert f"| `{field['name']}` |" in readme, f"{avsc}: {field['name']}"


def test_status_sees_what_an_sdk_left_spooled(tmp_path: Path) -> None:
    from agenttrail.cli._spools import spooled
    from agenttrail.producer import Recorder

    bootstrap = f"127.0.0.1:{_closed_port()}"
    rec = Recorder(bootstrap=bootstrap, tenant="t", agent="a", spool_dir=tmp_path)
    with rec.task("spooling", task_id="sp-1") as task:
        for i in range(5):
            with task.tool("probe", args={"i": i}) as span:
                span.result(i)
    report = rec.close(timeout=2)
    assert report.spooled > 0, report
    (entry,) = spooled([tmp_path])
    assert bootstrap in str(entry["destination"])
    assert entry["pending_bytes"] > 0
    assert entry["owner_alive"] is False
