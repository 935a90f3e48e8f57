"""The ``agenttrail`` command line. Commands are thin: parse, call the library, render.

Exit codes: 0 ok, 1 a problem was found (e.g. an incompatible schema), 2 usage or
connection error.
"""

from __future__ import annotations

import importlib
import logging

import click

from agenttrail import __version__

# Each module defines ``command`` (a click command or group); imported lazily so that
# ``agenttrail --help`` does not pay for every backend import.
_COMMAND_MODULES = {
    "schemas": "agenttrail.cli._schemas",
    "broker": "agenttrail.cli._broker",
    "migrate": "agenttrail.cli._migrate",
    "consume": "agenttrail.cli._consume",
    "up": "agenttrail.cli._up",
    "otlp": "agenttrail.cli._otlp",
    "demo": "agenttrail.cli._demo",
    "query": "agenttrail.cli._query",
    "runs": "agenttrail.cli._runs",
    "metrics": "agenttrail.cli._metrics",
    "replay": "agenttrail.cli._replay",
    "prices": "agenttrail.cli._prices",
    "status": "agenttrail.cli._status",
    "tail": "agenttrail.cli._tail",
    "verify": "agenttrail.cli._verify",
    "kill": "agenttrail.cli._kill",
    "dashboards": "agenttrail.cli._dashboards",
    "retention": "agenttrail.cli._retention",
    "export": "agenttrail.cli._export",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = _COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        command = importlib.import_module(module_name).command
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agenttrail")
def main() -> None:
    """agenttrail: the flight recorder for AI agents in production.

    \b
    Example:
      agenttrail demo                   # the whole product on this machine
      agenttrail up                     # broker + consumer + store, until Ctrl-C
    """
    # kafka-python logs every refused connection and retry; the commands report the
    # outcome that matters (delivered, spooled, unreachable) themselves.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    # clickhouse-connect warns "Unexpected Http Driver Exception" before raising the
    # error the store turns into one clear message; the warning is only noise here.
    logging.getLogger("clickhouse_connect").setLevel(logging.ERROR)


__all__ = ["main"]
