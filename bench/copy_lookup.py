"""What the resent-copy lookup costs a checked insert as the family table grows.

Fills ``tool_spans`` of a fresh in-process store with N spans of random task ids
(``INSERT … SELECT FROM numbers()``, then merged into one part), then times checked
inserts of 11,000 new spans of 1,375 random tasks (blocks as the consumer makes them),
with the copy lookup and with it cut out of the statement. The lookup reads every
granule whose key range may hold one of the block's tasks: up to one granule per task
per part, so its cost grows with the table until about tasks x 8,192 rows.

Usage: .venv/bin/python bench/copy_lookup.py [--rows N ...] [--repeat K]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from agenttrail.consumers._avro import _COPIES, AvroBlockEncoder
from agenttrail.consumers._ranges import column_ranges
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.events import EventCodec, uuid7
from agenttrail.store import Store, migrate, open_store

BLOCK = 11_000
PER_TASK = 8


def spans(rng: random.Random, n: int) -> list[bytes]:
    """``n`` framed tool spans, ``PER_TASK`` per task, random 8-digit task ids."""
    templates = []
    for seq in range(PER_TASK):
        record = sample_record("tool_span", task_id="task-00000000", seq=seq, text_bytes=200)
        templates.append((record["event_id"].encode(), sealed(record)))
    out = []
    task = b""
    for i in range(n):
        event_id, template = templates[i % PER_TASK]
        if i % PER_TASK == 0:
            task = f"task-{rng.randrange(10**8):08d}".encode()
        out.append(
            template.replace(b"task-00000000", task).replace(event_id, str(uuid7()).encode())
        )
    return out


def fill(store: Store, encoder: AvroBlockEncoder, rng: random.Random, rows: int) -> None:
    seed = encoder.block(0, list(range(PER_TASK)), spans(rng, PER_TASK))
    store.insert_from_file("tool_spans", seed.insert_sql, seed.data, rows=seed.rows,
                           more={"tasks": seed.tasks})  # fmt: skip
    db = store.database
    columns = ", ".join(
        str(r[0])
        for r in store.query(
            "SELECT name FROM system.columns WHERE database = {d:String} AND "
            "table = 'tool_spans' AND default_kind = '' ORDER BY position",
            {"d": db},
        )
    )
    made = columns.replace(
        "task_id", "concat('task-', leftPad(toString(cityHash64(number) % 100000000), 8, '0'))"
        " AS task_id", 1,
    ).replace("event_id", "generateUUIDv4(number) AS event_id", 1)  # fmt: skip
    for first in range(0, rows, 1_000_000):
        n = min(1_000_000, rows - first)
        store.command(
            f"INSERT INTO {db}.tool_spans ({columns}) SELECT {made} "
            f"FROM (SELECT * FROM {db}.tool_spans LIMIT 1) AS one, numbers({first}, {n}) AS n "
            "SETTINGS max_block_size = 1000000, min_insert_block_size_rows = 1000000"
        )
    store.command(f"OPTIMIZE TABLE {db}.tool_spans FINAL")


def timed_insert(
    store: Store, encoder: AvroBlockEncoder, rng: random.Random, lookup: bool
) -> float:
    block = encoder.block(0, list(range(10**9, 10**9 + BLOCK)), spans(rng, BLOCK))
    sql = block.insert_sql if lookup else block.insert_sql.replace(" OR " + _COPIES, "", 1)
    assert lookup or sql != block.insert_sql
    started = time.perf_counter()
    store.insert_from_file("tool_spans", sql, block.data, rows=block.rows,
                           more={"tasks": block.tasks})  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 1_000_000, 5_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    entry = EventCodec().registry.latest("tool_span")
    for rows in args.rows:
        rng = random.Random(rows)
        with tempfile.TemporaryDirectory() as tmp, open_store(data=Path(tmp)) as store:
            migrate(store)
            encoder = AvroBlockEncoder(
                entry, column_ranges(entry, store.table_columns("tool_spans"))
            )
            started = time.perf_counter()
            fill(store, encoder, rng, rows)
            filled = time.perf_counter() - started
            best = {True: float("inf"), False: float("inf")}
            for _ in range(args.repeat):
                for lookup in (True, False):
                    best[lookup] = min(best[lookup], timed_insert(store, encoder, rng, lookup))
            with_ms, without_ms = best[True] * 1e3, best[False] * 1e3
            print(
                f"table {rows:>10,} spans (filled in {filled:.0f} s) | insert of {BLOCK:,} spans: "
                f"with the copy lookup {with_ms:6.0f} ms, without {without_ms:6.0f} ms"
                f" | ratio {with_ms / without_ms:.1f}"
            )


if __name__ == "__main__":
    main()
