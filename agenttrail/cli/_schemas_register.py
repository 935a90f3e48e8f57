"""``agenttrail schemas register``: put the Avro contracts into a Schema Registry.

Exit codes: 0 registered (or already were), 1 the registry refused a version (e.g.
incompatible), 2 the registry cannot be reached or the schemas cannot be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agenttrail.cli._common import fail
from agenttrail.events import EVENTS_TOPIC, RegistryError, SchemaRegistry
from agenttrail.events._registry_ids import register_schemas
from agenttrail.events._schema_registry import (
    COMPATIBILITY,
    SchemaRegistryClient,
    SchemaRegistryError,
    SchemaRegistryUnavailable,
)


@click.command("register")
@click.option(
    "--registry",
    "url",
    metavar="URL",
    envvar="AGENTTRAIL_SCHEMA_REGISTRY",
    required=True,
    help="Schema Registry base URL (Confluent API); user:password@ in it for basic auth. "
    "[env AGENTTRAIL_SCHEMA_REGISTRY]",
)
@click.option(
    "--topic",
    default=EVENTS_TOPIC,
    show_default=True,
    help="Topic the subjects are named after (<topic>-<record full name>).",
)
@click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    default=None,
    help="Schemas directory holding registry.json; the packaged schemas/ by default.",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def command(url: str, topic: str, root: Path | None, timeout: float, as_json: bool) -> None:
    """Register every schema version in a Schema Registry, idempotently.

    One subject per family (TopicRecordNameStrategy: <topic>-<record full name>, so
    the five records of the one topic are checked separately), compatibility
    BACKWARD_TRANSITIVE set on each, versions registered oldest first. Says what it
    changed; a second run changes nothing. The ids are the registry's: producers
    configured with the same registry frame events with them, consumers resolve them.

    \b
    Example:
      agenttrail schemas register --registry http://schema-registry:8081
      AGENTTRAIL_SCHEMA_REGISTRY=https://user:secret@sr:8081 agenttrail schemas register --json
    """
    try:
        registry = SchemaRegistry.load(root) if root is not None else SchemaRegistry.load()
        client = SchemaRegistryClient(url, timeout=timeout)
    except (RegistryError, FileNotFoundError, SchemaRegistryError) as exc:
        fail(as_json, str(exc))
    try:
        changes = register_schemas(client, registry, topic)
    except SchemaRegistryUnavailable as exc:
        fail(as_json, f"{exc} Nothing after the last reported change was made; run again.")
    except SchemaRegistryError as exc:
        hint = ""
        if exc.status == 409:
            hint = (
                f" The subject already holds a version this one is not {COMPATIBILITY} "
                "compatible with; `agenttrail schemas check` shows the packaged history."
            )
        fail(as_json, f"{exc}{hint}", code=1)
    changed = sum(1 for c in changes if c.changed)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": "ok",
                    "registry": client.url,
                    "changed": changed,
                    "changes": [
                        {
                            "subject": c.subject,
                            "action": c.action,
                            "version": c.version,
                            "id": c.schema_id,
                        }
                        for c in changes
                    ],
                },
                indent=2,
            )
        )
        sys.exit(0)
    for change in changes:
        mark = "+" if change.changed else "="
        click.echo(f"{mark} {change.subject}: {change.detail}")
    summary = f"{changed} change(s)" if changed else "nothing to change"
    click.echo(f"Schema Registry {client.url}: {summary}.")
