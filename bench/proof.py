"""Benchmark ``verify`` and compliance exports (prints figures; not a test).

Builds an in-process store of correctly chained tool spans — generated inside the
engine, round by round (seq 0 of every task, then seq 1 linked to seq 0's hash, …),
with each hash computed by the same SQL seal ``verify`` uses and cross-checked in
Python on a sample — then measures:

- ``verify``: events per second of the engine-side chain check plus the per-producer
  reconciliation, and the process's peak RSS (the engine runs in-process);
- ``export``: for each format, rows per second and the peak RSS of a fresh process
  that exports every event.

Usage:
    .venv/bin/python bench/proof.py                      # 5 M events verify, 1 M export
    .venv/bin/python bench/proof.py --verify-events 200000 --export-events 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_TASK = 10
PRODUCERS = 100


def build(data: Path, events: int) -> None:
    """A migrated store under ``data`` holding ``events`` chained tool spans."""
    from agenttrail.events import default_registry
    from agenttrail.store import migrate, open_store
    from agenttrail.verify import expected_hash
    from agenttrail.verify._avro_sql import hash_select
    from agenttrail.verify._engine import family_columns

    tasks = max(1, events // PER_TASK)
    with open_store(data=data) as store:
        migrate(store)
        entry = default_registry().latest("tool_span")
        columns = family_columns(store, "tool_spans")
        for k in range(PER_TASK):
            prev = "''" if k == 0 else "p.hash"
            join = (
                ""
                if k == 0
                else f"LEFT JOIN (SELECT task_id, hash FROM tool_spans WHERE seq = {k - 1}) AS p "
                "ON p.task_id = concat('t', toString(n.number))"
            )
            inner = f"""
                SELECT generateUUIDv4() AS event_id, 'tool_span' AS event_type,
                  toUInt16(1) AS schema_version, 'bench' AS tenant,
                  concat('t', toString(n.number)) AS task_id, 'invoice_generation' AS task_type,
                  'bench-agent' AS agent_name, '1.0' AS agent_version,
                  lower(hex(MD5(toString(n.number)))) AS trace_id,
                  substring(lower(hex(MD5(concat(toString(n.number), '-', '{k}')))), 1, 16)
                    AS span_id,
                  CAST(NULL AS Nullable(String)) AS parent_span_id, toInt32({k}) AS step,
                  toInt64({k}) AS seq,
                  toDateTime64('2026-11-01 00:00:00', 6, 'UTC')
                    + toIntervalMicrosecond(n.number * {PER_TASK} + {k}) AS ts,
                  concat('p', toString(n.number % {PRODUCERS})) AS producer_id,
                  toInt64(intDiv(n.number, {PRODUCERS}) * {PER_TASK} + {k}) AS producer_seq,
                  'create_invoice' AS tool, CAST('2' AS Nullable(String)) AS tool_version,
                  concat('{{"order_id":"', toString(n.number), '"}}') AS args_json,
                  lower(hex(SHA256(args_json))) AS args_hash,
                  CAST(NULL AS Nullable(String)) AS idempotency_key, toInt32(1) AS attempt,
                  'write' AS side_effect, true AS declared,
                  CAST('{{"invoice_id":"inv","status":"draft"}}' AS Nullable(String))
                    AS result_summary,
                  toInt64(36) AS result_size, toFloat64(1.5 + {k}) AS latency_ms, true AS success,
                  CAST(NULL AS Nullable(String)) AS error_type,
                  CAST(NULL AS Nullable(String)) AS error_detail,
                  CAST([] AS Array(String)) AS redactions, {prev} AS prev_hash,
                  toInt32(0) AS kafka_partition,
                  toInt64(n.number * {PER_TASK} + {k}) AS kafka_offset
                FROM numbers({tasks}) AS n {join}
            """
            cols = [c for c in entry.field_names if c != "hash"] + [
                "kafka_partition",
                "kafka_offset",
            ]
            sealed = hash_select([entry], columns, f"({inner})")
            store.command(
                f"INSERT INTO tool_spans ({', '.join(cols)}, hash) "
                f"SELECT {', '.join(cols)}, expected_hash FROM ({sealed})",
                settings={"max_partitions_per_insert_block": 1000},
            )
        names = [n for n, in store.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() "
            "AND table = 'tool_spans' ORDER BY position"
        )]  # fmt: skip
        for row in store.query("SELECT * FROM tool_spans ORDER BY rand() LIMIT 20"):
            record = dict(zip(names, row, strict=True))
            assert expected_hash(default_registry(), "tool_span", record) == record["hash"]


def bench_verify(data: Path) -> dict[str, float]:
    from agenttrail.store import open_store
    from agenttrail.verify import verify_store

    with open_store(data=data) as store:
        started = time.perf_counter()
        report = verify_store(store)
        elapsed = time.perf_counter() - started
    assert report.ok, [f.line() for f in report.findings[:5]]
    return {
        "events": report.events,
        "seconds": elapsed,
        "events_per_s": report.events / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _export_child(data: str, out: str, fmt: str) -> None:
    from agenttrail.export import export_store
    from agenttrail.store import open_store

    with open_store(data=Path(data)) as store:
        started = time.perf_counter()
        manifest = export_store(store, Path(out), fmt=fmt)
        elapsed = time.perf_counter() - started
    size = sum(f["bytes"] for f in manifest["files"])
    print(json.dumps({
        "rows": manifest["rows"], "seconds": elapsed, "rows_per_s": manifest["rows"] / elapsed,
        "bytes": size, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def _verify_export_child(out: str) -> None:
    from agenttrail.export import check_export

    started = time.perf_counter()
    report = check_export(Path(out))
    elapsed = time.perf_counter() - started
    assert report.ok, [f.line() for f in report.findings[:5]]
    print(json.dumps({
        "rows": report.events, "seconds": elapsed, "rows_per_s": report.events / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def _child(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify-events", type=int, default=5_000_000)
    parser.add_argument("--export-events", type=int, default=1_000_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "export":
            _export_child(*args.child[1:])
        elif args.child[0] == "verify":
            print(json.dumps(bench_verify(Path(args.child[1]))))
        else:
            _verify_export_child(args.child[1])
        return
    root = Path(tempfile.mkdtemp(prefix="agenttrail-bench-proof-"))
    try:
        started = time.perf_counter()
        build(root / "verify", args.verify_events)
        took = time.perf_counter() - started
        print(f"built {args.verify_events:,} chained tool spans in {took:.0f} s")
        fig = _child("--child", "verify", str(root / "verify"))
        print(
            f"verify: {fig['events']:,} events in {fig['seconds']:.1f} s = "
            f"{fig['events_per_s']:,.0f} events/s, peak RSS {fig['peak_rss_mb']:,.0f} MB"
        )
        shutil.rmtree(root / "verify")
        build(root / "export", args.export_events)
        for fmt in ("jsonl", "csv", "parquet"):
            out = root / f"out-{fmt}"
            e = _child("--child", "export", str(root / "export"), str(out), fmt)
            c = _child("--child", "check", str(out))
            print(
                f"export {fmt:<7}: {e['rows']:,} rows in {e['seconds']:.1f} s = "
                f"{e['rows_per_s']:,.0f} rows/s, {e['bytes'] / 1e6:,.0f} MB, peak RSS "
                f"{e['peak_rss_mb']:,.0f} MB; export verify {c['rows_per_s']:,.0f} rows/s, "
                f"peak RSS {c['peak_rss_mb']:,.0f} MB"
            )
            shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
