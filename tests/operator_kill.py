"""An operator's ``agenttrail kill`` run beside an agent under test, on its own thread.

(Not named ``operator.py``: ``python tests/sdk_alone.py`` puts ``tests/`` first on
``sys.path``, where that name would shadow the standard library's ``operator``.)

``agenttrail kill --wait`` returns once every task in scope acknowledged, and a task
acknowledges when its code next meets the SDK; so the command runs on a thread while
the test drives the agent to that point.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from click.testing import CliRunner

from agenttrail.cli import main


class OperatorKill:
    """``agenttrail kill ARGS --bootstrap B --wait W --json`` started on a thread."""

    def __init__(self, bootstrap: str, *args: str, wait_s: float = 60.0):
        self.code: int | None = None
        self.answer: dict[str, Any] = {}
        argv = ["kill", *args, "--bootstrap", bootstrap, "--wait", str(wait_s), "--json"]
        self._thread = threading.Thread(target=self._run, args=(argv,), daemon=True)
        self._thread.start()

    def _run(self, argv: list[str]) -> None:
        result = CliRunner().invoke(main, argv)
        self.code = result.exit_code
        lines = result.output.strip().splitlines()
        self.answer = json.loads(lines[-1]) if lines else {}

    def result(self, timeout: float = 120.0) -> tuple[int | None, dict[str, Any]]:
        """Wait for the command to end; its exit code and last JSON line."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "agenttrail kill did not return"
        return self.code, self.answer
