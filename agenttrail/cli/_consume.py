"""``agenttrail consume``: run the Kafka → ClickHouse ingest consumer in the foreground."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click
from kafka.errors import KafkaError

from agenttrail.cli._common import store_location_options
from agenttrail.consumers import (
    ConsumerConfig,
    ConsumerError,
    IngestSnapshot,
    IngestStats,
    run_consumer,
)
from agenttrail.events._schema_registry import SchemaRegistryError
from agenttrail.store import MigrationError, StoreError, open_store


@click.command("consume")
@click.option(
    "--bootstrap",
    metavar="HOST:PORT",
    default=None,
    help="Kafka bootstrap servers. [env AGENTTRAIL_BOOTSTRAP]",
)
@store_location_options
@click.option("--group", default=None, help="Consumer group. [env AGENTTRAIL_GROUP]")
@click.option(
    "--schema-registry",
    metavar="URL",
    default=None,
    help="Schema Registry whose ids the producers frame with; unknown ids are resolved "
    "through it. [env AGENTTRAIL_SCHEMA_REGISTRY]",
)
@click.option("--topic", default=None, help="Topic to ingest. [env AGENTTRAIL_TOPIC]")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="Messages per partition batch."
)
@click.option(
    "--batch-ms",
    type=click.IntRange(min=1),
    default=None,
    help="Longest wait before a partial batch is stored.",
)
@click.option(
    "--fetchers",
    type=click.IntRange(min=0, max=64),
    default=None,
    help="Child processes that fetch the assigned partitions (each takes partition % N), "
    "so Kafka record parsing leaves the process that writes the store; 0 fetches in this "
    "process. [env AGENTTRAIL_FETCHERS; default 0]",
)
@click.option(
    "--fetcher-client",
    type=click.Choice(["auto", "confluent-kafka", "kafka-python"]),
    default=None,
    help="The fetcher processes' Kafka client: confluent-kafka (librdkafka, from "
    "agenttrail[native]) parses in C at a fraction of the CPU; auto takes it when "
    "installed. [env AGENTTRAIL_FETCHER_CLIENT; default auto]",
)
@click.option(
    "--status-every",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between status lines; 0 for none.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of text.")
def command(
    bootstrap: str | None,
    data: Path | None,
    clickhouse: str | None,
    group: str | None,
    schema_registry: str | None,
    topic: str | None,
    batch_size: int | None,
    batch_ms: int | None,
    fetchers: int | None,
    fetcher_client: str | None,
    status_every: float,
    as_json: bool,
) -> None:
    """Store every event from Kafka in ClickHouse, exactly once, until Ctrl-C or SIGTERM.

    Applies pending migrations, joins the consumer group, and stores batches per
    partition; offsets are committed only after the insert. Undecodable or invalid
    messages go to dead_letters; when the store fails, consumption pauses and retries.
    On a stop signal the current batches are stored and committed. With
    --schema-registry, schema ids are the registry's and unknown ones are resolved
    through it. Exit 0 after a clean stop, 1 on a migration problem, 2 when the store,
    broker or registry cannot be reached.

    \b
    Example:
      agenttrail consume --bootstrap 127.0.0.1:9092 --data ./trail
      agenttrail consume --bootstrap kafka:9092 \\
        --clickhouse http://default:pw@ch:8123/agenttrail \\
        --schema-registry http://schema-registry:8081
    """
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "bootstrap": bootstrap,
            "group": group,
            "schema_registry": schema_registry,
            "topic": topic,
            "batch_size": batch_size,
            "batch_ms": batch_ms,
            "fetchers": fetchers,
            "fetcher_client": fetcher_client,
        }.items()
        if v is not None
    }
    config = ConsumerConfig(**overrides)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("agenttrail").setLevel(logging.INFO)
    try:
        store = open_store(clickhouse=clickhouse, data=data)
    except StoreError as exc:
        _fail(as_json, exc, 2)
    stop = threading.Event()
    stats = IngestStats()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            run_consumer(config, stop, store=store, stats=stats)
        except BaseException as exc:
            failure.append(exc)
        finally:
            stop.set()

    with store:
        _emit(as_json, {"status": "started", "bootstrap": config.bootstrap, "topic": config.topic,
                        "group": config.group, "store": store.location},
              f"Consuming {config.topic} from {config.bootstrap} as group {config.group} into "
              f"{store.location}. Ctrl-C stops after storing the current batches.")  # fmt: skip
        previous = {s: signal.signal(s, _stopper(stop)) for s in (signal.SIGINT, signal.SIGTERM)}
        worker = threading.Thread(target=work, name="agenttrail-ingest", daemon=True)
        worker.start()
        try:
            while not stop.wait(status_every or None):
                _status(as_json, stats.snapshot())
            worker.join()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if failure:
        error = failure[0]
        if isinstance(error, MigrationError):
            _fail(as_json, error, 1)
        if isinstance(error, StoreError | ConsumerError | KafkaError | SchemaRegistryError):
            _fail(as_json, error, 2)
        raise error
    final = stats.snapshot()
    _emit(as_json, {"status": "stopped", **final.to_dict()}, "Stopped. " + _line(final))


def _stopper(stop: threading.Event) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return handler


def _line(s: IngestSnapshot) -> str:
    families = ", ".join(f"{k} {v}" for k, v in sorted(s.events.items())) or "none"
    lag = "?" if s.lag is None else str(s.lag)
    retry = f"; store failing, retrying: {s.last_error}" if s.retrying else ""
    return (
        f"stored {s.events_total} events ({families}), {s.dead_letters} dead letters, "
        f"{s.batches} batches, lag {lag}, partitions {list(s.partitions)}{retry}"
    )


def _status(as_json: bool, s: IngestSnapshot) -> None:
    _emit(as_json, {"status": "running", **s.to_dict()}, _line(s))


def _emit(as_json: bool, record: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(record) if as_json else text)
    sys.stdout.flush()


def _fail(as_json: bool, exc: BaseException, code: int) -> None:
    message = str(exc) or type(exc).__name__
    if as_json:
        click.echo(json.dumps({"status": "error", "error": type(exc).__name__, "message": message}))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(code)


__all__ = ["command"]
