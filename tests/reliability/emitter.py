"""An agent process for the reliability harness: emits tasks through the real SDK.

Run as ``python -m tests.reliability.emitter --bootstrap HOST:PORT --prefix P --tasks N
--spans M --spool DIR --truth FILE``. Each task is a started transition, one LLM call,
``M`` tool spans and a succeeded transition (``M + 3`` events, seq 0..M+2). After a task
is closed on the agent's side (every event handed to the SDK, which from then on must
deliver or spool it) one JSON line ``{"task_id": ..., "events": n}`` is appended to the
truth file and flushed: that is the ground truth the harness counts against. The last
line is ``{"close": {...}}`` with the SDK's close report. ``--pace-ms`` sleeps between
tasks so that faults land while the emitter is still going. With ``--hold-file F`` the
emitter prints ``{"recorded": ..., "stats": ..., "spool_error": ...}`` after its last
task and waits until F exists before it closes (the harness frees a full disk or starts
the broker meanwhile). The close line carries the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from agenttrail.producer import Recorder


def _peak_rss_kb() -> int:
    # VmHWM, not getrusage's ru_maxrss: on Linux the latter carries the parent's peak
    # across fork+exec, so every emitter would report the harness's own memory.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--spans", type=int, default=5)
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--pace-ms", type=float, default=0.0)
    parser.add_argument("--close-timeout", type=float, default=120.0)
    parser.add_argument("--queue-size", type=int, default=20_000)
    parser.add_argument("--hold-file", type=Path)
    parser.add_argument(
        "--flush-each",
        action="store_true",
        help="write a task's truth line only after rec.flush() returned True: the line then "
        "means acknowledged or spooled, not only handed to the SDK",
    )
    args = parser.parse_args()
    rec = Recorder(
        bootstrap=args.bootstrap,
        spool_dir=args.spool,
        agent=f"emitter-{args.prefix}",
        tenant="reliability",
        retry_backoff_s=0.2,
        spool_fsync="never",
        queue_size=args.queue_size,
    )
    with args.truth.open("a") as truth:
        for t in range(args.tasks):
            task_id = f"{args.prefix}-{t}"
            with rec.task("reliability", task_id=task_id) as task:
                with task.llm_call(model="m1", messages=[{"role": "user", "content": "go"}]) as c:
                    c.respond(content="ok", input_tokens=10, output_tokens=5, finish_reason="stop")
                for i in range(args.spans):
                    with task.tool("probe", args={"i": i}) as span:
                        span.result({"i": i})
            if args.flush_each and not rec.flush(timeout=60):
                continue  # neither acknowledged nor spooled in time: not claimed as kept
            truth.write(json.dumps({"task_id": task_id, "events": args.spans + 3}) + "\n")
            truth.flush()
            if args.pace_ms:
                time.sleep(args.pace_ms / 1000)
        if args.hold_file is not None:
            rec.flush(timeout=30)
            print(json.dumps({"recorded": args.tasks, "stats": dict(rec.stats),
                              "spool_error": rec.spool_error}), flush=True)  # fmt: skip
            while not args.hold_file.exists():
                time.sleep(0.1)  # the harness's signal; not a test wait
            print(json.dumps({"released": True, "stats": dict(rec.stats)}), flush=True)
        report = rec.close(timeout=args.close_timeout)
        truth.write(
            json.dumps(
                {
                    "close": {
                        "delivered": report.delivered,
                        "spooled": report.spooled,
                        "rejected": report.rejected,
                        "unsaved": report.unsaved,
                        "pid": os.getpid(),
                        "max_rss_kb": _peak_rss_kb(),
                    }
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
