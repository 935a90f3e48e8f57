"""An agent process for the reliability harness: emits tasks through the real SDK.

Run as ``python -m tests.reliability.emitter --bootstrap HOST:PORT --prefix P --tasks N
--spans M --spool DIR --truth FILE``. Each task is a started transition, one LLM call,
``M`` tool spans and a succeeded transition (``M + 3`` events, seq 0..M+2). After a task
is closed on the agent's side (every event handed to the SDK, which from then on must
deliver or spool it) one JSON line ``{"task_id": ..., "events": n}`` is appended to the
truth file and flushed: that is the ground truth the harness counts against. The last
line is ``{"close": {...}}`` with the SDK's close report. ``--pace-ms`` sleeps between
tasks so that faults land while the emitter is still going.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from agenttrail.producer import Recorder


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
    args = parser.parse_args()
    rec = Recorder(
        bootstrap=args.bootstrap,
        spool_dir=args.spool,
        agent=f"emitter-{args.prefix}",
        tenant="reliability",
        retry_backoff_s=0.2,
        spool_fsync="never",
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
            truth.write(json.dumps({"task_id": task_id, "events": args.spans + 3}) + "\n")
            truth.flush()
            if args.pace_ms:
                time.sleep(args.pace_ms / 1000)
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
                    }
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
