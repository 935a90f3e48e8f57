"""A crash between the engine's deduplication record and its part (issues 8 and 10).

The in-process engine records an insert's block id before it moves the part into place;
a SIGKILLed consumer can leave the record without the part. Staged here exactly: the
part directory the record names is removed while no process has the store open. The
retry with the same token, in a new process as after a crash, must store the rows, in
the table and in its materialized view's target alike."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_CHILD = r"""
import json, sys
from agenttrail.store import open_store
data, step = sys.argv[1], sys.argv[2]
with open_store(data=data) as s:
    if step == "create":
        s.command(f"CREATE DATABASE IF NOT EXISTS {s.database}")
        s.use_database()
        s.command("CREATE TABLE crash_src (k UInt64) ENGINE = MergeTree ORDER BY k "
                  "SETTINGS non_replicated_deduplication_window = 100")
        s.command("CREATE TABLE crash_dst (n UInt64) ENGINE = MergeTree ORDER BY n "
                  "SETTINGS non_replicated_deduplication_window = 100")
        s.command("CREATE MATERIALIZED VIEW crash_mv TO crash_dst AS "
                  "SELECT count() AS n FROM crash_src")
    if step in ("create", "retry"):
        for i in range(3):
            s.insert_columns("crash_src", ["k"], [[i * 10 + j for j in range(4)]],
                             dedup_token=f"batch-{i}")
    src = s.query("SELECT count() FROM crash_src")[0][0]
    dst = s.query("SELECT sum(n) FROM crash_dst")[0][0]
    paths = {t: [str(p) for (p,) in s.query(
        "SELECT path FROM system.parts WHERE database = {d:String} AND table = {t:String} "
        "AND active ORDER BY max_block_number", {"d": s.database, "t": "crash_" + t})]
        for t in ("src", "dst")}
    print(json.dumps({"src": int(src), "dst": int(dst or 0), "paths": paths}))
"""


def _run(data: Path, step: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data), step],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("table", ["dst", "src"])
def test_an_insert_retried_after_a_crash_left_its_record_without_its_part_is_stored(
    tmp_path: Path, table: str
) -> None:
    data = tmp_path / "store"
    first = _run(data, "create")
    assert (first["src"], first["dst"]) == (12, 12)
    # The state a SIGKILL between the record and the part leaves: the newest part of
    # ``table`` (the view's target, or the family table itself) never appeared.
    shutil.rmtree(first["paths"][table][-1])
    crashed = _run(data, "count")
    assert crashed[table] == 8, crashed
    healed = _run(data, "retry")
    assert (healed["src"], healed["dst"]) == (12, 12), healed
