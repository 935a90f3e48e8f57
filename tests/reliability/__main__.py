"""Run every reliability scenario and print RELIABILITY.md's table.

    python -m tests.reliability            # the sizes of the pytest run
    python -m tests.reliability --full     # the issue's sizes (>= 100,000 events, 20 kills)
    python -m tests.reliability --only consumer_sigkills --json out.json

Each scenario runs in a temporary directory of its own (kept with ``--keep``). A
scenario that fails (a wait that never ends, a process that dies) is printed as a row
saying so, and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from tests.reliability import scenarios

GOOD = ("random", "magic", "schema_id", "truncated", "trailing", "empty")
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "fast": {
        "consumer_sigkills": {"tasks": 40, "spans": 5, "kills": 1, "freezes": 1, "seed": 11},
        "dangerous_points": {"tasks": 30, "spans": 5},
        "group_rebalances": {"tasks": 40, "spans": 5, "members": 2, "churn": 1},
        "mixed_traffic": {"tasks": 20, "spans": 5, "bad": 48, "kinds": GOOD},
        "out_of_range": {
            "tasks": 10,
            "spans": 3,
            "bad": 200,
            "kinds": ("int_range", "ts_range"),
        },
        "broker_crash": {"tasks": 150, "spans": 5},
        "up_sigkill": {"tasks": 20, "spans": 5, "drain_timeout": 25},
        "sdk_pressure": {"tasks": 200, "spans": 5, "disk": "512k"},
    },
    "full": {
        "consumer_sigkills": {
            "tasks": 6250,
            "spans": 5,
            "kills": 20,
            "freezes": 3,
            "pace_ms": 20,
            "batch": 500,
            "drain_timeout": 900,
        },
        "dangerous_points": {
            "tasks": 1000,
            "spans": 5,
            "rounds": 3,
            "pace_ms": 5,
            "batch": 200,
            "drain_timeout": 900,
        },
        "group_rebalances": {
            "tasks": 2000,
            "spans": 5,
            "members": 3,
            "churn": 10,
            "drain_timeout": 900,
        },
        "mixed_traffic": {
            "tasks": 2000,
            "spans": 5,
            "bad": 13_500,
            "kinds": GOOD,
            "drain_timeout": 900,
        },
        "out_of_range": {
            "tasks": 200,
            "spans": 5,
            "bad": 400,
            "kinds": ("int_range", "ts_range"),
            "drain_timeout": 120,
        },
        "broker_crash": {"tasks": 3000, "spans": 5, "crashes": 3, "drain_timeout": 900},
        "up_sigkill": {"tasks": 1000, "spans": 5, "kills": 3, "drain_timeout": 300},
        "sdk_pressure": {"tasks": 5000, "spans": 5, "disk": "2m", "drain_timeout": 900},
    },
}
FUNCS = {"out_of_range": scenarios.poison_mix}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's sizes")
    parser.add_argument("--only", action="append", help="run only these scenarios")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args()
    size = "full" if args.full else "fast"
    command = "python -m tests.reliability" + (" --full" if args.full else "")
    rows: list[dict[str, Any]] = []
    print("| fault | injected | produced | stored | lost | duplicated (id / position) "
          "| dead-lettered | derived = raw | seconds | command |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, kwargs in SIZES[size].items():
        if args.only and name not in args.only:
            continue
        workdir = Path(tempfile.mkdtemp(prefix=f"reliability-{name}-"))
        func = FUNCS.get(name) or getattr(scenarios, name)
        started = time.monotonic()
        try:
            row = func(workdir, **kwargs)
            t = row.tally
            d = {**row.to_dict(), "seconds": round(time.monotonic() - started)}
            fault = row.fault + (" — **never caught up**" if row.undrained else "")
            print(f"| {fault} | {row.injected} | {t.produced} | {t.stored} | {t.lost} "
                  f"| {t.duplicated_by_event_id} / {t.duplicated_by_position} "
                  f"| {t.dead_lettered} of {t.bad_sent} bad | {t.derived_agree} "
                  f"| {d['seconds']} | `{command} --only {name}` |", flush=True)  # fmt: skip
        except Exception as exc:
            d = {"fault": name, "error": f"{type(exc).__name__}: {exc}",
                 "traceback": traceback.format_exc(), "workdir": str(workdir)}  # fmt: skip
            print(
                f"| {name} | FAILED: {str(exc)[:300]} | | | | | | | "
                f"{round(time.monotonic() - started)} | `{command} --only {name}` |",
                flush=True,
            )
        rows.append(d)
        if not args.keep and "error" not in d:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
