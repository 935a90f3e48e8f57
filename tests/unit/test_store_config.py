"""Store locations: URL parsing, password masking, and the one-location rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenttrail.store import StoreConfig, StoreConfigError, StoreTarget


def test_server_url_parts_and_password_is_masked_everywhere() -> None:
    target = StoreTarget.parse("https://ingest:s3cr%40t@ch.example:9443/audit")
    assert (target.kind, target.host, target.port, target.secure) == (
        "server",
        "ch.example",
        9443,
        True,
    )
    assert target.username == "ingest"
    assert target.password.get_secret_value() == "s3cr@t"
    assert target.database == "audit"
    for text in (target.masked, repr(target), str(target)):
        assert "s3cr" not in text
    assert target.masked == "https://ingest:***@ch.example:9443/audit"


def test_server_url_defaults_port_user_and_database() -> None:
    target = StoreTarget.parse("http://ch.local")
    assert (target.port, target.username, target.database) == (8123, "default", "agenttrail")
    assert target.masked == "http://default@ch.local:8123/agenttrail"


def test_chdb_url_and_data_dir_name_the_same_kind_of_store(tmp_path: Path) -> None:
    assert StoreTarget.parse(f"chdb://{tmp_path}/x").path == tmp_path / "x"
    via_data = StoreConfig(data=tmp_path).target()
    assert via_data.kind == "chdb"
    assert via_data.path == tmp_path / "clickhouse"


def test_config_never_prints_the_password() -> None:
    config = StoreConfig(clickhouse="http://u:hunter2@h:8123/db")  # type: ignore[arg-type]
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.model_dump())


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "No store given"),
        ({"clickhouse": "http://h:8123", "data": Path("/tmp/x")}, "Both --clickhouse and --data"),
        ({"clickhouse": "ftp://h/db"}, "not supported"),
        ({"clickhouse": "chdb://"}, "has no path"),
        ({"clickhouse": "http://:8123/db"}, "has no host"),
    ],
)
def test_bad_locations_say_what_to_do(
    kwargs: dict[str, object], fragment: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.agenttrail store to fall back on
    monkeypatch.delenv("AGENTTRAIL_CLICKHOUSE", raising=False)
    monkeypatch.delenv("AGENTTRAIL_DATA", raising=False)
    with pytest.raises(StoreConfigError, match=fragment):
        StoreConfig(**kwargs).target()  # type: ignore[arg-type]


def test_environment_supplies_the_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTTRAIL_CLICKHOUSE", raising=False)
    monkeypatch.setenv("AGENTTRAIL_DATA", str(tmp_path))
    assert StoreConfig().target().path == tmp_path / "clickhouse"
