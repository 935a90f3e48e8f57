"""The schema contract checker (agenttrail.events._compat) and ``agenttrail schemas``."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import pytest
from click.testing import CliRunner

from agenttrail._contracts import schemas_dir
from agenttrail.cli import main
from agenttrail.events import EventCodec, RegistryError, SchemaRegistry, frame
from agenttrail.events._compat import ENVELOPE_FIELDS, CheckReport, Problem, check_registry

FIXTURES = Path(__file__).parent.parent / "fixtures"
INCOMPATIBLE = FIXTURES / "schemas_incompatible"
REUSED_ID = FIXTURES / "schemas_reused_id"
FAMILIES = [
    "agent_message",
    "checkpoint",
    "guard_event",
    "llm_call",
    "state_transition",
    "tool_span",
]


# --- helpers -----------------------------------------------------------------------


def copy_shipped(tmp_path: Path) -> Path:
    """A writable copy of the shipped schemas/ at their first versions (every family at
    v1 with its shipped id, later versions left out), outside any git repository.

    The checker's rules are tested by adding a v2 (or more) to it, whatever versions
    the shipped families have reached.
    """
    root = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), root)
    registry = read_json(root / "registry.json")
    later = [e for e in registry["schemas"] if e["version"] > 1]
    for entry in later:
        (root / entry["path"]).unlink()
    registry["schemas"] = [e for e in registry["schemas"] if e["version"] == 1]
    write_json(root / "registry.json", registry)
    return root


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def add_version(
    root: Path,
    family: str,
    version: int,
    schema_id: int,
    change: Callable[[list[dict[str, Any]]], None],
    base_version: int = 1,
) -> dict[str, Any]:
    """Register ``family`` v``version`` as a copy of v``base_version`` with ``change`` applied."""
    schema = copy.deepcopy(read_json(root / family / f"v{base_version}.avsc"))
    change(schema["fields"])
    write_json(root / family / f"v{version}.avsc", schema)
    registry = read_json(root / "registry.json")
    registry["schemas"].append(
        {
            "id": schema_id,
            "event_type": family,
            "version": version,
            "path": f"{family}/v{version}.avsc",
        }
    )
    write_json(root / "registry.json", registry)
    return schema


def insert_before_prev_hash(new_field: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    """A change that adds ``new_field`` just before the hash-chain fields."""

    def change(fields: list[dict[str, Any]]) -> None:
        at = [f["name"] for f in fields].index("prev_hash")
        fields.insert(at, new_field)

    return change


def set_type(name: str, avro_type: Any) -> Callable[[list[dict[str, Any]]], None]:
    def change(fields: list[dict[str, Any]]) -> None:
        for f in fields:
            if f["name"] == name:
                f["type"] = avro_type

    return change


def rules(report: CheckReport) -> list[str]:
    return [p.rule for p in report.problems]


def only(report: CheckReport, rule: str) -> Problem:
    found = [p for p in report.problems if p.rule == rule]
    assert len(found) == 1, f"expected one {rule}, got {report.problems}"
    return found[0]


def edit_registry(root: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    registry = read_json(root / "registry.json")
    edit(registry)
    write_json(root / "registry.json", registry)


# --- the shipped contract ------------------------------------------------------------


def test_shipped_schemas_satisfy_the_contract() -> None:
    report = check_registry(schemas_dir())
    assert report.problems == []
    assert report.ok
    shipped = read_json(schemas_dir() / "registry.json")["schemas"]
    assert report.entries == len(shipped)
    assert report.families == {
        family: sorted(e["version"] for e in shipped if e["event_type"] == family)
        for family in FAMILIES
    }
    assert all(versions[0] == 1 for versions in report.families.values())


def test_envelope_list_is_the_head_and_tail_of_every_v1_schema() -> None:
    for family in FAMILIES:
        names = [f["name"] for f in read_json(schemas_dir() / family / "v1.avsc")["fields"]]
        assert tuple(names[:16]) + tuple(names[-2:]) == ENVELOPE_FIELDS, family
    assert ENVELOPE_FIELDS[0] == "event_id"
    assert ENVELOPE_FIELDS[-1] == "hash"


def test_shipped_registry_declares_retired_ids() -> None:
    assert read_json(schemas_dir() / "registry.json")["retired_ids"] == []


# --- compatibility -------------------------------------------------------------------


def test_incompatible_fixture_names_field_versions_and_rule() -> None:
    report = check_registry(INCOMPATIBLE)

    assert not report.ok
    assert sorted(rules(report)) == ["READER_FIELD_MISSING_DEFAULT_VALUE", "TYPE_MISMATCH"]
    missing = only(report, "READER_FIELD_MISSING_DEFAULT_VALUE")
    assert (missing.family, missing.versions, missing.field) == (
        "tool_span",
        (2, 1),
        "latency_bucket",
    )
    assert missing.message == (
        "tool_span v2 cannot read v1: field 'latency_bucket' has no default in v2 and v1 "
        "does not write it (READER_FIELD_MISSING_DEFAULT_VALUE)"
    )
    assert '"default": null' in missing.hint
    changed = only(report, "TYPE_MISMATCH")
    assert changed.field == "attempt"
    assert "'attempt' is string in v2 but int in v1" in changed.message
    assert changed.hint


def test_compatible_v2_passes_and_fastavro_reads_v1_data_with_v2(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)
    v1 = read_json(root / "tool_span" / "v1.avsc")
    add_version(
        root,
        "tool_span",
        2,
        7,
        insert_before_prev_hash(
            {"name": "cache_hit", "type": ["null", "boolean"], "default": None}
        ),
    )

    report = check_registry(root)
    assert report.problems == []
    assert report.pairs_checked == 1
    assert report.families["tool_span"] == [1, 2]

    v1_record = {
        "event_id": "0190a3b4-0000-7000-8000-000000000001",
        "event_type": "tool_span",
        "schema_version": 1,
        "tenant": "acme",
        "task_id": "task-1",
        "task_type": "invoice_generation",
        "agent_name": "billing",
        "agent_version": "1.4.0",
        "trace_id": "0" * 32,
        "span_id": "1" * 16,
        "parent_span_id": None,
        "step": 2,
        "seq": 7,
        "ts": 1_700_000_000_000_000,
        "producer_id": "p-1",
        "producer_seq": 41,
        "tool": "send_invoice",
        "tool_version": None,
        "args_json": '{"to": "[redacted]"}',
        "args_hash": "ab" * 32,
        "idempotency_key": "inv-9",
        "attempt": 1,
        "side_effect": "irreversible",
        "declared": True,
        "result_summary": "sent",
        "result_size": 4,
        "latency_ms": 12.5,
        "success": True,
        "error_type": None,
        "error_detail": None,
        "redactions": ["$.to"],
        "prev_hash": "",
        "hash": "cd" * 32,
    }
    body = BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(v1, named_schemas={}), v1_record)

    # Straight fastavro resolution, and the codec's path (a framed v1 id read as v2).
    v2 = fastavro.parse_schema(read_json(root / "tool_span" / "v2.avsc"), named_schemas={})
    v1_parsed = fastavro.parse_schema(v1, named_schemas={})
    decoded = fastavro.schemaless_reader(BytesIO(body.getvalue()), v1_parsed, v2)
    codec = EventCodec(SchemaRegistry.load(root))
    writer, via_codec = codec.decode_entry(frame(2, body.getvalue()))

    for record in (decoded, via_codec):
        assert isinstance(record, dict)
        assert record["cache_hit"] is None
        assert record["tool"] == "send_invoice"
        assert record["redactions"] == ["$.to"]
        assert record["ts"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert writer.version == 1


def test_backward_transitive_checks_every_earlier_version(tmp_path: Path) -> None:
    # v2 adds 'region' with a default; v3 drops the default. v3 reads v2 (which always
    # writes region) but not v1: only a transitive check notices.
    root = copy_shipped(tmp_path)
    region = {"name": "region", "type": "string", "default": "eu"}
    add_version(root, "guard_event", 2, 7, insert_before_prev_hash(region))
    add_version(
        root,
        "guard_event",
        3,
        8,
        lambda fields: fields[-3].pop("default"),
        base_version=2,
    )

    report = check_registry(root)

    assert report.pairs_checked == 3  # (2,1), (3,1), (3,2)
    problem = only(report, "READER_FIELD_MISSING_DEFAULT_VALUE")
    assert (problem.versions, problem.field) == ((3, 1), "region")
    assert problem.message.startswith("guard_event v3 cannot read v1: field 'region'")


def test_nested_record_field_is_named_by_its_path(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)

    def change(fields: list[dict[str, Any]]) -> None:
        boundary = next(f for f in fields if f["name"] == "boundary")
        for inner in boundary["type"][1]["fields"]:
            if inner["name"] == "max_steps":
                inner["type"] = ["null", "string"]

    add_version(root, "state_transition", 2, 7, change)

    problem = only(check_registry(root), "MISSING_UNION_BRANCH")
    assert problem.field == "boundary.max_steps"
    assert "field 'boundary.max_steps' is union [null, string] in v2" in problem.message
    assert "v1's int" in problem.message


def test_type_promotion_int_to_long_is_compatible(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)
    add_version(root, "tool_span", 2, 7, set_type("attempt", "long"))
    assert check_registry(root).problems == []


def test_bytes_to_string_promotion_is_refused_by_the_fastavro_round_trip(tmp_path: Path) -> None:
    # The avro checker allows bytes→string, but bytes that are not UTF-8 cannot be read.
    root = copy_shipped(tmp_path)
    add_version(
        root,
        "guard_event",
        2,
        7,
        insert_before_prev_hash({"name": "blob", "type": ["null", "bytes"], "default": None}),
    )
    add_version(root, "guard_event", 3, 8, set_type("blob", ["null", "string"]), base_version=2)

    report = check_registry(root)

    assert rules(report) == ["FASTAVRO_READ_FAILED"]
    assert report.problems[0].versions == (3, 2)


def test_renamed_record_is_a_name_mismatch(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)
    add_version(root, "agent_message", 2, 7, lambda fields: None)
    schema = read_json(root / "agent_message" / "v2.avsc")
    schema["name"] = "AgentMail"
    write_json(root / "agent_message" / "v2.avsc", schema)

    problem = only(check_registry(root), "NAME_MISMATCH")
    assert "agenttrail.events.AgentMail in v2 but agenttrail.events.AgentMessage in v1" in (
        problem.message
    )


# --- registry structure ---------------------------------------------------------------


def _duplicate_id(reg: dict[str, Any]) -> None:
    reg["schemas"][1]["id"] = 1


def _duplicate_version(reg: dict[str, Any]) -> None:
    reg["schemas"].append(dict(reg["schemas"][0], id=9))


def _version_gap(reg: dict[str, Any]) -> None:
    reg["schemas"][0]["version"] = 2
    reg["schemas"][0]["path"] = "llm_call/v2.avsc"


def _zero_id(reg: dict[str, Any]) -> None:
    reg["schemas"][0]["id"] = 0


def _bool_id(reg: dict[str, Any]) -> None:
    reg["schemas"][0]["id"] = True


def _text_id(reg: dict[str, Any]) -> None:
    reg["schemas"][0]["id"] = "1"


def _missing_file(reg: dict[str, Any]) -> None:
    reg["schemas"].append(
        {"id": 7, "event_type": "tool_span", "version": 2, "path": "tool_span/v2.avsc"}
    )


def _no_retired_ids(reg: dict[str, Any]) -> None:
    del reg["retired_ids"]


def _wrong_path(reg: dict[str, Any]) -> None:
    reg["schemas"][0]["path"] = "../llm_call.avsc"


def _missing_version(reg: dict[str, Any]) -> None:
    del reg["schemas"][0]["version"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_duplicate_id, "DUPLICATE_ID"),
        (_duplicate_version, "DUPLICATE_VERSION"),
        (_zero_id, "ID_NOT_POSITIVE_INT"),
        (_bool_id, "ID_NOT_POSITIVE_INT"),
        (_text_id, "ID_NOT_POSITIVE_INT"),
        (_missing_file, "SCHEMA_FILE_MISSING"),
        (_no_retired_ids, "RETIRED_IDS_MALFORMED"),
        (_wrong_path, "PATH_CONVENTION"),
        (_missing_version, "REGISTRY_MALFORMED"),
    ],
)
def test_registry_mistake_is_reported(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    root = copy_shipped(tmp_path)
    edit_registry(root, edit)
    assert rules(check_registry(root)) == [expected]


def test_version_gap_names_the_missing_version(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)
    shutil.copy(root / "llm_call" / "v1.avsc", root / "llm_call" / "v3.avsc")
    edit_registry(
        root,
        lambda reg: reg["schemas"].append(
            {"id": 7, "event_type": "llm_call", "version": 3, "path": "llm_call/v3.avsc"}
        ),
    )
    problem = only(check_registry(root), "VERSION_GAP")
    assert problem.message == "llm_call has v1, v3; missing v2."
    assert problem.versions == (2,)


def test_duplicate_id_hint_names_the_next_free_id(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)
    edit_registry(root, _duplicate_id)
    edit_registry(root, lambda reg: reg["retired_ids"].append(8))
    problem = only(check_registry(root), "DUPLICATE_ID")
    assert problem.message == "id 1 is used by llm_call v1 and again by tool_span v1."
    assert problem.hint.endswith("The next free id is 9.")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda fields: fields.append(fields.pop(-2)), "HASH_NOT_LAST"),  # prev_hash last
        (lambda fields: fields.pop(0), "ENVELOPE_FIELD_MISSING"),  # no event_id
    ],
)
def test_schema_without_proper_envelope_is_reported(
    tmp_path: Path, change: Callable[[list[dict[str, Any]]], None], expected: str
) -> None:
    root = copy_shipped(tmp_path)
    schema = read_json(root / "guard_event" / "v1.avsc")
    change(schema["fields"])
    write_json(root / "guard_event" / "v1.avsc", schema)
    problem = only(check_registry(root), expected)
    assert (problem.family, problem.schema_id) == ("guard_event", 5)


def test_schema_that_is_not_avro_or_not_json_is_reported(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)
    (root / "llm_call" / "v1.avsc").write_text("{not json", encoding="utf-8")
    schema = read_json(root / "tool_span" / "v1.avsc")
    schema["fields"][2]["type"] = "integer"  # not an Avro type
    write_json(root / "tool_span" / "v1.avsc", schema)
    assert sorted(rules(check_registry(root))) == ["SCHEMA_NOT_AVRO", "SCHEMA_NOT_JSON"]


def test_files_that_are_not_utf8_are_reported_or_refused(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)
    (root / "agent_message" / "v1.avsc").write_bytes(b'{"type": "record", "name": "\xff"}')
    assert rules(check_registry(root)) == ["SCHEMA_NOT_JSON"]
    (root / "registry.json").write_bytes(b"\xfe\xff")
    with pytest.raises(RegistryError, match="not UTF-8"):
        check_registry(root)


def test_reused_id_fixture_is_refused() -> None:
    report = check_registry(REUSED_ID)
    problem = only(report, "RETIRED_ID_IN_USE")
    assert (problem.schema_id, problem.family, problem.versions) == (3, "tool_span", (2,))
    assert rules(report) == ["RETIRED_ID_IN_USE"]  # the v2 itself is compatible


@pytest.mark.parametrize(
    "make", [lambda root: root / "absent", lambda root: root / "registry.json"]
)
def test_unreadable_directory_raises_registry_error(
    tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    root = copy_shipped(tmp_path)
    with pytest.raises(RegistryError, match="does not exist or is not a directory"):
        check_registry(make(root))


def test_registry_that_is_not_json_raises_registry_error(tmp_path: Path) -> None:
    root = copy_shipped(tmp_path)
    (root / "registry.json").write_text('{"schemas": [', encoding="utf-8")
    with pytest.raises(RegistryError, match=r"registry.json is not valid JSON \(line 1"):
        check_registry(root)


# --- history: ids are never reused ------------------------------------------------------


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A copy of the shipped schemas with tool_span v2 (id 7), committed in a fresh repo."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = copy_shipped(tmp_path)
    optional = {"name": "cache_hit", "type": ["null", "boolean"], "default": None}
    add_version(root, "tool_span", 2, 7, insert_before_prev_hash(optional))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "schemas")
    return root


def test_committed_unchanged_registry_passes_and_is_compared(committed: Path) -> None:
    report = check_registry(committed)
    assert report.problems == []
    assert report.compared_with_head


def test_outside_git_the_history_check_is_skipped(tmp_path: Path) -> None:
    report = check_registry(copy_shipped(tmp_path))
    assert not report.compared_with_head
    assert report.ok


def test_id_that_names_another_schema_than_at_head_is_a_reuse(committed: Path) -> None:
    # tool_span v2 withdrawn, its id 7 handed to guard_event v2.
    (committed / "tool_span" / "v2.avsc").unlink()
    shutil.copy(committed / "guard_event" / "v1.avsc", committed / "guard_event" / "v2.avsc")

    def hand_over(reg: dict[str, Any]) -> None:
        reg["schemas"][-1] = {
            "id": 7,
            "event_type": "guard_event",
            "version": 2,
            "path": "guard_event/v2.avsc",
        }

    edit_registry(committed, hand_over)

    problem = only(check_registry(committed), "ID_REUSED")
    assert problem.message == "id 7 named tool_span v2 at HEAD and now names guard_event v2."
    assert problem.hint.endswith("The next free id is 8.")


def test_id_removed_without_retiring_is_reported(committed: Path) -> None:
    edit_registry(committed, lambda reg: reg["schemas"].pop())
    problem = only(check_registry(committed), "ID_DROPPED")
    assert problem.schema_id == 7
    assert "tool_span v2 at HEAD" in problem.message


def test_id_removed_and_retired_passes(committed: Path) -> None:
    def retire(reg: dict[str, Any]) -> None:
        reg["schemas"].pop()
        reg["retired_ids"].append(7)

    edit_registry(committed, retire)
    assert check_registry(committed).problems == []


def test_renumbered_version_is_reported(committed: Path) -> None:
    def renumber(reg: dict[str, Any]) -> None:
        reg["schemas"][-1]["id"] = 8
        reg["retired_ids"].append(7)

    edit_registry(committed, renumber)
    problem = only(check_registry(committed), "ID_RENUMBERED")
    assert problem.message == "tool_span v2 had id 7 at HEAD and now has id 8."


# --- the command line ---------------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["schemas", *args])


def test_cli_check_shipped_schemas_exits_0() -> None:
    result = run("check")
    assert result.exit_code == 0, result.output
    assert "OK: the schema contract holds." in result.output


def test_cli_check_incompatible_exits_1_with_a_readable_report() -> None:
    result = run("check", "--dir", str(INCOMPATIBLE))
    assert result.exit_code == 1
    assert "2 problem(s):" in result.output
    assert "field 'latency_bucket' has no default in v2" in result.output
    assert "(READER_FIELD_MISSING_DEFAULT_VALUE)" in result.output
    assert "fix: " in result.output


def test_cli_check_json_lists_problems() -> None:
    result = run("check", "--dir", str(REUSED_ID), "--json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["ok"] is False
    assert [p["rule"] for p in doc["problems"]] == ["RETIRED_ID_IN_USE"]
    assert doc["problems"][0]["schema_id"] == 3


def test_cli_check_unreadable_directory_exits_2(tmp_path: Path) -> None:
    result = run("check", "--dir", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_cli_check_json_error_exits_2(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text("[1, 2", encoding="utf-8")
    result = run("check", "--dir", str(tmp_path), "--json")
    assert result.exit_code == 2
    assert json.loads(result.output)["ok"] is False


def test_cli_list_shows_id_family_version_path_and_field_count() -> None:
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    registry = read_json(schemas_dir() / "registry.json")
    assert [(r["id"], r["family"], r["version"], r["path"]) for r in rows] == [
        (e["id"], e["event_type"], e["version"], e["path"]) for e in registry["schemas"]
    ]
    for row in rows:
        assert row["fields"] == len(read_json(schemas_dir() / row["path"])["fields"])
    assert {(r["family"], r["version"]): r["fields"] for r in rows}[("tool_span", 1)] == 33


def test_cli_list_text_has_a_header_and_one_line_per_schema() -> None:
    result = run("list", "--dir", str(INCOMPATIBLE))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "FAMILY", "VERSION", "PATH", "FIELDS"]
    assert [line.split() for line in lines[1:]] == [
        ["2", "tool_span", "1", "tool_span/v1.avsc", "33"],
        ["6", "tool_span", "2", "tool_span/v2.avsc", "34"],
    ]


def test_cli_list_unreadable_registry_exits_2(tmp_path: Path) -> None:
    assert run("list", "--dir", str(tmp_path)).exit_code == 2


@pytest.mark.parametrize("args", [(), ("check",), ("list",)])
def test_cli_help_has_an_example(args: tuple[str, ...]) -> None:
    result = run(*args, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "agenttrail schemas" in result.output
