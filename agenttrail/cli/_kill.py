"""``agenttrail kill``: stop running tasks (one, a type, an agent, a tenant, or all)."""

from __future__ import annotations

import getpass
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import click

from agenttrail.cli._common import fail
from agenttrail.events import CONTROL_TOPIC
from agenttrail.producer._config import discover_local_stack
from agenttrail.producer._control import Scope, new_command, new_signing_key, sign
from agenttrail.producer._operator import AnswerCollector, ControlUnavailable, publish_command


def _issuer() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@click.command("kill")
@click.option("--task", "task_id", metavar="ID", help="Stop this task.")
@click.option("--task-type", metavar="TYPE", help="Stop every task of this type.")
@click.option("--agent", metavar="NAME", help="Stop every task of this agent.")
@click.option("--tenant", metavar="NAME", help="Stop every task of this tenant.")
@click.option("--all", "everything", is_flag=True, help="Stop every task of every agent.")
@click.option("--lift", is_flag=True, help="Lift the kill of this scope (--all: every kill).")
@click.option("--reason", metavar="TEXT", help="Why; recorded with the command and the stops.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for acknowledgements (0: publish and return).",
)
@click.option(
    "--bootstrap",
    envvar="AGENTTRAIL_BOOTSTRAP",
    metavar="HOST:PORT",
    help="Kafka bootstrap servers. [env AGENTTRAIL_BOOTSTRAP] (default: the running "
    "`agenttrail up` in --data)",
)
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="AGENTTRAIL_DATA",
    help="Data directory of a running `agenttrail up`. [env AGENTTRAIL_DATA]",
)
@click.option("--topic", default=CONTROL_TOPIC, show_default=True, help="The control topic.")
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AGENTTRAIL_CONTROL_SIGNING_KEY",
    help="Ed25519 private key (PEM) to sign the command with. [env AGENTTRAIL_CONTROL_SIGNING_KEY]",
)
@click.option(
    "--new-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a new signing key to this file, print its public key, and exit.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(
    task_id: str | None,
    task_type: str | None,
    agent: str | None,
    tenant: str | None,
    everything: bool,
    lift: bool,
    reason: str | None,
    wait: float,
    bootstrap: str | None,
    data: Path | None,
    topic: str,
    signing_key: Path | None,
    new_key: Path | None,
    as_json: bool,
) -> None:
    """Stop running tasks within seconds, and refuse new ones in the scope until lifted.

    Every running recorder hears the command on the control topic; each task in scope
    stops at its next SDK call (asyncio tasks with an on_stop hook are cancelled at once)
    and acknowledges. Exit 0 when every task a recorder reported running acknowledged
    within --wait, 1 when some did not, 2 on a usage or connection error.

    \b
    Example:
      agenttrail kill --task-type refund --reason "refunds loop on order 7294"
      agenttrail kill --all --wait 30 --json
      agenttrail kill --lift --task-type refund
      agenttrail kill --new-key ops.pem      # then set AGENTTRAIL_CONTROL_PUBLIC_KEYS
    """
    if new_key is not None:
        _write_key(new_key, as_json)
        return
    scoped = {"task_id": task_id, "task_type": task_type, "agent": agent, "tenant": tenant}
    if everything == any(v is not None for v in scoped.values()):
        fail(
            as_json,
            "Name the scope: one or more of --task, --task-type, --agent, --tenant, or "
            "--all alone.",
        )
    scope = Scope(**scoped)
    address = bootstrap or discover_local_stack(data)
    if address is None:
        fail(
            as_json,
            "No broker to send the command to: pass --bootstrap HOST:PORT (or set "
            "AGENTTRAIL_BOOTSTRAP), or run `agenttrail up` and pass its --data.",
        )
    message = new_command("lift" if lift else "kill", scope, issued_by=_issuer(), reason=reason)
    if signing_key is not None:
        try:
            message = sign(message, signing_key.read_bytes())
        except (OSError, ValueError) as exc:
            fail(as_json, f"Cannot sign with {signing_key}: {exc}")
    try:
        if lift or wait == 0:
            _, offset = publish_command(address, message, topic)
            _done(as_json, message.command_id, message.type, scope.describe(), offset)
            return
        with AnswerCollector(address, topic) as collector:  # connected before publishing
            published_at = time.monotonic()
            partition, offset = publish_command(address, message, topic)
            outcome = collector.collect(
                message, partition, offset, wait_s=wait, published_at=published_at
            )
    except ControlUnavailable as exc:
        fail(as_json, str(exc))
    if as_json:
        click.echo(json.dumps(outcome.to_dict()))
    else:
        stopped = list(outcome.stopped.values())
        seen = [s.seen_after_ms for s in stopped]
        click.echo(
            f"Kill {message.command_id} ({scope.describe()}): {len(stopped)} task(s) of "
            f"{len(outcome.recorders)} recorder(s) stopped"
            + (
                f"; acknowledged after p50 {statistics.median(seen):.0f} ms, max {max(seen):.0f} ms"
                if seen
                else ""
            )
            + "."
        )
        for t in outcome.pending:
            click.echo(f"  NOT stopped within {wait:g}s: {t}")
        if not outcome.recorders:
            click.echo("  No running recorder answered; new tasks in this scope are refused.")
    sys.exit(0 if outcome.complete else 1)


def _done(as_json: bool, command_id: str, kind: str, scope: str, offset: int) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "command_id": command_id,
                    "type": kind,
                    "scope": scope,
                    "offset": offset,
                    "complete": True,
                }
            )
        )
    elif kind == "lift":
        click.echo(f"Lifted the kill of {scope} ({command_id}); new tasks may start.")
    else:
        click.echo(f"Kill {command_id} ({scope}) published; not waiting for acknowledgements.")


def _write_key(path: Path, as_json: bool) -> None:
    if path.exists():
        fail(as_json, f"{path} exists; choose another file (keys are never overwritten).")
    pem, public = new_signing_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    if as_json:
        click.echo(json.dumps({"signing_key": str(path), "public_key": public}))
    else:
        click.echo(
            f"Wrote the signing key to {path} (mode 600). Give recorders the public key:\n"
            f"  AGENTTRAIL_CONTROL_PUBLIC_KEYS={public}\n"
            f"and sign commands with --signing-key {path}."
        )
