"""Freshness: from a tool span's ``__exit__`` in an agent to the event being visible to a
reading command, on the one-machine stack (`agenttrail up` as users run it).

For each target rate, an agent in this process runs one-tool-span tasks (3 events per
task: started, the span, succeeded) paced to the rate for ``--seconds``; a follower
polls the store through up's read endpoint (``TailFollower``, what ``agenttrail tail``
uses, every 50 ms) and notes when each span first becomes visible. Printed: the rate
reached, p50/p90/p99/max emit-to-visible latency, and how many spans were seen.

Then the cost of concurrent reads on ingest: a burst of ``--burst`` events is produced
as fast as the SDK goes and the time until `up` has stored all of it is measured, once
alone and once while another process loops `runs` and `replay` against the endpoint.

Usage: .venv/bin/python bench/freshness.py [--rates 1000,20000] [--seconds 20]
                                           [--burst 60000]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agenttrail.producer import Recorder
from agenttrail.query import TailFilter, TailFollower
from agenttrail.store import open_store

ROOT = Path(__file__).resolve().parents[1]
CLI = (sys.executable, "-m", "agenttrail.cli")
EVENTS_PER_TASK = 3
_TABLES = ("llm_calls", "tool_spans", "state_transitions", "agent_messages", "guard_events")

READ_LOAD = """
import sys, time
from agenttrail.query import list_runs, replay_task
from agenttrail.store import open_store
data, until = sys.argv[1], float(sys.argv[2])
n = 0
with open_store(data=data, create=False) as store:
    while time.time() < until:
        runs = list_runs(store, limit=50)
        for run in runs[:5]:
            replay_task(store, run.task_id, run.tenant)
        n += 1
print(n)
"""


def _start_up(data: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    up = subprocess.Popen(
        [*CLI, "up", "--data", str(data), "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert up.stdout is not None
    ready = json.loads(up.stdout.readline())
    threading.Thread(target=up.stdout.read, daemon=True).start()  # keep the pipe drained
    return up, ready


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def freshness(data: Path, bootstrap: str, rate: int, seconds: float, tag: str) -> None:
    rec = Recorder(bootstrap=bootstrap, tenant=tag, agent="bench", spool_dir=data / f"sp-{tag}")
    exits: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def follow() -> None:
        with open_store(data=data, create=False) as store:
            follower = TailFollower(store, TailFilter(tenant=tag), hold_s=0.0)
            while True:
                for event in follower.poll():
                    if event.family == "tool_span":
                        seen.setdefault(event.task_id, time.monotonic())
                if stop.is_set() and len(seen) >= len(exits):
                    return
                if stop.wait(0.05) and time.monotonic() > deadline:
                    return

    deadline = float("inf")
    follower = threading.Thread(target=follow)
    follower.start()
    tasks_per_s = rate / EVENTS_PER_TASK
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + n / tasks_per_s
        if due > now:
            time.sleep(due - now)
        task_id = f"{tag}-{n}"
        with rec.task("fresh", task_id=task_id) as task:
            with task.tool("probe", args={"n": n}) as span:
                span.result(n)
            exits[task_id] = time.monotonic()
        n += 1
    elapsed = time.monotonic() - start
    report = rec.close(timeout=120)
    deadline = time.monotonic() + 60
    stop.set()
    follower.join()
    lat = [seen[t] - exits[t] for t in exits if t in seen]
    print(
        f"target {rate:>6} ev/s: reached {n * EVENTS_PER_TASK / elapsed:>7.0f} ev/s over "
        f"{elapsed:.0f} s ({report.delivered} delivered); spans visible {len(lat)}/{len(exits)}; "
        f"emit→visible p50 {statistics.median(lat):.3f} s, p90 {_pct(lat, 0.9):.3f} s, "
        f"p99 {_pct(lat, 0.99):.3f} s, max {max(lat):.3f} s"
    )


def _stored(data: Path) -> int:
    with open_store(data=data, create=False) as store:
        return int(
            sum(store.query(f"SELECT count() FROM {store.database}.{t}")[0][0] for t in _TABLES)
        )


def burst(data: Path, bootstrap: str, events: int, tag: str, with_reads: bool) -> None:
    base = _stored(data)
    rec = Recorder(bootstrap=bootstrap, tenant=tag, agent="bench", spool_dir=data / f"sp-{tag}")
    reader = None
    if with_reads:
        reader = subprocess.Popen(
            [sys.executable, "-c", READ_LOAD, str(data), str(time.time() + 3600)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
    start = time.monotonic()
    for n in range(events // EVENTS_PER_TASK):
        with rec.task("burst", task_id=f"{tag}-{n}") as task, task.tool("probe") as span:
            span.result(n)
    report = rec.close(timeout=300)
    produced = time.monotonic() - start
    target = base + report.delivered
    while _stored(data) < target:
        time.sleep(0.2)
    stored = time.monotonic() - start
    loops = ""
    if reader is not None:
        reader.send_signal(signal.SIGTERM)
        reader.wait(60)
        loops = " (while another process looped runs + 5 replays)"
    print(
        f"burst {report.delivered} events{loops}: produced in {produced:.1f} s, all stored "
        f"after {stored:.1f} s = {report.delivered / stored:,.0f} events/s end to end"
    )


def warm_up(data: Path, bootstrap: str) -> None:
    """One task, stored: the consumer has joined its group before anything is timed."""
    rec = Recorder(bootstrap=bootstrap, tenant="warm", agent="bench", spool_dir=data / "sp-w")
    with rec.task("warm", task_id="warm-0") as task, task.tool("probe") as span:
        span.result(0)
    rec.close(timeout=60)
    while _stored(data) < EVENTS_PER_TASK:
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,20000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=60_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        up, ready = _start_up(data)
        try:
            warm_up(data, ready["bootstrap"])
            for i, rate in enumerate(int(r) for r in args.rates.split(",")):
                freshness(data, ready["bootstrap"], rate, args.seconds, f"fresh{i}")
            if args.burst:
                burst(data, ready["bootstrap"], args.burst, "alone", with_reads=False)
                burst(data, ready["bootstrap"], args.burst, "loaded", with_reads=True)
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(300)


if __name__ == "__main__":
    main()
