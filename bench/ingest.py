"""Ingest throughput: Kafka → ClickHouse end to end, against a plain Kafka fetch.

Prints, for tool spans (~600 B) and for LLM calls (~6 KB):
  * the raw fetch rate of a plain kafka-python consumer reading the topic (messages/s),
    with the same fetch settings as the ingest consumer and nothing done per message;
  * the end-to-end rate of the ingest consumer: decode, validate, batch, insert into
    the in-process store (chdb), ledger rows, offset commits (events stored/s);
  * their ratio (target >= 0.7 for tool spans);
  * the peak RSS of each consumer process (the ingest one includes the engine).

Each consumer runs in a fresh subprocess, timed from its partition assignment (group
join excluded) until every event is fetched (raw) or stored (ingest). The topic is
filled once, before either runs, on an embedded Tansu broker.

With ``--fetchers N`` the ingest consumer fetches in N child processes (``fetchers``
in ``ConsumerConfig``); its peak RSS is then the largest sum over the consumer and its
children sampled during the run. ``--partitions`` sets the topic's partitions (4).

Usage: .venv/bin/python bench/ingest.py [--tool-spans N] [--llm-calls N] [--batch-size N]
                                        [--python-decode] [--fetchers N] [--partitions N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from agenttrail.consumers import ConsumerConfig, IngestPipeline
from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.embedded import EmbeddedBroker, embedded_consumer_config
from agenttrail.events import uuid7
from agenttrail.store import migrate, open_store

PARTITIONS = 4


def fill(
    bootstrap: str, topic: str, family: str, count: int, text_bytes: int, partitions: int
) -> int:
    """Create ``topic`` and produce ``count`` sealed events; return the bytes sent."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.wait_for_topics([topic], timeout_ms=30_000)
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=512 * 1024
    )
    # Eight sealed templates (one per seq), patched per event with a task id of the same
    # width and a fresh event id: every event is distinct (the consumer drops resent
    # copies), and sealing is not what is measured here. Hashes are the templates'.
    templates = []
    for seq in range(8):
        record = sample_record(family, task_id="task-00000000", seq=seq, text_bytes=text_bytes)
        templates.append((record["event_id"].encode(), sealed(record)))
    sent = 0
    for i in range(count):
        event_id, template = templates[i % 8]
        task = f"task-{i // 8:08d}".encode()
        value = template.replace(b"task-00000000", task).replace(event_id, str(uuid7()).encode())
        producer.send(topic, key=task, value=value)
        sent += len(value)
    producer.flush()
    producer.close()
    return sent


def _settings(bootstrap: str) -> dict[str, Any]:
    probe = IngestPipeline.__new__(IngestPipeline)
    probe.config = ConsumerConfig(bootstrap=bootstrap)
    probe.consumer_name = "bench"
    settings = probe.kafka_settings()
    settings.update(embedded_consumer_config())
    return settings


def run_raw(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    """Fetch ``count`` messages with a plain consumer group member; nothing per message."""
    settings = _settings(bootstrap)
    settings["group_id"] = f"raw-{topic}"
    consumer = KafkaConsumer(**settings)
    consumer.subscribe([topic])
    seen = 0
    start: float | None = None
    while seen < count:
        batch = consumer.poll(timeout_ms=200)
        if start is None and consumer.assignment():
            start, cpu0 = time.perf_counter(), _cpu_seconds(os.getpid())
        for messages in batch.values():
            seen += len(messages)
    assert start is not None
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds(os.getpid()) - cpu0
    consumer.close()
    return {"rate": count / elapsed, "seconds": elapsed, "cpu": {"consumer": cpu}}


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_ingest(
    bootstrap: str,
    topic: str,
    count: int,
    batch_size: int,
    store_decodes: bool = True,
    fetchers: int = 0,
) -> dict[str, float]:
    """Store ``count`` events with the ingest pipeline into a fresh in-process store."""
    with tempfile.TemporaryDirectory() as tmp, open_store(data=Path(tmp)) as store:
        migrate(store)
        config = ConsumerConfig(
            bootstrap=bootstrap,
            topic=topic,
            group=f"ingest-{topic}-{fetchers}",
            batch_size=batch_size,
            store_decodes=store_decodes,
            fetchers=fetchers,
            kafka_options=embedded_consumer_config(),
        )
        pipeline = IngestPipeline(config, store)
        stop = threading.Event()
        thread = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
        thread.start()
        while not pipeline.stats.snapshot().partitions:
            time.sleep(0.01)
        start = time.perf_counter()
        pids = list(getattr(pipeline._consumer, "pids", []))
        cpu0 = {pid: _cpu_seconds(pid) for pid in [os.getpid(), *pids]}
        peak, sampled_at = 0.0, 0.0
        while pipeline.stats.snapshot().events_total < count:
            time.sleep(0.005)
            if time.perf_counter() - sampled_at > 0.1:
                sampled_at = time.perf_counter()
                pids = getattr(pipeline._consumer, "pids", [])
                peak = max(peak, _rss_mb(os.getpid()) + sum(_rss_mb(p) for p in pids))
        elapsed = time.perf_counter() - start
        cpu = {
            "consumer" if pid == os.getpid() else f"fetcher {i}": _cpu_seconds(pid) - before
            for i, (pid, before) in enumerate(cpu0.items())
        }
        stop.set()
        thread.join()
        stored = (
            store.query("SELECT count() FROM tool_spans")[0][0]
            + store.query("SELECT count() FROM llm_calls")[0][0]
        )
        assert stored == count, f"stored {stored} of {count}"
    return {"rate": count / elapsed, "seconds": elapsed, "tree_rss_mb": peak, "cpu": cpu}


def child(args: argparse.Namespace) -> None:
    if args.child == "raw":
        result = run_raw(args.bootstrap, args.topic, args.count)
    else:
        result = run_ingest(
            args.bootstrap,
            args.topic,
            args.count,
            args.batch_size,
            not args.python_decode,
            args.fetchers,
        )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["peak_rss_mb"] = max(own, result.get("tree_rss_mb", 0.0))
    print(json.dumps(result))


def in_subprocess(
    kind: str,
    bootstrap: str,
    topic: str,
    count: int,
    batch_size: int,
    python_decode: bool,
    fetchers: int = 0,
) -> Any:
    extra = ["--python-decode"] if python_decode else []
    extra += ["--fetchers", str(fetchers)]
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--bootstrap", bootstrap, "--topic", topic,
         "--count", str(count), "--batch-size", str(batch_size), *extra],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_line(run: dict[str, Any], count: int) -> str:
    """CPU time per event of each process of a run (broker counted over the run's whole
    subprocess, group join and shutdown included), and the run's wall time per event."""
    parts = [f"{name} {seconds / count * 1e6:.1f} µs" for name, seconds in run["cpu"].items()]
    total = sum(run["cpu"].values()) / count * 1e6
    wall = run["seconds"] / count * 1e6
    return ", ".join(parts) + f" | total {total:.1f} µs, wall {wall:.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool-spans", type=int, default=200_000)
    parser.add_argument("--llm-calls", type=int, default=40_000)
    parser.add_argument("--batch-size", type=int, default=ConsumerConfig().batch_size)
    parser.add_argument(
        "--python-decode",
        action="store_true",
        help="decode every event in Python (store_decodes=False), for comparison",
    )
    parser.add_argument(
        "--fetchers",
        type=int,
        default=0,
        help="ingest with this many fetcher child processes (0: fetch in the consumer)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the ingest consumer without fetchers (fetchers=0) in the same run",
    )
    parser.add_argument("--partitions", type=int, default=PARTITIONS)
    parser.add_argument("--child", choices=["raw", "ingest"], help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with EmbeddedBroker(port=0, partitions=args.partitions).start() as broker:
        mode = "Python" if args.python_decode else "store (checked Avro)"
        print(
            f"broker {broker.bootstrap}, {args.partitions} partitions, batch size "
            f"{args.batch_size}, decoding in {mode}, fetchers {args.fetchers}"
        )
        for family, count, text in (
            ("tool_span", args.tool_spans, 200),
            ("llm_call", args.llm_calls, 5600),
        ):
            if count <= 0:
                continue
            topic = f"bench-{family}-{int(time.time())}"
            sent = fill(broker.bootstrap, topic, family, count, text, args.partitions)
            cpu0 = _cpu_seconds(broker.pid or 0)
            raw = in_subprocess("raw", broker.bootstrap, topic, count, args.batch_size, False)
            raw["cpu"]["broker"] = _cpu_seconds(broker.pid or 0) - cpu0
            runs = [args.fetchers]
            if args.compare and args.fetchers:
                runs.insert(0, 0)
            for fetchers in runs:
                cpu0 = _cpu_seconds(broker.pid or 0)
                ingest = in_subprocess(
                    "ingest", broker.bootstrap, topic, count, args.batch_size,
                    args.python_decode, fetchers,
                )  # fmt: skip
                ingest["cpu"]["broker"] = _cpu_seconds(broker.pid or 0) - cpu0
                print(
                    f"{family:<10} {count:>7} events of {sent / count:,.0f} B | "
                    f"raw fetch {raw['rate']:>9,.0f}/s (RSS {raw['peak_rss_mb']:.0f} MB) | "
                    f"ingest, {fetchers} fetchers {ingest['rate']:>9,.0f}/s "
                    f"(RSS {ingest['peak_rss_mb']:.0f} MB) | "
                    f"ratio {ingest['rate'] / raw['rate']:.2f}"
                )
                for name, run in (("raw fetch", raw), (f"ingest, {fetchers} fetchers", ingest)):
                    print(f"  CPU per event, {name}: {_cpu_line(run, count)}")


if __name__ == "__main__":
    main()
