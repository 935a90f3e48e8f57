"""The ``agenttrail`` command's entry point: says what to install when only the SDK is."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line; exit 2 with one line if the backend extra is not installed."""
    try:
        from agenttrail.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("agenttrail"):
            raise
        sys.stderr.write(
            f"agenttrail: the command line needs the backend ({exc.name} is not installed): "
            "pip install 'agenttrail[backend]', or 'agenttrail[embedded]' for the "
            "one-machine stack.\n"
        )
        raise SystemExit(2) from None
    cli_main()
