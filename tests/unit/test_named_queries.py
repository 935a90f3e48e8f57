"""Named query files: header parsing, placeholder checks, parameter conversion (no database)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from agenttrail.query import (
    QueryDefinitionError,
    QueryParamError,
    UnknownQueryError,
    discover_named_queries,
    forensics_dir,
    load_named_query,
    parse_named_query,
)

GOOD = """\
-- purpose: Tasks that did something twice.
-- why: The first line of the explanation
--   and its continuation.
--
-- param: min_calls UInt32 = 2 -- calls that make a group
-- param: tenant Nullable(String) = NULL -- only this tenant
-- param: since DateTime64(6, 'UTC') = 1970-01-01 -- lower bound
-- param: task_id String -- the task; required
-- param: ratio Float64 = 0.5 -- a fraction -- with a dash in its meaning
-- column: task_id String -- the task
-- column: calls UInt64 -- how many
SELECT task_id, count() AS calls
FROM tool_spans
WHERE ({tenant:Nullable(String)} IS NULL OR tenant = {tenant:Nullable(String)})
  AND ts >= {since:DateTime64(6,  'UTC')} AND task_id = {task_id:String}
  AND latency_ms > {ratio:Float64}
GROUP BY task_id
HAVING calls >= {min_calls:UInt32};
"""

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def test_header_gives_name_purpose_why_params_and_columns() -> None:
    query = parse_named_query(GOOD, Path("/q/twice.sql"))
    assert query.name == "twice"
    assert query.purpose == "Tasks that did something twice."
    assert query.why == "The first line of the explanation and its continuation."
    assert [(p.name, p.type, p.default_text) for p in query.params] == [
        ("min_calls", "UInt32", "2"),
        ("tenant", "Nullable(String)", "NULL"),
        ("since", "DateTime64(6, 'UTC')", "1970-01-01"),
        ("task_id", "String", None),
        ("ratio", "Float64", "0.5"),
    ]
    assert query.param("ratio").meaning == "a fraction -- with a dash in its meaning"
    assert [p.required for p in query.params] == [False, False, False, True, False]
    assert [(c.name, c.type, c.meaning) for c in query.columns] == [
        ("task_id", "String", "the task"),
        ("calls", "UInt64", "how many"),
    ]
    assert query.sql.startswith("SELECT task_id")
    assert query.sql.endswith("{min_calls:UInt32}")  # header and final semicolon dropped


def test_defaults_are_converted_and_filled_in() -> None:
    query = parse_named_query(GOOD, Path("/q/twice.sql"))
    assert query.bind({"task_id": "t-1"}, NOW) == {
        "task_id": "t-1",
        "min_calls": 2,
        "tenant": None,
        "since": datetime(1970, 1, 1, tzinfo=UTC),
        "ratio": 0.5,
    }


def test_given_values_are_converted_to_their_declared_types() -> None:
    query = parse_named_query(GOOD, Path("/q/twice.sql"))
    bound = query.bind(
        {"task_id": " padded ", "min_calls": "7", "tenant": "acme", "since": "24h", "ratio": 3},
        NOW,
    )
    assert bound["task_id"] == " padded "  # strings are data, kept exactly
    assert bound["min_calls"] == 7
    assert bound["tenant"] == "acme"
    assert bound["since"] == datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    assert bound["ratio"] == 3.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-15", datetime(2026, 1, 15, tzinfo=UTC)),
        ("2026-01-15T10:22:44Z", datetime(2026, 1, 15, 10, 22, 44, tzinfo=UTC)),
        ("2026-01-15 10:22:44", datetime(2026, 1, 15, 10, 22, 44, tzinfo=UTC)),
        ("2026-01-15T12:22:44+02:00", datetime(2026, 1, 15, 10, 22, 44, tzinfo=UTC)),
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(days=14)),
    ],
)
def test_times_are_iso_8601_or_an_age_before_now(text: str, expected: datetime) -> None:
    query = parse_named_query(GOOD, Path("/q/twice.sql"))
    assert query.param("since").convert(text, NOW) == expected


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("min_calls", "-1", "0 to 4294967295"),
        ("min_calls", "4294967296", "0 to 4294967295"),
        ("min_calls", "3.0", "whole number"),
        ("min_calls", "1 OR 1=1", "whole number"),
        ("min_calls", "", "whole number"),
        ("ratio", "nan", "finite"),
        ("ratio", "half", "number"),
        ("since", "yesterday", "ISO date/time"),
        ("since", "5y", "ISO date/time"),
    ],
)
def test_bad_values_are_refused_with_what_to_write(name: str, text: str, says: str) -> None:
    query = parse_named_query(GOOD, Path("/q/twice.sql"))
    with pytest.raises(QueryParamError) as info:
        query.bind({"task_id": "t", name: text}, NOW)
    message = str(info.value)
    assert name in message and repr(text) in message and says in message


def test_an_unknown_parameter_is_refused_with_a_suggestion() -> None:
    query = parse_named_query(GOOD, Path("/q/twice.sql"))
    with pytest.raises(QueryParamError, match=r"no parameter 'min_call'.*Did you mean min_calls"):
        query.bind({"task_id": "t", "min_call": "3"})


def test_a_missing_required_parameter_is_refused() -> None:
    query = parse_named_query(GOOD, Path("/q/twice.sql"))
    with pytest.raises(QueryParamError, match=r"needs parameter task_id.*--param task_id="):
        query.bind({})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False), ("0", False)],
)
def test_bool_values(text: str, expected: bool) -> None:
    header = "-- purpose: p\n-- param: flag Bool = false -- a flag\n-- column: x UInt8 -- x\n"
    query = parse_named_query(header + "SELECT {flag:Bool} AS x", Path("/q/flags.sql"))
    assert query.bind({"flag": text}) == {"flag": expected}


def test_other_scalar_types_convert() -> None:
    header = (
        "-- purpose: p\n"
        "-- param: d Date = 2026-01-01 -- a date\n"
        "-- param: small Int8 = -128 -- the smallest Int8\n"
        "-- param: big UInt64 = 18446744073709551615 -- the largest UInt64\n"
        "-- column: x UInt8 -- x\n"
    )
    sql = "SELECT {d:Date}, {small:Int8}, {big:UInt64} AS x"
    query = parse_named_query(header + sql, Path("/q/types.sql"))
    assert query.bind({}) == {"d": date(2026, 1, 1), "small": -128, "big": 2**64 - 1}
    with pytest.raises(QueryParamError, match="-128 to 127"):
        query.bind({"small": "128"})


def _broken(header_lines: list[str], sql: str = "SELECT {n:UInt32} AS x") -> str:
    return "\n".join(header_lines) + "\n" + sql


BASE = ["-- purpose: p", "-- param: n UInt32 = 1 -- a number", "-- column: x UInt32 -- x"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param(_broken(BASE[1:]), "exactly one non-empty", id="no-purpose"),
        pytest.param(_broken([*BASE, "-- purpose: again"]), "exactly one", id="two-purposes"),
        pytest.param(
            _broken([*BASE, "-- parm: m UInt32 = 1 -- typo"]), "neither a directive", id="typo"
        ),
        pytest.param(_broken([*BASE, "-- some prose"]), "neither a directive", id="prose"),
        pytest.param(
            _broken([BASE[0], "-- param: n UInt32 = 1", BASE[2]]),
            "say what it means",
            id="param-without-meaning",
        ),
        pytest.param(
            _broken([BASE[0], "-- param: n = 1 -- no type", BASE[2]]), "has no type", id="no-type"
        ),
        pytest.param(
            _broken([BASE[0], "-- param: n UInt32 = -- empty", BASE[2]]),
            "without a default",
            id="empty-default",
        ),
        pytest.param(
            _broken([BASE[0], "-- param: n UInt32 = NULL -- null", BASE[2]]),
            "not Nullable",
            id="null-default-not-nullable",
        ),
        pytest.param(
            _broken([BASE[0], "-- param: n UInt32 = abc -- bad", BASE[2]]),
            "bad default",
            id="bad-default",
        ),
        pytest.param(
            _broken([*BASE, "-- param: n UInt32 = 2 -- twice"]), "n declared twice", id="dup-param"
        ),
        pytest.param(
            _broken([BASE[0], "-- param: n Array(String) -- list", BASE[2]]),
            "not supported",
            id="unsupported-type",
        ),
        pytest.param(_broken(BASE[:2]), "`-- column:` lines", id="no-columns"),
        pytest.param(
            _broken([*BASE, "-- column: x UInt32 -- again"]),
            "column x declared twice",
            id="dup-column",
        ),
        pytest.param(
            _broken(BASE, "SELECT {n:UInt64} AS x"),
            "does not match the declared type",
            id="placeholder-type-differs",
        ),
        pytest.param(
            _broken(BASE, "SELECT {n:UInt32}, {m:UInt32} AS x"),
            "declares no parameter m",
            id="undeclared-placeholder",
        ),
        pytest.param(
            _broken([*BASE, "-- param: m UInt32 = 1 -- unused"]), "never uses", id="unused-param"
        ),
        pytest.param(_broken(BASE, ""), "no SQL", id="no-sql"),
        pytest.param(
            _broken(BASE, "\n-- param: m UInt32 = 1 -- late\nSELECT {n:UInt32}"),
            "after the header",
            id="directive-after-blank-line",
        ),
    ],
)
def test_malformed_files_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(QueryDefinitionError) as info:
        parse_named_query(text, Path("/q/broken.sql"))
    assert says in str(info.value)
    assert "/q/broken.sql" in str(info.value)  # the message names the file


def test_a_file_name_that_is_not_a_query_name_is_refused() -> None:
    with pytest.raises(QueryDefinitionError, match="lower-case"):
        parse_named_query(GOOD, Path("/q/Twice-Query.sql"))


def test_discovery_reads_a_directory_and_names_unknown_queries(tmp_path: Path) -> None:
    (tmp_path / "twice.sql").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("not a query")
    assert list(discover_named_queries(tmp_path)) == ["twice"]
    with pytest.raises(UnknownQueryError, match="Did you mean twice"):
        load_named_query("twise", tmp_path)


# -- the repository's queries ---------------------------------------------------------------

REQUIRED = {
    "repeated_identical_tool_calls",
    "hallucinated_tools",
    "tool_loops",
    "limit_hits",
    "cost_outliers",
    "slowest_tool_spans",
    "first_failing_span",
    "contract_version_mismatches",
    "context_growth",
}
PLACEHOLDER = re.compile(r"\{(\w+):([^{}]+)\}")
RAW_TABLES = {"llm_calls", "tool_spans", "state_transitions", "agent_messages", "guard_events"}


def test_every_forensics_file_parses_and_the_required_queries_exist() -> None:
    files = sorted(p.stem for p in forensics_dir().glob("*.sql"))
    queries = discover_named_queries()
    assert list(queries) == files
    assert set(files) >= REQUIRED


def test_every_placeholder_in_every_file_is_a_documented_parameter() -> None:
    # Read independently of the parser: the raw text, every {name:Type}.
    for path in sorted(forensics_dir().glob("*.sql")):
        text = path.read_text()
        documented = dict(re.findall(r"^-- param: (\w+) (.+?)(?: = .*?)? -- ", text, re.M))
        used = {(n, " ".join(t.split())) for n, t in PLACEHOLDER.findall(text)}
        assert used, path.name
        for name, type_text in used:
            assert documented.get(name) == type_text, (path.name, name)
        assert {n for n, _ in used} == set(documented), path.name


def test_every_query_filters_by_tenant_and_time_and_takes_a_limit() -> None:
    for query in discover_named_queries().values():
        types = {p.name: p.type for p in query.params}
        assert types.get("tenant") == "Nullable(String)", query.name
        assert types.get("since") == "DateTime64(6, 'UTC')", query.name
        assert types.get("limit") == "UInt32", query.name
        assert "LIMIT {limit:UInt32}" in query.sql, query.name
        assert not any(p.required for p in query.params), query.name
        assert query.why and query.columns, query.name


def test_queries_read_only_the_raw_event_tables() -> None:
    for query in discover_named_queries().values():
        tables = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)\b(?!\s*\()", query.sql, re.I))
        ctes = set(re.findall(r"\b([a-z_]+)\s+AS\s*\(", query.sql, re.I))
        assert tables - ctes <= RAW_TABLES, (query.name, tables - ctes)
        assert tables & RAW_TABLES, query.name
        upper = query.sql.upper()
        for word in ("INSERT ", "ALTER ", "DROP ", "DELETE ", "TRUNCATE "):
            assert word not in upper, (query.name, word)
