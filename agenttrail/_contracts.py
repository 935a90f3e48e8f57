"""Where the language-neutral contracts (``schemas/``, ``queries/``) live at run time.

In a source checkout they sit at the repository root; in an installed wheel they are
packaged under ``agenttrail/_contracts/``. ``AGENTTRAIL_CONTRACTS_DIR`` overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def contracts_root() -> Path:
    """Return the directory that holds ``schemas/`` and ``queries/``.

    Raises:
        FileNotFoundError: when neither the packaged copy nor a source checkout is found.
    """
    override = os.environ.get("AGENTTRAIL_CONTRACTS_DIR")
    candidates = [Path(override)] if override else []
    candidates += [_PACKAGE_DIR / "_contracts", _PACKAGE_DIR.parent]
    for root in candidates:
        if (root / "schemas" / "registry.json").is_file():
            return root
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"agenttrail's contract files (schemas/registry.json) were not found; tried {tried}. "
        "Reinstall the package, or set AGENTTRAIL_CONTRACTS_DIR to a checkout of the repository."
    )


def schemas_dir() -> Path:
    """Directory of the Avro contracts and their id registry."""
    return contracts_root() / "schemas"


def queries_dir() -> Path:
    """Directory of the SQL: migrations, views and named queries."""
    return contracts_root() / "queries"


def dashboards_dir() -> Path:
    """Directory of the Grafana dashboards (``*.json``) and their provisioning files."""
    return contracts_root() / "dashboards"
