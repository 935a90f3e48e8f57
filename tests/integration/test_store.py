"""The store on the real engine: migrations, deduplication tokens, the one-process lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agenttrail.consumers import BatchDecoder
from agenttrail.events import EventType
from agenttrail.store import (
    FAMILY_TABLES,
    MigrationError,
    Store,
    StoreLocked,
    discover,
    migrate,
    open_store,
)

_HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    {opener}
    print("holding", flush=True)
    sys.stdin.read()
    """
)


@contextmanager
def held_by_child(opener: str) -> Iterator[subprocess.Popen[str]]:
    """A child process that opens the store with ``opener`` and holds it until released."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD.format(opener=opener)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # blocks until the child holds the store
        assert line.strip() == "holding", f"child failed to open the store: {line!r}"
        yield child
    finally:
        child.kill()
        child.wait(timeout=30)


def test_migrations_are_applied_once_and_recorded_with_checksums(store: Store) -> None:
    migrations = discover()
    rows = store.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name, m.checksum) for m in migrations]
    again = migrate(store)
    assert again.applied == [] and len(again.already_applied) == len(migrations)
    assert store.query("SELECT count() FROM schema_migrations")[0][0] == len(migrations)


def test_a_changed_applied_migration_is_an_error(store: Store, tmp_path: Path) -> None:
    changed = tmp_path / "migrations"
    changed.mkdir()
    for m in discover():
        (changed / m.path.name).write_text(m.sql + ("\n-- edited\n" if m.version == 2 else ""))
    with pytest.raises(MigrationError, match=r"0002_dead_letters\.sql was changed after"):
        migrate(store, discover(changed))


def test_tables_have_exactly_the_columns_the_consumer_writes(store: Store) -> None:
    decoder = BatchDecoder()
    for family in EventType:
        table = FAMILY_TABLES[family]
        columns = [
            name
            for (name,) in store.query(
                "SELECT name FROM system.columns WHERE database = 'agenttrail' "
                "AND table = {t:String} ORDER BY position",
                {"t": table},
            )
        ]
        assert columns == [*decoder.layout(family).columns, "ingested_at"], table


def test_an_insert_repeated_with_the_same_token_is_stored_once(store: Store) -> None:
    names = ["topic", "kafka_partition", "kafka_offset", "reason", "error", "raw", "raw_size"]
    row = [["t"], [0], [7], ["truncated"], ["e"], [b"\x00\x01"], [2]]
    for token in ("t:0:7-7:dead_letters", "t:0:7-7:dead_letters", "t:0:8-8:dead_letters"):
        store.insert_columns("dead_letters", names, row, dedup_token=token)
    assert store.query("SELECT count() FROM dead_letters")[0][0] == 2


def test_second_process_gets_store_locked_naming_the_holder(store_dir: Path) -> None:
    opener = (
        f"from agenttrail.store import open_store; s = open_store(data=Path({str(store_dir)!r}))"
    )
    with held_by_child(opener) as child:
        with pytest.raises(StoreLocked) as caught:
            open_store(data=store_dir)
        assert caught.value.pid == child.pid
        message = str(caught.value)
        assert f"process {child.pid}" in message and str(store_dir / "clickhouse") in message
        assert "Stop it, or point --clickhouse at a server." in message
        cli = subprocess.run(
            [sys.executable, "-c", "from agenttrail.cli import main; main()", "migrate",
             "--data", str(store_dir)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cli.returncode == 2
        assert f"in use by process {child.pid}" in cli.stderr
        assert "Traceback" not in cli.stderr
    # The holder is gone: the store opens again.
    with open_store(data=store_dir) as reopened:
        assert reopened.query("SELECT 1") == [(1,)]


def test_a_plain_chdb_holder_is_named_from_the_engine_status_file(tmp_path: Path) -> None:
    path = tmp_path / "raw"
    opener = (
        "import clickhouse_connect; "
        f"c = clickhouse_connect.get_client(dsn='chdb://{path}'); c.query('SELECT 1')"
    )
    with held_by_child(opener) as child:
        with pytest.raises(StoreLocked) as caught:
            open_store(clickhouse=f"chdb://{path}")
        assert caught.value.pid == child.pid


def test_one_process_cannot_open_two_store_directories(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreLocked, match="one in-process store per process") as caught:
        open_store(data=tmp_path / "other")
    assert caught.value.pid == os.getpid()
