"""The test tree itself: nothing in it may break how its scripts are run."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_test_module_shadows_the_standard_library() -> None:
    # `python tests/sdk_alone.py` (CI) puts tests/ first on sys.path: a tests/operator.py
    # once made `import json` fail there, because the stdlib's collections imports operator.
    shadowing = sorted(p.name for p in TESTS.glob("*.py") if p.stem in sys.stdlib_module_names)
    assert shadowing == [], f"rename these (they shadow standard modules): {shadowing}"
