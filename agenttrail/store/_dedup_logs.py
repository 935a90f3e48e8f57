"""Deduplication records a crash left without their part (issues 8 and 10).

The engine's non-replicated MergeTree writes an insert's block id to the table's
deduplication log before it moves the new part into place. A process killed between the
two (a SIGKILLed ``agenttrail consume``: the engine runs inside it) leaves a record
naming a part that never appeared. The consumer then redoes the batch with the same
``insert_deduplication_token``, and the engine drops it as a duplicate of nothing: for a
family table its events are lost; for the target of a materialized view (task_runs_state
and the other derived tables) the raw rows were stored by the killed attempt and the
view's rows by no attempt, so task_runs counts fewer events than the raw tables.

Before the engine opens a store directory in a process, :func:`drop_orphan_records`
removes from every deduplication log the ADD records whose blocks no part directory of
the table covers, so that the redo stores what the crash lost. A merged part covers the
blocks of the parts it replaced. A record of a part removed by DROP (which writes its own
DROP record) or by TTL is removed too: a retry of an insert that old is stored again.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger("agenttrail.store")

_ADD = "1"
_RANGE = re.compile(r"^(\d+)_(\d+)_\d+(?:_\d+)?$")  # min_max_level[_mutation]


def drop_orphan_records(store_dir: Path) -> int:
    """Remove the orphaned ADD records of every table in ``store_dir``; return how many.
    Call it only while no engine in this process has the directory open. A log that
    does not parse is left as it is.

    Raises:
        OSError: a log could not be read or rewritten.
    """
    removed = 0
    for logs in sorted(store_dir.glob("store/*/*/deduplication_logs")):
        table = logs.parent
        parts = [p.name for p in table.iterdir() if p.is_dir()]
        for path in sorted(logs.glob("deduplication_log_*.txt")):
            n = _rewrite(path, parts, store_dir / "tmp")
            if n:
                log.warning("%s: %d deduplication record(s) named a part a crash never "
                            "stored; removed, so that the insert's retry stores its rows",
                            table, n)  # fmt: skip
            removed += n
    return removed


def _rewrite(path: Path, parts: list[str], tmp_dir: Path) -> int:
    text = path.read_text(encoding="utf-8")
    kept: list[str] = []
    dropped = 0
    for line in text.splitlines(keepends=True):
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 3:
            return 0  # not the format this code knows: touch nothing
        op, part, _ = fields
        if op == _ADD:
            covered = _covered(part, parts)
            if covered is None:
                return 0
            if not covered:
                dropped += 1
                continue
        kept.append(line)
    if not dropped:
        return 0
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"agenttrail-{path.parent.parent.name}-{path.name}"
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
    return dropped


def _covered(part: str, parts: list[str]) -> bool | None:
    """Whether a part directory covers the blocks of ``part`` (None: not a part name)."""
    pieces = part.rsplit("_", 3)
    if len(pieces) != 4 or not all(x.isdigit() for x in pieces[1:]):
        return None
    partition, low, high = pieces[0], int(pieces[1]), int(pieces[2])
    prefix = partition + "_"
    for name in parts:
        if not name.startswith(prefix):
            continue
        m = _RANGE.match(name[len(prefix) :])
        if m and int(m.group(1)) <= low and int(m.group(2)) >= high:
            return True
    return False


__all__ = ["drop_orphan_records"]
