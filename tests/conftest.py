"""Markers by folder: tests/unit/* are ``unit``, tests/integration/* are ``integration``,
tests/reliability/* are ``reliability``."""

from __future__ import annotations

from pathlib import Path

import pytest

_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(_ROOT).parts
        if parts and parts[0] in ("unit", "integration", "reliability"):
            item.add_marker(getattr(pytest.mark, parts[0]))
