"""``agenttrail dashboards``: list the Grafana dashboards and push them to a Grafana.

Exit codes: 0 pushed (or nothing to change), 2 Grafana refused, did not answer, or the
``grafana`` extra is not installed.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import click

from agenttrail.cli._common import fail


@click.group("dashboards", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Grafana dashboards on the ClickHouse data source.

    \b
    Example:
      agenttrail dashboards list
      agenttrail dashboards push --grafana http://localhost:3000 --token glsa_…
    """


_DIR_OPTION = click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the dashboard JSON files; the packaged dashboards/ by default.",
)


@command.command("list")
@_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def list_dashboards(root: Path | None, as_json: bool) -> None:
    """List the dashboards: uid, title and panel count.

    \b
    Example:
      agenttrail dashboards list --json
    """
    from agenttrail.grafana import GrafanaPushError, load_dashboards

    try:
        boards = load_dashboards(root)
    except (GrafanaPushError, FileNotFoundError) as exc:
        fail(as_json, str(exc))
    rows = [{"uid": b["uid"], "title": b["title"], "panels": len(b["panels"])} for b in boards]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['uid']:<24} {row['panels']:>3} panels  {row['title']}")


@command.command("push")
@click.option(
    "--grafana",
    "url",
    metavar="URL",
    envvar="GRAFANA_URL",
    required=True,
    help="Grafana base URL, e.g. http://localhost:3000. [env GRAFANA_URL]",
)
@click.option(
    "--token",
    envvar="GRAFANA_TOKEN",
    default=None,
    help="Service account token (Editor role or more). [env GRAFANA_TOKEN]",
)
@click.option("--user", default=None, help="Basic-auth user instead of a token (e.g. admin).")
@click.option(
    "--password",
    envvar="GRAFANA_PASSWORD",
    default=None,
    help="Password of --user. [env GRAFANA_PASSWORD; prompted when --user is given without it]",
)
@click.option(
    "--clickhouse-url",
    metavar="URL",
    default=None,
    help="ClickHouse as Grafana's server reaches it, http(s)://user@host:port/database; "
    "the provisioning file's (agenttrail_grafana@clickhouse:8123/agenttrail) by default.",
)
@click.option(
    "--clickhouse-password-env",
    metavar="VAR",
    default="AGENTTRAIL_CH_READER_PASSWORD",
    show_default=True,
    help="Environment variable holding the ClickHouse password the data source uses.",
)
@_DIR_OPTION
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def push(
    url: str,
    token: str | None,
    user: str | None,
    password: str | None,
    clickhouse_url: str | None,
    clickhouse_password_env: str,
    root: Path | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Create or update the data source, the 'agenttrail' folder and every dashboard.

    Each object is read first and written only when missing or different, so a second
    push changes nothing; the output says what was created, updated or unchanged. The
    ClickHouse password is sent when the data source is created or has none (Grafana
    never returns it; set it in Grafana to change it later).

    \b
    Example:
      agenttrail dashboards push --grafana http://localhost:3000 --token "$GRAFANA_TOKEN"
      agenttrail dashboards push --grafana https://grafana.example --user admin \\
          --clickhouse-url https://agenttrail_reader@ch.example:8443/agenttrail
    """
    try:
        from grafana_client.api import GrafanaApi
    except ImportError as exc:
        fail(
            as_json,
            f"dashboards push needs grafana-client ({exc}): pip install 'agenttrail[grafana]'.",
        )
    from agenttrail.grafana import (
        GrafanaPusher,
        GrafanaPushError,
        desired_datasource,
        load_dashboards,
    )

    credential: Any = token
    if credential is None and user is not None:
        if password is None:
            password = click.prompt(f"Grafana password of {user}", hide_input=True, err=True)
        credential = (user, password)
    try:
        boards = load_dashboards(root)
        source, ch_password = desired_datasource(
            clickhouse_url, os.environ.get(clickhouse_password_env) or None, root
        )
        api = GrafanaApi.from_url(url.rstrip("/"), credential=credential, timeout=timeout)
        shown = _without_credentials(url.rstrip("/"))
        changes = GrafanaPusher(api, shown).push(source, ch_password, boards)
    except (GrafanaPushError, FileNotFoundError) as exc:
        fail(as_json, str(exc))
    changed = sum(c.changed for c in changes)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": "ok",
                    "changed": changed,
                    "changes": [
                        {"kind": c.kind, "uid": c.uid, "title": c.title, "action": c.action}
                        for c in changes
                    ],
                },
                indent=2,
            )
        )
        return
    for c in changes:
        click.echo(f"{c.action:<9} {c.kind:<10} {c.uid:<24} {c.title}")
    if ch_password is None and changes[0].action == "created":
        click.echo(
            f"Note: no ClickHouse password given (${clickhouse_password_env} is unset); "
            "set it on the data source in Grafana.",
            err=True,
        )
    summary = f"{changed} change(s)" if changed else "nothing to change"
    click.echo(f"Grafana {shown}: {summary}.")


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
