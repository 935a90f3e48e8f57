"""Migration files: naming, numbering, statement splitting, checksums (no database)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from agenttrail.events import EventType
from agenttrail.store import FAMILY_TABLES, MigrationError, discover


def test_repository_migrations_are_numbered_from_one_in_order() -> None:
    # Gaps are allowed: parallel work reserves number ranges (e.g. 0040-0049), and a
    # migration is applied by number once, whatever was applied around it.
    versions = [m.version for m in discover()]
    assert versions[0] == 1
    assert versions == sorted(set(versions))


def test_every_family_has_a_table_created_by_a_migration() -> None:
    sql = "\n".join(m.sql for m in discover())
    assert set(FAMILY_TABLES) == {str(e) for e in EventType}
    for table in (*FAMILY_TABLES.values(), "dead_letters", "ingest_ledger"):
        assert re.search(rf"CREATE TABLE IF NOT EXISTS {table}\b", sql), table


def test_migrations_never_update_or_delete_rows() -> None:
    for m in discover():
        text = m.sql.upper()
        assert "ALTER TABLE" not in text or (" UPDATE " not in text and " DELETE " not in text)


def test_llm_call_retention_is_at_least_30_days() -> None:
    sql = next(m.sql for m in discover() if "llm_calls" in m.sql)
    block = sql.split("CREATE TABLE IF NOT EXISTS llm_calls")[1].split(";")[0]
    days = int(re.search(r"INTERVAL (\d+) DAY", block).group(1))  # type: ignore[union-attr]
    assert days >= 30


def test_statements_split_on_line_end_semicolons_and_drop_comments(tmp_path: Path) -> None:
    text = "-- heading; with a semicolon\nCREATE TABLE a (x String DEFAULT ';');\n\nSELECT 1;\n"
    (tmp_path / "0001_first.sql").write_text(text)
    (m,) = discover(tmp_path)
    assert (m.version, m.name) == (1, "first")
    assert m.checksum == hashlib.sha256(text.encode()).hexdigest()
    assert m.statements() == ["CREATE TABLE a (x String DEFAULT ';')", "SELECT 1"]


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        (["1_short.sql"], "is not named NNNN"),
        (["0001_Upper.sql"], "is not named NNNN"),
        (["0001_a.sql", "0001_b.sql"], "share number 1"),
    ],
)
def test_bad_migration_files_are_refused(tmp_path: Path, files: list[str], fragment: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=fragment):
        discover(tmp_path)
