"""Markers by folder: tests/unit/* are ``unit``, tests/integration/* are ``integration``,
tests/reliability/* are ``reliability``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).parent

# A recorder seals a checkpoint every 10 s while events flow, and one at close. Tests that
# count what a recorder delivered expect exactly the final one; on a loaded machine a
# test can run past 10 s and get a periodic one too. So, for every recorder the tests
# start (in this process or in the agents, `demo` and `up` they launch), only the final
# checkpoint, unless a test asks for an interval itself (tests/unit/test_sdk_checkpoints.py,
# tests/integration/test_verify_checkpoints.py do).
os.environ.setdefault("AGENTTRAIL_CHECKPOINT_INTERVAL_S", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(_ROOT).parts
        if parts and parts[0] in ("unit", "integration", "reliability"):
            item.add_marker(getattr(pytest.mark, parts[0]))
