"""``agenttrail up``: broker + consumer + in-process store on this machine, in the foreground."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click

from agenttrail.cli._stack_errors import STACK_ERRORS
from agenttrail.cli._up_otlp import start_local_receiver
from agenttrail.embedded import DEFAULT_DATA_DIR, LocalStack


@click.command("up")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Data directory: the store, the broker log and up.json live here.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9092,
    show_default=True,
    help="Broker port on 127.0.0.1; 0 picks a free one.",
)
@click.option(
    "--otlp-port",
    type=click.IntRange(-1, 65535),
    default=None,
    help="OTLP/HTTP receiver port on 127.0.0.1 (0 a free one, -1 none). "
    "[default: 4318, a free one when 4318 is taken]",
)
@click.option(
    "--schema-registry",
    metavar="URL",
    envvar="AGENTTRAIL_SCHEMA_REGISTRY",
    default=None,
    help="Schema Registry the agents frame with (Recorder(schema_registry=URL)); the "
    "consumer and the OTLP receiver use its ids. [env AGENTTRAIL_SCHEMA_REGISTRY]",
)
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON lines.")
def command(
    data: Path, port: int, otlp_port: int | None, schema_registry: str | None, as_json: bool
) -> None:
    """Run the whole stack on this machine until Ctrl-C.

    Starts the embedded Kafka-compatible broker, the ingest consumer and ClickHouse's
    engine in-process, shows a live status line, and writes DATA/up.json so that
    ``Recorder.from_env()`` finds the broker. Ctrl-C stores everything the broker
    acknowledged, then stops. The broker keeps messages in memory: events not yet
    stored when the process is killed hard are lost with it (the SDK's spool is not).

    \b
    Example:
      agenttrail up --data ./.agenttrail
      AGENTTRAIL_DATA=./.agenttrail python my_agent.py     # in another shell
    """
    stop = threading.Event()
    hurry = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            hurry.set()  # a second Ctrl-C: stop waiting for the drain
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stack = LocalStack(data, port=port, schema_registry=schema_registry)
    try:
        stack.start()
    except STACK_ERRORS as exc:
        click.echo(f"agenttrail up: {exc}", err=True)
        sys.exit(2)
    receiver = None
    if otlp_port is None or otlp_port >= 0:
        try:
            receiver = start_local_receiver(stack, otlp_port)
        except OSError as exc:
            click.echo(f"agenttrail up: {exc}", err=True)
            stack.stop()
            sys.exit(2)
    try:
        ready = {
            "status": "ready",
            "bootstrap": stack.bootstrap,
            "otlp": receiver.url if receiver is not None else None,
            "store": str(stack.data / "clickhouse"),
            "up_file": str(stack.up_file),
        }
        if as_json:
            click.echo(json.dumps(ready), nl=True)
        else:
            click.echo(f"broker     {stack.bootstrap}")
            click.echo(f"store      {stack.data / 'clickhouse'}")
            click.echo(f"agents     export AGENTTRAIL_BOOTSTRAP={stack.bootstrap}")
            if receiver is not None:
                click.echo(f"otel apps  export OTEL_EXPORTER_OTLP_ENDPOINT={receiver.url}")
            click.echo("Ctrl-C stops after storing everything the broker acknowledged.")
        _status_loop(stack, stop, as_json)
        if receiver is not None:
            receiver.stop()  # nothing new arrives while the broker drains
            receiver = None
        click.echo("\nstoring what the broker holds (Ctrl-C again to stop waiting)…", err=True)
        snap = stack.drain(progress=_drain_progress(as_json), give_up=hurry)
        if not as_json:
            click.echo("", err=True)
    except STACK_ERRORS as exc:
        click.echo(f"\nagenttrail up: {exc}", err=True)
        if receiver is not None:
            receiver.stop()
        stack.stop()
        sys.exit(2)
    stack.stop()
    if as_json:
        click.echo(json.dumps({"status": "stopped", **snap.to_dict()}))
    else:
        click.echo(f"stopped: {snap.events_total} events, {snap.dead_letters} dead letters stored")


def _drain_progress(as_json: bool) -> Callable[[int, int], None]:
    """Show the drain's progress on stderr: one rewritten line, or JSON lines."""

    def show(stored: int, held: int) -> None:
        if as_json:
            click.echo(json.dumps({"status": "draining", "stored": stored, "held": held}))
        else:
            click.echo(f"\r  stored {stored} of {held} held by the broker", nl=False, err=True)

    return show


def _status_loop(stack: LocalStack, stop: threading.Event, as_json: bool) -> None:
    last_total, last_time = 0, time.monotonic()
    while not stop.wait(1.0):
        stack.check()
        snap = stack.snapshot()
        now = time.monotonic()
        rate = (snap.events_total - last_total) / max(1e-6, now - last_time)
        last_total, last_time = snap.events_total, now
        if as_json:
            click.echo(
                json.dumps({"status": "running", "events_per_s": round(rate, 1), **snap.to_dict()})
            )
        else:
            lag = "-" if snap.lag is None else str(snap.lag)
            failing = "  STORE FAILING, retrying" if snap.retrying else ""
            line = (
                f"\r{rate:8.0f} events/s  stored {snap.events_total:>9}  "
                f"dead letters {snap.dead_letters:>5}  lag {lag:>6}{failing}"
            )
            click.echo(line, nl=False)
