"""The Schema Registry path against a registry double that answers like Confluent's API,
already holding five other teams' records under ids 1-5 (the packaged file ids)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.events import (
    EVENTS_TOPIC,
    EventCodec,
    SchemaRegistry,
    UnknownSchemaId,
    encode_body,
    frame,
    read_header,
)
from agenttrail.events._registry_ids import RegistryIds, RegistryResolvedSchemas, register_schemas
from agenttrail.events._schema_registry import (
    SchemaRegistryClient,
    SchemaRegistryError,
    SchemaRegistryUnavailable,
    redact_url,
)
from agenttrail.producer import Recorder, RecorderConfigError
from agenttrail.producer.testing import InMemoryExporter
from tests.deadline import wait_until
from tests.registry_double import FOREIGN_SCHEMAS, RegistryState, schema_registry

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = {
    "llm_call": "LlmCall",
    "tool_span": "ToolSpan",
    "state_transition": "StateTransition",
    "agent_message": "AgentMessage",
    "guard_event": "GuardEvent",
    "checkpoint": "Checkpoint",
}
SHIPPED: list[dict[str, Any]] = json.loads((ROOT / "schemas/registry.json").read_text())["schemas"]
"""The packaged registry: every version of every family, each registered as a version of
its family's subject."""


def _versions(family: str) -> list[int]:
    return sorted(e["version"] for e in SHIPPED if e["event_type"] == family)


@pytest.fixture
def registry() -> Iterator[tuple[str, RegistryState]]:
    with schema_registry() as served:
        yield served


def _subject(family: str) -> str:
    return f"{EVENTS_TOPIC}-agenttrail.events.{FAMILIES[family]}"


def _newest_id(state: RegistryState, family: str) -> int:
    """The registry's id of the family's newest version (the one the SDK writes)."""
    return state.subjects[_subject(family)][-1]


def _recorded_payloads() -> list[bytes]:
    """Real sealed events from the SDK (framed with the packaged file ids)."""
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, agent="invoicer", tenant="acme")
    with rec.task("invoice_generation", entry={"order_id": "7294"}) as task:
        with task.llm_call(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]) as c:
            c.respond(content="ok", input_tokens=3, output_tokens=1, finish_reason="stop")
        with task.tool("get_order", args={"order_id": "7294"}) as span:
            span.result({"ok": True})
    assert rec.flush()
    rec.close()
    return [r.value for r in exporter.records]


def _schemas_with_a_newer_tool_span(tmp_path: Path) -> tuple[Path, int]:
    """A copy of schemas/ with the next tool_span version, which adds an optional field
    to the newest one (compatible); returns the copy and that version's number."""
    root = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", root)
    newest = _versions("tool_span")[-1]
    schema = json.loads((root / f"tool_span/v{newest}.avsc").read_text())
    fields = list(schema["fields"])
    fields.insert(
        len(fields) - 2, {"name": "review_note", "type": ["null", "string"], "default": None}
    )
    schema["fields"] = fields
    version = newest + 1
    (root / f"tool_span/v{version}.avsc").write_text(json.dumps(schema, indent=2))
    doc = json.loads((root / "registry.json").read_text())
    file_id = 1 + max([e["id"] for e in doc["schemas"]] + doc["retired_ids"])
    doc["schemas"].append(
        {"id": file_id, "event_type": "tool_span", "version": version,
         "path": f"tool_span/v{version}.avsc"}
    )  # fmt: skip
    (root / "registry.json").write_text(json.dumps(doc, indent=2))
    return root, version


def test_register_creates_one_subject_per_record_with_backward_transitive(
    registry: tuple[str, RegistryState],
) -> None:
    url, state = registry
    client = SchemaRegistryClient(url)
    changes = register_schemas(client)
    for family in FAMILIES:
        subject = _subject(family)
        assert state.config[subject] == "BACKWARD_TRANSITIVE"
        stored = [json.loads(state.schemas[i]) for i in state.subjects[subject]]
        assert stored == [
            json.loads((ROOT / f"schemas/{family}/v{v}.avsc").read_text())
            for v in _versions(family)
        ], "every version, oldest first"
    # The registry chose ids after the five foreign ones; none of ours is 1-5.
    ours = {i for f in FAMILIES for i in state.subjects[_subject(f)]}
    assert ours == set(range(6, 6 + len(SHIPPED)))
    assert {s for s in state.subjects if s.startswith(EVENTS_TOPIC)} == {
        _subject(f) for f in FAMILIES
    }
    assert sum(c.action == "registered" for c in changes) == len(SHIPPED)
    assert sum(c.action == "compatibility" for c in changes) == len(FAMILIES)
    # Foreign subjects untouched.
    for subject in FOREIGN_SCHEMAS:
        assert len(state.subjects[subject]) == 1 and subject not in state.config


def test_register_twice_changes_nothing(registry: tuple[str, RegistryState]) -> None:
    url, state = registry
    client = SchemaRegistryClient(url)
    register_schemas(client)
    writes_before = [r for r in state.requests if r[0] in ("PUT",) or r[1].endswith("/versions")]
    again = register_schemas(client)
    writes_after = [r for r in state.requests if r[0] in ("PUT",) or r[1].endswith("/versions")]
    assert writes_after == writes_before, "a second run sent no write"
    assert all(c.action == "unchanged" for c in again) and len(again) == len(SHIPPED)


def test_cli_register_says_what_changed_then_nothing(
    registry: tuple[str, RegistryState], tmp_path: Path
) -> None:
    url, state = registry
    runner = CliRunner()
    first = runner.invoke(main, ["schemas", "register", "--registry", url, "--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.output)
    assert doc["changed"] == len(SHIPPED) + len(FAMILIES)
    ids = {c["subject"]: c["id"] for c in doc["changes"] if c["action"] == "registered"}
    assert ids == {_subject(f): _newest_id(state, f) for f in FAMILIES}  # the last of each
    second = runner.invoke(main, ["schemas", "register", "--registry", url])
    assert second.exit_code == 0, second.output
    assert "nothing to change" in second.output
    # A newer version in a newer checkout: only it is registered.
    before = list(state.subjects[_subject("tool_span")])
    root, version = _schemas_with_a_newer_tool_span(tmp_path)
    third = runner.invoke(main, ["schemas", "register", "--registry", url, "--dir", str(root)])
    assert third.exit_code == 0, third.output
    new_id = 6 + len(SHIPPED)
    assert (
        f"+ agenttrail.events-agenttrail.events.ToolSpan: tool_span v{version} registered as "
        f"id {new_id}"
    ) in third.output
    assert "1 change(s)" in third.output
    assert state.subjects[_subject("tool_span")] == [*before, new_id]


def test_an_incompatible_version_is_refused_by_the_registry_and_exits_1(
    registry: tuple[str, RegistryState], tmp_path: Path
) -> None:
    url, state = registry
    runner = CliRunner()
    assert runner.invoke(main, ["schemas", "register", "--registry", url]).exit_code == 0
    root, version = _schemas_with_a_newer_tool_span(tmp_path)
    newer = json.loads((root / f"tool_span/v{version}.avsc").read_text())
    for f in newer["fields"]:
        if f["name"] == "review_note":
            f["type"] = "string"  # required, no default: earlier data cannot be read
            del f["default"]
    (root / f"tool_span/v{version}.avsc").write_text(json.dumps(newer))
    before = dict(state.subjects)
    result = runner.invoke(main, ["schemas", "register", "--registry", url, "--dir", str(root)])
    assert result.exit_code == 1, result.output
    assert "409" in result.output and "incompatible" in result.output
    assert "not BACKWARD_TRANSITIVE compatible" in result.output
    assert state.subjects == before


def test_cli_register_without_a_registry_exits_2_naming_it() -> None:
    result = CliRunner().invoke(
        main, ["schemas", "register", "--registry", "http://127.0.0.1:9/"], env={}
    )
    assert result.exit_code == 2
    assert "Schema Registry at http://127.0.0.1:9 did not answer" in result.output


def test_credentials_in_the_url_are_sent_and_never_printed() -> None:
    client = SchemaRegistryClient("https://svc:s3cret@sr.example:8081/base/")
    assert client.url == "https://sr.example:8081/base"
    assert "s3cret" not in repr(client) and "s3cret" not in redact_url(
        "https://svc:s3cret@sr.example:8081"
    )


def test_sdk_events_reframed_with_registry_ids_decode_through_the_registry(
    registry: tuple[str, RegistryState],
) -> None:
    url, state = registry
    client = SchemaRegistryClient(url)
    register_schemas(client)
    ids = RegistryIds(client)
    payloads = _recorded_payloads()
    registered = len(state.requests)
    local = EventCodec()
    framed = [ids.reframe(p) for p in payloads]
    for original, sent in zip(payloads, framed, strict=True):
        family = local.decode(original)["event_type"]
        assert read_header(sent) == _newest_id(state, family)
        assert sent[5:] == original[5:], "body (and hash) unchanged"
    lookups = [r for r in state.requests[registered:] if r[0] == "POST"]
    assert len(lookups) == len({local.decode(p)["event_type"] for p in payloads}), "one per schema"

    consumer = EventCodec(RegistryResolvedSchemas(SchemaRegistryClient(url)))
    assert [consumer.decode(m) for m in framed] == [local.decode(p) for p in payloads]
    fetches = [r for r in state.requests if r[1].startswith("/schemas/ids/")]
    assert len(fetches) == len(set(map(read_header, framed))), "each id fetched once"


def test_a_file_id_is_never_read_as_our_schema_when_a_registry_is_used(
    registry: tuple[str, RegistryState],
) -> None:
    url, _ = registry
    register_schemas(SchemaRegistryClient(url))
    consumer = EventCodec(RegistryResolvedSchemas(SchemaRegistryClient(url)))
    payload = _recorded_payloads()[0]  # framed with file id 3: a foreign Lead in this registry
    assert read_header(payload) == 3
    with pytest.raises(UnknownSchemaId, match=r"com\.acme\.crm\.Lead.*not an agenttrail event"):
        consumer.decode(payload)
    with pytest.raises(UnknownSchemaId, match="id 999 is not in the Schema Registry"):
        consumer.decode(frame(999, payload[5:]))


def test_a_version_registered_later_decodes_as_do_earlier_events(
    registry: tuple[str, RegistryState], tmp_path: Path
) -> None:
    url, state = registry
    client = SchemaRegistryClient(url)
    register_schemas(client)
    earlier_payloads = [RegistryIds(client).reframe(p) for p in _recorded_payloads()]
    root, version = _schemas_with_a_newer_tool_span(tmp_path)
    upgraded = SchemaRegistry.load(root)
    register_schemas(client, upgraded)
    newer = upgraded.latest("tool_span")
    newer_id = RegistryIds(client, upgraded).id_for(newer)
    assert newer_id == 6 + len(SHIPPED) == _newest_id(state, "tool_span")
    span: dict[str, Any] = next(
        r for r in map(EventCodec().decode, _recorded_payloads()) if r["event_type"] == "tool_span"
    )
    newer_record = {**span, "schema_version": version, "review_note": "checked by finance"}
    newer_payload = frame(newer_id, encode_body(newer, newer_record))

    new_consumer = EventCodec(RegistryResolvedSchemas(SchemaRegistryClient(url), upgraded))
    assert new_consumer.decode(newer_payload)["review_note"] == "checked by finance"
    old_rows = [new_consumer.decode(p) for p in earlier_payloads]
    assert [r["review_note"] for r in old_rows if r["event_type"] == "tool_span"] == [None]
    writer, _ = new_consumer.decode_entry(newer_payload)
    assert (writer.event_type, writer.version) == ("tool_span", version)

    # A consumer not yet upgraded reads the newer event with its own newest reader schema.
    old_consumer = EventCodec(RegistryResolvedSchemas(SchemaRegistryClient(url)))
    assert old_consumer.decode(newer_payload)["tool"] == span["tool"]


def test_registry_away_is_unavailable_not_bad_input(registry: tuple[str, RegistryState]) -> None:
    url, state = registry
    register_schemas(SchemaRegistryClient(url))
    state.down = True
    with pytest.raises(SchemaRegistryUnavailable, match="503"):
        RegistryIds(SchemaRegistryClient(url)).reframe(_recorded_payloads()[0])
    consumer = EventCodec(RegistryResolvedSchemas(SchemaRegistryClient(url)))
    with pytest.raises(SchemaRegistryUnavailable):
        consumer.decode(frame(6, b"\x00"))


def test_an_unregistered_schema_tells_to_run_register(registry: tuple[str, RegistryState]) -> None:
    url, _ = registry
    with pytest.raises(SchemaRegistryError, match="run `agenttrail schemas register"):
        RegistryIds(SchemaRegistryClient(url)).reframe(_recorded_payloads()[0])


def test_resolved_newest_versions_carry_registry_ids_and_take_the_fast_path(
    registry: tuple[str, RegistryState],
) -> None:
    url, state = registry
    register_schemas(SchemaRegistryClient(url))
    schemas = RegistryResolvedSchemas(SchemaRegistryClient(url))
    resolved = schemas.resolve_latest()
    assert resolved == {f: _newest_id(state, f) for f in FAMILIES}
    for family, schema_id in resolved.items():
        assert schemas.latest(family).schema_id == schema_id
        assert schemas.by_id(schema_id) is schemas.latest(family)
    payloads = _recorded_payloads()
    framed = [RegistryIds(SchemaRegistryClient(url)).reframe(p) for p in payloads]
    codec = EventCodec(schemas)
    fetched = len([r for r in state.requests if r[1].startswith("/schemas/ids/")])
    assert [codec.decode(m) for m in framed] == list(map(EventCodec().decode, payloads))
    assert len([r for r in state.requests if r[1].startswith("/schemas/ids/")]) == fetched


def test_an_unregistered_newest_version_gets_an_id_that_never_matches(
    registry: tuple[str, RegistryState],
) -> None:
    url, _ = registry
    schemas = RegistryResolvedSchemas(SchemaRegistryClient(url))
    resolved = schemas.resolve_latest()
    assert set(resolved.values()) == {RegistryResolvedSchemas.NOT_REGISTERED}
    assert all(schemas.latest(f).schema_id == -1 for f in FAMILIES)


def test_the_sdk_spools_while_the_registry_is_away_then_sends_with_registry_ids(
    registry: tuple[str, RegistryState], tmp_path: Path
) -> None:
    url, state = registry
    register_schemas(SchemaRegistryClient(url))
    state.down = True
    memory = InMemoryExporter()
    rec = Recorder(
        exporter=memory, schema_registry=url, agent="invoicer", tenant="acme", spool_dir=tmp_path
    )
    with rec.task("invoice_generation", entry={"order_id": "1"}) as task:
        with task.tool("get_order", args={"order_id": "1"}) as span:
            span.result({"ok": True})
    assert rec.flush(timeout=5.0), "every event is delivered or durably spooled"
    assert memory.records == [], "nothing is delivered while the registry is away"
    state.down = False
    wait_until(lambda: len(memory.records) == 3, timeout=60, what="spooled events delivered")
    report = rec.close()
    assert report.spooled == 0, report
    newest = {_newest_id(state, f) for f in FAMILIES}
    assert memory.records and all(read_header(r.value) in newest for r in memory.records)
    consumer = EventCodec(RegistryResolvedSchemas(SchemaRegistryClient(url)))
    events = [consumer.decode(r.value) for r in memory.records]
    assert [e["event_type"] for e in events] == [
        "state_transition",
        "tool_span",
        "state_transition",
        "checkpoint",  # sealed at close
    ]
    events = events[:-1]
    assert [e["seq"] for e in events] == [0, 1, 2]


def test_agenttrail_schema_registry_in_the_environment_frames_with_registry_ids(
    registry: tuple[str, RegistryState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = registry
    register_schemas(SchemaRegistryClient(url))
    monkeypatch.setenv("AGENTTRAIL_SCHEMA_REGISTRY", url)
    memory = InMemoryExporter()
    rec = Recorder.from_env(exporter=memory, spool_dir=tmp_path)
    with rec.task("triage"):
        pass
    assert rec.close().spooled == 0
    newest = {_newest_id(state, f) for f in FAMILIES}
    assert memory.records and {read_header(r.value) for r in memory.records} <= newest


def test_a_bad_registry_url_is_a_config_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(RecorderConfigError, match="AGENTTRAIL_SCHEMA_REGISTRY='ftp://x'"):
        Recorder(exporter=InMemoryExporter(), schema_registry="ftp://x", spool_dir=tmp_path)


def test_the_otlp_receivers_sink_frames_with_registry_ids_or_answers_unavailable(
    registry: tuple[str, RegistryState],
) -> None:
    from agenttrail.otlp._registry_sink import RegistryFramingSink
    from agenttrail.otlp._sink import MemorySink, SinkUnavailable

    url, state = registry
    register_schemas(SchemaRegistryClient(url))
    memory = MemorySink()
    sink = RegistryFramingSink(memory, RegistryIds(SchemaRegistryClient(url)))
    payloads = _recorded_payloads()
    state.down = True
    with pytest.raises(SinkUnavailable, match="503"):
        sink.produce([("t", p) for p in payloads])
    assert memory.records == [], "nothing produced while the registry is away"
    state.down = False
    sink.produce([("t", p) for p in payloads])
    consumer = EventCodec(RegistryResolvedSchemas(SchemaRegistryClient(url)))
    assert [consumer.decode(v) for _, v in memory.records] == [
        EventCodec().decode(p) for p in payloads
    ]


def test_an_unknown_id_waits_for_a_registry_that_comes_back_and_a_stop_ends_the_wait(
    registry: tuple[str, RegistryState],
) -> None:
    import threading

    url, state = registry
    register_schemas(SchemaRegistryClient(url))
    ours = _newest_id(state, "tool_span")
    state.down = True
    schemas = RegistryResolvedSchemas(SchemaRegistryClient(url), unavailable_wait_s=120)

    def revive() -> None:
        wait_until(lambda: len([r for r in state.requests if r[0] == "GET"]) >= 2, timeout=60)
        state.down = False

    reviver = threading.Thread(target=revive, daemon=True)
    reviver.start()
    assert schemas.by_id(ours).event_type == "tool_span", "resolved once the registry answered"
    reviver.join(timeout=60)

    state.down = True
    stop = threading.Event()
    waiting = RegistryResolvedSchemas(SchemaRegistryClient(url), unavailable_wait_s=120, stop=stop)
    stopper = threading.Thread(
        target=lambda: (
            wait_until(lambda: len(state.requests) >= 1, timeout=60),
            stop.set(),
        ),
        daemon=True,
    )
    stopper.start()
    with pytest.raises(SchemaRegistryUnavailable):
        waiting.by_id(_newest_id(state, "llm_call"))
    stopper.join(timeout=60)


def test_a_recorder_that_finds_up_through_up_json_frames_with_the_registry_it_names(
    registry: tuple[str, RegistryState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    url, state = registry
    register_schemas(SchemaRegistryClient(url))
    monkeypatch.delenv("AGENTTRAIL_BOOTSTRAP", raising=False)
    monkeypatch.delenv("AGENTTRAIL_SCHEMA_REGISTRY", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    up = {"pid": os.getpid(), "bootstrap": "127.0.0.1:1", "schema_registry": url}
    (data / "up.json").write_text(json.dumps(up))
    before = len(state.requests)
    rec = Recorder(data=data, spool_dir=tmp_path / "spool", close_timeout_s=2)
    with rec.task("triage"):
        pass
    wait_until(
        lambda: any(r[1].startswith("/subjects/") for r in state.requests[before:]),
        timeout=60,
        what="the recorder asked the registry up.json names for its ids",
    )
    rec.close(timeout=2)
