"""Each family's .avsc is the one source of its fields; names and the cost formula live once.

Checked without a database: the pydantic models, the table columns the migrations
create, and the event dicts the SDK builds all agree with the newest schema of their
family; every state or guard-kind name spelled out in SQL is a member of its enum; the
priced-cost formula is written in exactly one place. Each check also has a negative
test: a fixture that adds a field (or a name, or a formula) to one side only, which the
check must report.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import agenttrail.producer._sealer as sealer_module
from agenttrail._contracts import queries_dir, schemas_dir
from agenttrail.events import (
    AgentMessage,
    Checkpoint,
    EventType,
    GuardEvent,
    GuardKind,
    LlmCall,
    StateTransition,
    TaskState,
    ToolSpan,
    default_registry,
)
from agenttrail.events._contract import (
    column_mismatches,
    expected_columns,
    model_mismatches,
    shape_mismatches,
)
from agenttrail.events._ddl import table_columns
from agenttrail.events._sql_names import name_mismatches
from agenttrail.producer import LimitExceeded, Limits, Recorder
from agenttrail.producer.testing import InMemoryExporter
from agenttrail.store import FAMILY_TABLES

REPO = Path(__file__).resolve().parents[2]
MODELS: dict[str, type[BaseModel]] = {
    EventType.LLM_CALL: LlmCall,
    EventType.TOOL_SPAN: ToolSpan,
    EventType.STATE_TRANSITION: StateTransition,
    EventType.AGENT_MESSAGE: AgentMessage,
    EventType.GUARD_EVENT: GuardEvent,
    EventType.CHECKPOINT: Checkpoint,
}
FAMILIES = [str(e) for e in EventType]


def _schema(event_type: str) -> dict[str, Any]:
    return copy.deepcopy(default_registry().latest(event_type).schema)


def _migration_texts() -> list[str]:
    return [p.read_text() for p in sorted((queries_dir() / "migrations").glob("*.sql"))]


def _with_extra_field(schema: dict[str, Any], name: str = "carbon_grams") -> dict[str, Any]:
    """The schema with one optional field added before prev_hash (a typical v2)."""
    out = copy.deepcopy(schema)
    at = [f["name"] for f in out["fields"]].index("prev_hash")
    out["fields"].insert(at, {"name": name, "type": ["null", "double"], "default": None})
    return out


# -- pydantic models ---------------------------------------------------------------------


@pytest.mark.parametrize("event_type", FAMILIES)
def test_each_model_has_exactly_its_schemas_fields_types_and_nullability(
    event_type: str,
) -> None:
    assert model_mismatches(_schema(event_type), MODELS[event_type]) == []


def test_a_field_added_to_the_schema_only_is_reported_for_the_model() -> None:
    schema = _with_extra_field(_schema(EventType.TOOL_SPAN))
    problems = model_mismatches(schema, ToolSpan)
    assert problems == ["ToolSpan: schema field 'carbon_grams' has no model field"]


def test_a_field_added_to_the_model_only_is_reported() -> None:
    class ToolSpanPlus(ToolSpan):
        carbon_grams: float | None = None

    problems = model_mismatches(_schema(EventType.TOOL_SPAN), ToolSpanPlus)
    assert problems == ["ToolSpanPlus: model field 'carbon_grams' has no schema field"]


def test_nullability_and_type_disagreements_are_reported_inside_nested_records() -> None:
    schema = _schema(EventType.STATE_TRANSITION)
    boundary = next(f for f in schema["fields"] if f["name"] == "boundary")["type"][1]
    sub = next(f for f in boundary["fields"] if f["name"] == "entry_json")
    sub["type"] = ["null", "string"]  # the model keeps entry_json a required str
    step = next(f for f in schema["fields"] if f["name"] == "step")
    step["type"] = "string"
    problems = model_mismatches(schema, StateTransition)
    assert "TaskBoundary.entry_json: the schema makes it nullable, the model does not" in problems
    assert any(p.startswith("StateTransition.step: Avro string does not fit") for p in problems)
    assert len(problems) == 2


# -- DDL columns ---------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", FAMILIES)
def test_each_family_table_has_exactly_the_columns_its_schema_implies(event_type: str) -> None:
    tables = table_columns(_migration_texts())
    table = FAMILY_TABLES[event_type]
    assert column_mismatches(table, _schema(event_type), tables[table]) == []


def test_a_field_added_to_the_schema_but_not_to_the_ddl_is_reported() -> None:
    tables = table_columns(_migration_texts())
    schema = _with_extra_field(_schema(EventType.LLM_CALL))
    assert column_mismatches("llm_calls", schema, tables["llm_calls"]) == [
        "llm_calls: column 'carbon_grams' (Nullable(Float64)) follows from the schema but "
        "no migration creates it"
    ]


def test_a_migration_adding_the_column_makes_the_v2_schema_agree() -> None:
    later = (
        "ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS carbon_grams Nullable(Float64) "
        "AFTER hash;\n"
    )
    tables = table_columns([*_migration_texts(), later])
    schema = _with_extra_field(_schema(EventType.LLM_CALL))
    assert column_mismatches("llm_calls", schema, tables["llm_calls"]) == []


def test_a_column_added_to_the_ddl_but_not_to_the_schema_is_reported() -> None:
    later = (
        "-- a later migration\nALTER TABLE tool_spans ADD COLUMN region LowCardinality(String);\n"
    )
    tables = table_columns([*_migration_texts(), later])
    problems = column_mismatches("tool_spans", _schema(EventType.TOOL_SPAN), tables["tool_spans"])
    assert len(problems) == 1 and "column 'region' has no field in the schema" in problems[0]


def test_a_column_type_wider_or_narrower_than_the_avro_type_is_reported() -> None:
    ddl = [
        t.replace("attempt            Int32", "attempt            Int16")
        for t in _migration_texts()
    ]
    tables = table_columns(ddl)
    problems = column_mismatches("tool_spans", _schema(EventType.TOOL_SPAN), tables["tool_spans"])
    assert problems == ["tool_spans: column 'attempt' is Int16, the schema makes it Int32"]


def test_nested_records_flatten_into_has_and_prefixed_nullable_columns() -> None:
    columns = dict(expected_columns(_schema(EventType.STATE_TRANSITION)))
    assert columns["has_boundary"] == "Bool"
    assert columns["boundary_entry_json"] == "Nullable(String)"
    assert columns["boundary_max_steps"] == "Nullable(Int32)"
    assert columns["boundary_declared_tools"] == "Array(String)"
    assert "boundary" not in columns


# -- the SDK's event shapes ------------------------------------------------------------------


@pytest.fixture
def sdk_records(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """Every record the SDK's sealer encodes, captured as built (neither fastavro nor
    the SDK's compiled encoder reports a missing nullable field or an unknown key)."""
    captured: list[dict[str, Any]] = []
    real = sealer_module._Writer.seal

    def capture(writer: Any, record: dict[str, Any], prev_hash: str) -> bytes:
        framed = real(writer, record, prev_hash)
        captured.append(dict(record))  # with prev_hash and hash set, as encoded
        return framed

    monkeypatch.setattr(sealer_module._Writer, "seal", capture)
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path / "spool", agent="shape-check")
    with rec.task(
        "shape_check", entry={"order": 1}, limits=Limits(max_steps=1), tools=["get"]
    ) as task:
        with task.llm_call(model="m", messages=[{"role": "user", "content": "hi"}]) as call:
            call.respond(content="ok", input_tokens=3, output_tokens=2, finish_reason="stop")
        with task.tool("get", args={"id": 1}, side_effect="read") as span:
            span.result({"ok": True})
        task.agent_message(
            sender="planner", recipient="coder", contract="c.req", version="1", payload={"a": 1}
        )
        task.guard(GuardKind.CONFIRMATION_REQUESTED, action="get")
        task.transition(TaskState.WAITING_CONFIRMATION, reason="check")
        with pytest.raises(LimitExceeded, match="limit"):
            with task.llm_call(model="m", messages=[]) as call:
                call.respond(content="no", input_tokens=1, output_tokens=1)
    assert rec.close(timeout=30).complete
    yield captured


def test_the_sdk_builds_every_family_with_exactly_its_schemas_fields(
    sdk_records: list[dict[str, Any]],
) -> None:
    seen = {r["event_type"] for r in sdk_records}
    assert seen == set(FAMILIES), f"the scenario must emit every family, emitted {seen}"
    for record in sdk_records:
        # hash is set to "" for the canonical encoding; every key must be a schema field.
        assert shape_mismatches(_schema(record["event_type"]), record.keys()) == []


def test_a_field_added_to_the_schema_but_not_built_by_the_sdk_is_reported(
    sdk_records: list[dict[str, Any]],
) -> None:
    record = next(r for r in sdk_records if r["event_type"] == EventType.TOOL_SPAN)
    schema = _with_extra_field(_schema(EventType.TOOL_SPAN))
    assert shape_mismatches(schema, record.keys()) == [
        "ToolSpan: field 'carbon_grams' is in the schema but the record does not set it"
    ]


def test_a_key_the_sdk_sets_but_the_schema_lacks_is_reported(
    sdk_records: list[dict[str, Any]],
) -> None:
    record = dict(next(r for r in sdk_records if r["event_type"] == EventType.GUARD_EVENT))
    record["carbon_grams"] = 1.0
    assert shape_mismatches(_schema(EventType.GUARD_EVENT), record.keys()) == [
        "GuardEvent: the record sets 'carbon_grams', which the schema does not have"
    ]


# -- names spelled out in SQL ------------------------------------------------------------------


def _sql_sources() -> list[Path]:
    return [
        *sorted((REPO / "queries").rglob("*.sql")),
        *sorted((REPO / "dashboards").rglob("*.json")),
        *sorted((REPO / "agenttrail" / "query").rglob("*.py")),
    ]


def test_every_state_and_guard_kind_in_sql_is_a_member_of_its_enum() -> None:
    problems = [p for path in _sql_sources() for p in name_mismatches(path.read_text(), path.name)]
    assert problems == []


def test_the_sql_name_check_reads_the_places_that_spell_states_out() -> None:
    # Guard against a check that passes because it reads nothing.
    text = "\n".join(p.read_text() for p in _sql_sources())
    assert len(re.findall(r"to_state\s+(?:NOT\s+)?IN\s*\(", text)) >= 5


def test_a_misspelt_state_or_kind_in_sql_is_reported() -> None:
    sql = "SELECT 1 FROM t\nWHERE to_state = 'succeded' OR kind IN ('limit_exceeded', 'kil')"
    problems = name_mismatches(sql, "fixture.sql")
    assert len(problems) == 2
    assert problems[0].startswith("fixture.sql:2: to_state compared with 'succeded'")
    assert "'kil', which is not a GuardKind" in problems[1]


def test_a_terminal_state_list_missing_a_member_is_reported() -> None:
    sql = "WHERE to_state IN ('succeeded', 'failed', 'killed')"
    assert name_mismatches(sql, "q.sql") == [
        "q.sql:1: to_state lists terminal states ['failed', 'killed', 'succeeded'] but not "
        "['limit_exceeded']; list all of TERMINAL_STATES (or all failing ones)"
    ]
    assert (
        name_mismatches("WHERE to_state NOT IN ('failed', 'limit_exceeded', 'killed')", "q") == []
    )


def test_the_guard_event_schema_documents_exactly_the_guard_kinds() -> None:
    schema = json.loads((schemas_dir() / "guard_event" / "v1.avsc").read_text())
    doc = next(f for f in schema["fields"] if f["name"] == "kind")["doc"]
    assert set(re.findall(r"[a-z_]+", doc)) == {str(k) for k in GuardKind}


# -- one priced-cost formula -------------------------------------------------------------------

_PRICE_TERM = re.compile(r"\*\s*[\w.]*usd_per_mtok|usd_per_mtok\s*\*")
_VIEW = re.compile(
    r"CREATE\s+(OR\s+REPLACE\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE
)


def _live_views(texts: list[str]) -> dict[str, str]:
    """View name → the definition a store has after every migration ran."""
    live: dict[str, str] = {}
    for text in texts:
        body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--"))
        for statement in body.split(";"):
            m = _VIEW.search(statement)
            if m and (m.group(1) or m.group(2) not in live):
                live[m.group(2)] = statement
    return live


def _formula_sites(texts: list[str]) -> list[str]:
    return [name for name, sql in _live_views(texts).items() if _PRICE_TERM.search(sql)]


def test_the_cost_formula_is_defined_once_and_every_live_view_uses_it() -> None:
    texts = _migration_texts()
    assert _formula_sites(texts) == []
    definitions = [t for t in texts if "CREATE FUNCTION IF NOT EXISTS agenttrail_priced_cost" in t]
    assert len(definitions) == 1
    live = _live_views(texts)
    for view in ("llm_call_costs", "task_costs", "llm_metrics"):
        assert "agenttrail_priced_cost(" in live[view], view


SDK_PRICE_MIRROR = "agenttrail/events/_prices.py"
"""The one Python copy of the formula: the SDK prices calls for spend limits and cannot run
SQL. tests/integration/test_price_table_store.py proves it equals agenttrail_priced_cost."""


def test_no_python_module_writes_the_cost_formula_itself() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "agenttrail").rglob("*.py"))
        if _PRICE_TERM.search(p.read_text())
    ]
    assert offenders == [SDK_PRICE_MIRROR]


def test_a_view_that_writes_the_formula_out_again_is_reported() -> None:
    later = (
        "CREATE OR REPLACE VIEW task_costs AS SELECT sum(u.unreported_output_tokens "
        "* p.output_usd_per_mtok) / 1e6 AS cost_usd FROM llm_usage_by_task AS u;\n"
    )
    assert _formula_sites([*_migration_texts(), later]) == ["task_costs"]
