"""SDK overhead on the agent's thread, against OpenTelemetry, and sustained emit rate.

Prints, in one run:
  * caller-thread microseconds per recorded tool span (enter, result, exit) for
    agenttrail, with the background pipeline sealing and encoding every event and an
    exporter that discards the bytes;
  * the same for an OpenTelemetry SDK span with three attributes (BatchSpanProcessor,
    exporter that discards);
  * the same for the start/end form (``task.start_tool(...).end(result)``);
  * their ratios (target <= 0.3);
  * the sustained emit rate of tool-span events to the embedded broker, measured from
    the first span until ``Recorder.close()`` returns with every event acknowledged
    (target >= 25,000 events/s); the agent's loop and the background threads share
    one GIL the whole time;
  * the rate at which the backlog left when the last span was recorded is delivered:
    what the background threads sustain while the agent's thread is idle.

"Caller-thread microseconds" is the CPU time of the calling thread
(``time.thread_time``): what recording costs the agent's own thread. Both SDKs also
run a background thread; its work competes for the GIL, so the wall-clock time of a
tight loop of spans is printed beside it.

Usage: .venv/bin/python bench/sdk_overhead.py [--spans N] [--kafka-spans N]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from typing import Any

from agenttrail.producer import Recorder
from agenttrail.producer._exporter import AckCallback, OutRecord


class DiscardExporter:
    """Acknowledges everything and keeps nothing."""

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        for r in records:
            on_done(r, None)

    def probe(self, timeout: float) -> bool:
        return True

    def flush(self, timeout: float) -> bool:
        return True

    def shutdown(self) -> None:
        return None


BURST = 5000
"""Spans per timed burst. Agents emit events in bursts between model calls, and the
caller-side cost is what a burst costs the agent's thread; both SDKs' queues are
drained (flushed) between bursts, outside the timing. OpenTelemetry's queue is raised
to hold a burst, since by default it drops spans beyond 2,048. What the background
thread can sustain is measured separately, against the real broker."""


def agenttrail_us_per_span(spans: int, form: str = "with") -> tuple[float, float]:
    """Caller-thread cost of a tool span in the ``with`` form or the start/end form."""
    with tempfile.TemporaryDirectory() as spool:
        rec = Recorder(exporter=DiscardExporter(), agent="bench", spool_dir=spool)
        args = {"order_id": "7294"}
        result = {"status": "ok"}
        cpu = wall = 0.0
        with rec.task("bench") as task:

            def with_form() -> None:
                with task.tool("get_order", args=args) as span:
                    span.result(result)

            def start_end_form() -> None:
                task.start_tool("get_order", args, tool_call_id="call_1").end(result)

            one = with_form if form == "with" else start_end_form
            for _ in range(2000):  # warm-up
                one()
            for _ in range(max(1, spans // BURST)):
                rec.flush()
                gc.collect()
                start, cpu_start = time.perf_counter(), time.thread_time()
                for _ in range(BURST):
                    one()
                cpu += time.thread_time() - cpu_start
                wall += time.perf_counter() - start
        rec.close()
    n = max(1, spans // BURST) * BURST
    return cpu / n * 1e6, wall / n * 1e6


def otel_us_per_span(spans: int) -> tuple[float, float]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=BURST * 2))
    tracer = provider.get_tracer("bench")

    def one() -> None:
        with tracer.start_as_current_span("get_order") as s:
            s.set_attribute("tool", "get_order")
            s.set_attribute("order_id", "7294")
            s.set_attribute("success", True)

    for _ in range(2000):
        one()
    cpu = wall = 0.0
    for _ in range(max(1, spans // BURST)):
        provider.force_flush()
        gc.collect()
        start, cpu_start = time.perf_counter(), time.thread_time()
        for _ in range(BURST):
            one()
        cpu += time.thread_time() - cpu_start
        wall += time.perf_counter() - start
    provider.shutdown()
    n = max(1, spans // BURST) * BURST
    return cpu / n * 1e6, wall / n * 1e6


def kafka_rate(spans: int, client: str = "kafka-python") -> tuple[float, float, Any]:
    """(sustained events/s, events/s delivered after the last span, close report)."""
    from agenttrail.embedded import EmbeddedBroker

    with EmbeddedBroker(partitions=4).start() as broker, tempfile.TemporaryDirectory() as spool:
        rec = Recorder(
            bootstrap=broker.bootstrap, agent="bench", spool_dir=spool, kafka_client=client
        )
        with rec.task("warmup") as task, task.tool("get_order") as span:
            span.result("ok")
        rec.flush(30)
        start = time.perf_counter()
        per_task = 50
        for t in range(spans // per_task):
            with rec.task("invoice_generation", task_id=f"bench-{t}") as task:
                for _ in range(per_task - 2):  # started + succeeded are events too
                    with task.tool("get_order", args={"order_id": "7294"}) as span:
                        span.result({"status": "ok"})
        emitted_at, delivered = time.perf_counter(), rec.stats["delivered"]
        report = rec.close(timeout=120)
        elapsed = time.perf_counter() - start
        drain = (report.delivered - delivered) / max(1e-9, time.perf_counter() - emitted_at)
    return (spans // per_task) * per_task / elapsed, drain, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spans", type=int, default=100_000, help="tool spans per form and SDK (caller cost)"
    )
    parser.add_argument(
        "--kafka-spans",
        type=int,
        default=200_000,
        help="events sent to the embedded broker for the emit rate; 0 skips it",
    )
    parser.add_argument(
        "--kafka-client",
        action="append",
        choices=["kafka-python", "confluent-kafka"],
        help="the client(s) the emit rate is measured with, one after the other in this run "
        "(repeatable; default: both when confluent-kafka is installed, else kafka-python)",
    )
    parser.add_argument(
        "--emit-only", action="store_true", help="skip the caller-cost part (emit rate only)"
    )
    args = parser.parse_args()
    clients = args.kafka_client
    if not clients:
        from agenttrail.producer._native_exporter import confluent_kafka_available

        clients = ["kafka-python"] + (["confluent-kafka"] if confluent_kafka_available() else [])
    if not args.emit_only:
        caller_cost(args.spans)
    if args.kafka_spans <= 0:
        return
    for client in clients:
        rate, drain, report = kafka_rate(args.kafka_spans, client)
        print(
            f"sustained emit rate, {client:15s} : {rate:8.0f} events/s (target >= 25,000); "
            f"delivered {report.delivered}, spooled {report.spooled}"
        )
        print(
            f"delivery after the last span       : {drain:8.0f} events/s (the background "
            "alone, the agent's thread idle)"
        )


def caller_cost(spans: int) -> None:
    """Print the caller-thread cost of both forms and of OpenTelemetry, and the ratios."""
    ours, ours_wall = agenttrail_us_per_span(spans, "with")
    manual, manual_wall = agenttrail_us_per_span(spans, "start_end")
    otel, otel_wall = otel_us_per_span(spans)
    print("                                      caller CPU   wall clock")
    print(f"agenttrail tool span, with form      : {ours:7.2f} us  {ours_wall:7.2f} us/span")
    print(f"agenttrail tool span, start/end form : {manual:7.2f} us  {manual_wall:7.2f} us/span")
    print(f"OpenTelemetry span, 3 attributes     : {otel:7.2f} us  {otel_wall:7.2f} us/span")
    for label, cpu, wall in (("with", ours, ours_wall), ("start/end", manual, manual_wall)):
        print(
            f"ratio agenttrail {label:9s} / OTel  : {cpu / otel:7.2f}     "
            f"{wall / otel_wall:7.2f}   (target <= 0.3, caller CPU)"
        )


if __name__ == "__main__":
    main()
