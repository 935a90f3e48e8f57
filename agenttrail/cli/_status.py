"""``agenttrail status``: how the pipeline is doing, from a running stack or a server."""

from __future__ import annotations

import base64
import json
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import click
from pydantic import SecretStr

from agenttrail.cli._common import fail, render_table, store_failure, store_location_options
from agenttrail.cli._spools import spool_roots, spooled
from agenttrail.events import EVENTS_TOPIC
from agenttrail.query import BrokerStatusError, broker_status, store_status
from agenttrail.store import StoreConfig, StoreError, StoreTarget, open_store
from agenttrail.store._served import READ_USER

_DEFAULT_GROUP = "agenttrail-ingest"


@click.command("status")
@click.option(
    "--bootstrap",
    default=None,
    metavar="HOST:PORT",
    help="Kafka broker; by default the running `agenttrail up`'s (from DATA/up.json).",
)
@click.option("--group", default=_DEFAULT_GROUP, show_default=True, help="Consumer group.")
@click.option("--topic", default=EVENTS_TOPIC, show_default=True, help="Events topic.")
@click.option(
    "--minutes",
    type=click.IntRange(1, 1440),
    default=5,
    show_default=True,
    help="Events stored per minute over this many minutes.",
)
@click.option(
    "--watch",
    "watch",
    type=click.FloatRange(min=0.5),
    default=None,
    is_flag=False,
    flag_value=2.0,
    metavar="[SECONDS]",
    help="Repeat every SECONDS (2 when given alone) until Ctrl-C.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one line per --watch round).")
@store_location_options
def command(
    bootstrap: str | None,
    group: str,
    topic: str,
    minutes: int,
    watch: float | None,
    as_json: bool,
    data: Path | None,
    clickhouse: str | None,
) -> None:
    """Broker, partitions, consumer lag, events stored (per family and per minute), dead
    letters by reason, the oldest unconsumed event's age, the store's size, and what SDKs
    on this machine have spooled (not yet delivered).

    Beside a running `agenttrail up` everything is found through DATA/up.json; against a
    server give --clickhouse and --bootstrap. Exit 0, 2 when the store cannot be read or
    a broker named with --bootstrap does not answer.

    \b
    Example:
      agenttrail status --data ./.agenttrail
      agenttrail status --watch 5
      agenttrail status --clickhouse http://u:pw@ch:8123/agenttrail --bootstrap kafka:9092
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if watch is not None:  # Ctrl-C ends the watch between two rounds, exit 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
    while True:
        report, code = _collect(data, clickhouse, bootstrap, group, topic, minutes, as_json)
        if as_json:
            click.echo(json.dumps(report, default=str))
        else:
            if watch is not None:
                click.clear()
            click.echo(render(report))
        sys.stdout.flush()
        if watch is None:
            sys.exit(code)
        if stop.wait(watch):
            return


def _collect(
    data: Path | None,
    clickhouse: str | None,
    bootstrap: str | None,
    group: str,
    topic: str,
    minutes: int,
    as_json: bool,
) -> tuple[dict[str, Any], int]:
    report: dict[str, Any] = {"status": "ok", "at": time.time()}
    code = 0
    up = _running_up(data, clickhouse)
    if up is not None:
        report["stack"] = up
        bootstrap = bootstrap or up.get("bootstrap")
    try:
        store = open_store(clickhouse=clickhouse, data=data, create=False)
    except StoreError as exc:
        fail(as_json, str(exc))
    with store:
        try:
            report["store"] = store_status(store, minutes).to_dict()
        except StoreError as exc:
            store_failure(as_json, exc)
    report["spools"] = spooled(spool_roots(data))
    if bootstrap is None:
        report["broker"] = None
        return report, code
    try:
        report["broker"] = broker_status(bootstrap, topic, group).to_dict()
    except BrokerStatusError as exc:
        report["broker"] = {"bootstrap": bootstrap, "error": str(exc)}
        report["status"] = "error"
        code = 2
    return report, code


def _running_up(data: Path | None, clickhouse: str | None) -> dict[str, Any] | None:
    """The live status of the `up` that holds the store, when one does and answers."""
    try:
        config = StoreConfig()
        if data is not None or clickhouse:
            update = {"data": data, "clickhouse": SecretStr(clickhouse) if clickhouse else None}
            config = config.model_copy(update=update)
        target = config.target()
    except StoreError:
        return None
    if target.kind != "chdb" or target.path is None:
        return None
    return _ask_up(target)


def _ask_up(target: StoreTarget) -> dict[str, Any] | None:
    assert target.path is not None
    try:
        info = json.loads((target.path.parent / "up.json").read_text())
        url, token = str(info["read_endpoint"]), str(info["read_token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    request = urllib.request.Request(
        f"{url}/agenttrail/status",
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{READ_USER}:{token}".encode()).decode()
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            status = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def render(report: dict[str, Any]) -> str:
    """The status for people: a few labelled lines and two small tables."""
    lines: list[str] = []
    stack = report.get("stack")
    if stack:
        ingest = stack.get("ingest", {})
        started = stack.get("started_at")
        up_for = f", up {_age(time.time() - started)}" if started else ""
        state = "consumer running" if stack.get("consumer_alive") else "CONSUMER STOPPED"
        if ingest.get("retrying"):
            state += f", STORE FAILING (retrying): {ingest.get('last_error')}"
        lines.append(f"stack     agenttrail up, pid {stack.get('pid')}{up_for}; {state}")
    broker = report.get("broker")
    if broker is None:
        lines.append("broker    — (no running `up` found; give --bootstrap HOST:PORT)")
    elif "error" in broker:
        lines.append(f"broker    {broker['bootstrap']}: {broker['error']}")
    else:
        topics = ", ".join(f"{t} ({n} partitions)" for t, n in sorted(broker["topics"].items()))
        lines.append(f"broker    {broker['bootstrap']}  topics {topics or 'none'}")
        oldest = broker["oldest_unconsumed_age_s"]
        age = "nothing unconsumed" if oldest is None else f"oldest unconsumed {_age(oldest)} old"
        lag = "unknown (a partition did not answer)" if broker["lag"] is None else broker["lag"]
        lines.append(f"lag       {lag} messages (group {broker['group']}); {age}")
        rows = [
            [
                p["partition"],
                p["committed"],
                p["high_water"],
                p["lag"],
                None
                if p["oldest_unconsumed_age_s"] is None
                else _age(p["oldest_unconsumed_age_s"]),
            ]
            for p in broker["partitions"]
        ]
        if rows:
            table = render_table(["partition", "committed", "high water", "lag", "oldest"], rows)
            lines += ["  " + line for line in table.splitlines()]
    store = report["store"]
    size = _bytes(store["bytes_on_disk"])
    lines.append(f"store     {store['location']}  {size}, {store['rows_on_disk']:,} rows")
    families = ", ".join(f"{k} {v:,}" for k, v in store["events"].items())
    lines.append(f"events    {store['events_total']:,} stored: {families}")
    minutes = store["per_minute"]
    lines.append(
        "per min   " + "  ".join(f"{m[11:16]} {n:,}" for m, n in minutes) + "  (UTC, stored)"
    )
    dead = store["dead_letters"]
    lines.append(
        "dead      "
        + (", ".join(f"{reason} {n:,}" for reason, n in dead.items()) if dead else "none")
    )
    spools = report.get("spools") or []
    if not spools:
        lines.append("spooled   nothing (no SDK spool on this machine holds undelivered events)")
    for spool in spools:
        owner = "its process is running" if spool["owner_alive"] else "its process is gone"
        lines.append(
            f"spooled   {_bytes(spool['pending_bytes'])} for {spool['destination'] or '?'} "
            f"in {spool['path']} ({owner})"
        )
    return "\n".join(lines)


def _age(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


__all__ = ["command"]
