"""compose.yaml cannot be started here (no container engine), so it is checked statically
against the code it runs: commands, options, settings, topics, sizes and files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from agenttrail.cli._consume import command as consume_command
from agenttrail.events import CONTROL_TOPIC, DEFAULT_MAX_PAYLOAD_BYTES, EVENTS_TOPIC
from agenttrail.producer import KafkaExporter
from agenttrail.store import StoreConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _substitute(value: str) -> str:
    # ${VAR:?message} and ${VAR:-default} as compose expands them, with a test password.
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda m: f"pw-for-{m.group(1)}", value)


def test_every_dependency_names_a_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_the_consumer_runs_a_real_command_with_real_options(compose: dict[str, Any]) -> None:
    consumer = compose["services"]["consumer"]
    args = consumer["command"]
    assert args[0] == "consume"
    known = {opt for p in consume_command.params for opt in getattr(p, "opts", [])}
    for arg in args[1:]:
        if arg.startswith("--"):
            assert arg in known, f"agenttrail consume has no option {arg}"
    env = consumer["environment"]
    assert env["AGENTTRAIL_BOOTSTRAP"] == "kafka:9092"
    url = _substitute(env["AGENTTRAIL_CLICKHOUSE"])
    target = StoreConfig(clickhouse=SecretStr(url)).target()
    assert (target.kind, target.host, target.port, target.database) == (
        "server",
        "clickhouse",
        8123,
        compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_DB"],
    )
    assert target.username == compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_USER"]


def test_topics_are_the_products_and_fit_the_largest_event(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["kafka-topics"]["command"])
    assert re.findall(r"--topic (\S+)", script) == [EVENTS_TOPIC, CONTROL_TOPIC]
    broker_max = int(compose["services"]["kafka"]["environment"]["KAFKA_MESSAGE_MAX_BYTES"])
    producer_max = KafkaExporter("x:1")._config["max_request_size"]
    assert broker_max >= producer_max >= DEFAULT_MAX_PAYLOAD_BYTES
    assert f"max.message.bytes={broker_max}" in script


def test_grafana_provisions_the_clickhouse_service(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounted = [v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")]
    assert mounted == ["./dashboards/provisioning"]
    source = yaml.safe_load(
        (ROOT / "dashboards/provisioning/datasources/clickhouse.yaml").read_text()
    )["datasources"][0]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert (source["jsonData"]["host"], source["jsonData"]["port"]) == ("clickhouse", 8123)
    assert source["jsonData"]["defaultDatabase"] == "agenttrail"
    password_var = source["secureJsonData"]["password"].lstrip("$")
    assert password_var in grafana["environment"], "Grafana gets the variable it expands"


def test_the_image_copies_files_that_exist(compose: dict[str, Any]) -> None:
    build = compose["services"]["consumer"]["build"]
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
