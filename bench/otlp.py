"""OTLP receiver throughput against the SDK path, in one run, into the same local stack.

Prints spans per second turned into **stored** events: protobuf export requests of 512
spans (128 traces × root, chat, execute_tool, one unmapped span) posted over HTTP to
the receiver, from the first request until the store holds every event; then the same
number of LLM calls and tool spans recorded through the SDK (``Recorder`` → embedded
broker), from the first call until the store holds every event.

Usage: .venv/bin/python bench/otlp.py [--requests N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import urllib.request
from pathlib import Path

from agenttrail.embedded import LocalStack
from agenttrail.otlp import KafkaSink, OtlpHttpServer, OtlpIngestor, ReceiverState
from agenttrail.producer import Recorder
from tests.unit.test_otlp_receiver import CHAT, EXEC, span, traces

TRACES_PER_REQUEST = 128


def otlp_requests(n: int) -> list[bytes]:
    bodies = []
    for _ in range(n):
        spans = []
        for _t in range(TRACES_PER_REQUEST):
            trace = os.urandom(16)
            ids = [os.urandom(8) for _ in range(4)]
            spans += [
                span(ids[0], None, "agent", {}, 0, trace=trace),
                span(ids[1], ids[0], "chat gpt-4.1", CHAT, 1, trace=trace),
                span(ids[2], ids[1], "execute_tool get_order", EXEC, 2, trace=trace),
                span(ids[3], ids[0], "GET /orders", {"http.method": "GET"}, 3, trace=trace),
            ]
        bodies.append(traces(*spans).SerializeToString())
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp) / "data") as stack:
        bodies = otlp_requests(args.requests)
        spans = args.requests * TRACES_PER_REQUEST * 4
        ingestor = OtlpIngestor(KafkaSink(stack.bootstrap), ReceiverState(Path(tmp) / "o.db"))
        server = OtlpHttpServer(ingestor, port=0).start()
        base = stack.snapshot().events_total
        t0 = time.perf_counter()
        for body in bodies:
            req = urllib.request.Request(
                server.url + "/v1/traces",
                data=body,
                headers={"Content-Type": "application/x-protobuf"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                assert resp.status == 200
        t_acked = time.perf_counter() - t0
        events = ingestor.counters.events
        stack.wait_stored(base + events, timeout=600)
        t_stored = time.perf_counter() - t0
        server.stop()
        print(f"OTLP receiver: {spans} spans → {events} events")
        print(f"  acknowledged by the broker: {spans / t_acked:10,.0f} spans/s ({t_acked:.2f} s)")
        print(f"  stored:                     {spans / t_stored:10,.0f} spans/s ({t_stored:.2f} s)")

        # The SDK path: the same LLM calls and tool spans per task.
        rec = Recorder(bootstrap=stack.bootstrap, tenant="bench", agent="bench",
                       spool_dir=Path(tmp) / "spool")  # fmt: skip
        base = stack.snapshot().events_total
        tasks = args.requests * TRACES_PER_REQUEST
        t0 = time.perf_counter()
        for _ in range(tasks):
            with rec.task("bench") as task:
                with task.llm_call(
                    model="gpt-4.1", messages=[{"role": "user", "content": "x"}]
                ) as c:
                    c.respond("ok", input_tokens=120, output_tokens=30)
                with task.tool("get_order", args={"order_id": "7294"}) as s:
                    s.result({"status": "confirmed"})
        report = rec.close()
        sdk_events = report.delivered
        stack.wait_stored(base + sdk_events, timeout=600)
        t_sdk = time.perf_counter() - t0
        sdk_spans = tasks * 2
        print(f"SDK: {tasks} tasks, {sdk_spans} spans (LLM call + tool) → {sdk_events} events")
        print(f"  stored:                     {sdk_spans / t_sdk:10,.0f} spans/s ({t_sdk:.2f} s)")
        print(f"  events stored: OTLP {events / t_stored:,.0f}/s, SDK {sdk_events / t_sdk:,.0f}/s")


if __name__ == "__main__":
    main()
