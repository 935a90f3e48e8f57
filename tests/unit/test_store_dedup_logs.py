"""Orphaned deduplication records: which records a crash left without their part."""

from __future__ import annotations

from pathlib import Path

from agenttrail.store._dedup_logs import drop_orphan_records


def _table(root: Path, parts: list[str], log: str) -> Path:
    table = root / "store" / "abc" / "abc-uuid"
    (table / "deduplication_logs").mkdir(parents=True)
    for p in parts:
        (table / p).mkdir()
    path = table / "deduplication_logs" / "deduplication_log_1.txt"
    path.write_text(log)
    return path


def test_only_records_no_part_covers_are_removed(tmp_path: Path) -> None:
    log = (
        "1\t202612_1_1_0\t202612_a_b\n"  # merged into 202612_1_3_1
        "1\t202612_3_3_0\t202612_c_d\n"  # merged too
        "1\t202612_4_4_0\t202612_e_f\n"  # orphan: only its unfinished tmp dir exists
        "2\t202612_2_2_0\t202612_g_h\n"  # a DROP record stays
        "1\tall_7_7_0\tall_i_j\n"  # mutated part all_7_7_0_9 covers it
        "1\tall_8_8_0\tall_k_l\n"  # orphan
    )
    path = _table(
        tmp_path,
        ["202612_1_3_1", "tmp_insert_202612_4_4_0", "all_7_7_0_9", "detached"],
        log,
    )
    assert drop_orphan_records(tmp_path) == 2
    assert path.read_text() == (
        "1\t202612_1_1_0\t202612_a_b\n"
        "1\t202612_3_3_0\t202612_c_d\n"
        "2\t202612_2_2_0\t202612_g_h\n"
        "1\tall_7_7_0\tall_i_j\n"
    )
    assert drop_orphan_records(tmp_path) == 0  # idempotent


def test_a_log_in_an_unknown_format_is_left_alone(tmp_path: Path) -> None:
    log = "1\tall_1_1_0\tall_a_b\nsomething else\n"
    path = _table(tmp_path, [], log)
    assert drop_orphan_records(tmp_path) == 0
    assert path.read_text() == log


def test_a_directory_without_tables_is_fine(tmp_path: Path) -> None:
    assert drop_orphan_records(tmp_path / "nothing-here") == 0
