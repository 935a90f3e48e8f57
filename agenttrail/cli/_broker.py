"""``agenttrail broker``: run the embedded Kafka-compatible broker in the foreground."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from agenttrail.embedded import CONTROL_TOPIC_PARTITIONS, BrokerError, EmbeddedBroker
from agenttrail.events import CONTROL_TOPIC, EVENTS_TOPIC

_LIVENESS_CHECK_SECONDS = 0.5
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@click.command("broker")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9092,
    show_default=True,
    help="Loopback port to listen on; 0 picks a free one.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help=f"Partitions of the {EVENTS_TOPIC} topic ({CONTROL_TOPIC} always has 1).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the broker's log (DIR/broker.log). Records stay in memory, not here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of text.")
def command(port: int, partitions: int, data_dir: Path | None, as_json: bool) -> None:
    """Run a local Kafka-compatible broker (Tansu) until Ctrl-C or SIGTERM.

    Creates the agenttrail topics, prints the bootstrap address, then blocks. The
    broker keeps records in memory only: everything is gone once it stops. --data
    only chooses where its log goes. Exit 0 after a clean stop, 2 if the broker could
    not start (port in use, binary missing) or died while running.

    \b
    Example:
      agenttrail broker --port 0 --data ./trail
      export AGENTTRAIL_BOOTSTRAP=127.0.0.1:<printed port>
    """
    log_path = data_dir / "broker.log" if data_dir is not None else None
    broker = EmbeddedBroker(port=port, partitions=partitions, log_path=log_path)
    stop_requested = threading.Event()
    try:
        with _stop_on_signals(stop_requested):
            try:
                broker.start()
                _emit(as_json, _ready_record(broker), _ready_text(broker))
                _block_until_stopped(broker, stop_requested)
            finally:
                broker.stop()
    except BrokerError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    _emit(as_json, {"status": "stopped"}, "Broker stopped.")


def _block_until_stopped(broker: EmbeddedBroker, stop_requested: threading.Event) -> None:
    """Return when a stop signal arrived; raise BrokerError if the broker died first."""
    while not stop_requested.wait(_LIVENESS_CHECK_SECONDS):
        if not broker.running:
            raise BrokerError(
                f"The broker (pid {broker.pid}) exited unexpectedly. End of its log "
                f"{broker.log_path}:\n{broker.log_tail()}"
            )


@contextmanager
def _stop_on_signals(stop_requested: threading.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into ``stop_requested`` so the broker is always stopped."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _ready_record(broker: EmbeddedBroker) -> dict[str, Any]:
    return {
        "status": "ready",
        "bootstrap": broker.bootstrap,
        "port": broker.port,
        "pid": broker.pid,
        "storage": "memory",
        "log": str(broker.log_path),
        "topics": {EVENTS_TOPIC: broker.partitions, CONTROL_TOPIC: CONTROL_TOPIC_PARTITIONS},
    }


def _ready_text(broker: EmbeddedBroker) -> str:
    return "\n".join(
        [
            f"Broker ready at {broker.bootstrap} (Tansu, pid {broker.pid}).",
            "Storage is in memory: every record is lost when the broker stops.",
            f"Topics: {EVENTS_TOPIC} ({broker.partitions} partitions), "
            f"{CONTROL_TOPIC} ({CONTROL_TOPIC_PARTITIONS} partition)",
            f"Log: {broker.log_path}",
            "Point agenttrail at it with:",
            f"  export AGENTTRAIL_BOOTSTRAP={broker.bootstrap}",
            "Press Ctrl-C to stop.",
        ]
    )


def _emit(as_json: bool, record: dict[str, Any], text: str) -> None:
    # Flushed at once: a supervisor reading our stdout through a pipe waits for this line.
    click.echo(json.dumps(record) if as_json else text)
    sys.stdout.flush()


__all__ = ["command"]
