"""``agenttrail consume`` with a fault at a chosen point of the write path.

Run as ``python -m tests.reliability.faulty_consumer consume …`` with
``RELIABILITY_FAULT=<point>:<n>`` in the environment. The fault hooks wrap the store
client's two insert methods (``Store.insert_columns`` / ``Store.insert_from_file``), the one
place every consumer write goes through, so they do not depend on how the consumer's
steps are arranged:

- ``after_range:<n>``   SIGKILL right after the n-th ledger row 'before' is stored
  (the batch range is recorded, nothing of the batch is in the tables);
- ``mid_insert:<n>``    SIGKILL right after the n-th family-table insert returned
  (for a batch spanning several families: some tables hold it, others not);
- ``before_commit:<n>`` SIGKILL right after the n-th ledger row 'after' is stored
  (the batch is stored, its offsets are not committed);
- ``unavailable:<n>``   the n-th family-table insert and the four after it raise
  ``StoreUnavailable`` without storing anything (a store outage; no kill).

A killed process exits by the signal, as a crash would; the harness restarts it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from agenttrail.store import FAMILY_TABLES, Store, StoreUnavailable
from agenttrail.store._tables import LEDGER_TABLE

_FAMILY = frozenset(FAMILY_TABLES.values())
OUTAGE_CALLS = 5


def install(spec: str) -> None:
    """Patch :class:`Store` so the fault ``spec`` (``point:n``) happens."""
    point, _, n_text = spec.partition(":")
    n = int(n_text or "1")
    if point not in ("after_range", "mid_insert", "before_commit", "unavailable"):
        raise SystemExit(f"RELIABILITY_FAULT: unknown point {point!r}")
    seen = {"before": 0, "after": 0, "family": 0}

    def after(table: str, column_names: Any, columns: Any) -> None:
        if table == LEDGER_TABLE and "state" in column_names:
            states = columns[list(column_names).index("state")]
            for state in ("before", "after"):
                if state in states:
                    seen[state] += 1
                    armed = {"before": "after_range", "after": "before_commit"}[state]
                    if point == armed and seen[state] == n:
                        os.kill(os.getpid(), signal.SIGKILL)
        elif table in _FAMILY:
            seen["family"] += 1
            if point == "mid_insert" and seen["family"] == n:
                os.kill(os.getpid(), signal.SIGKILL)

    def outage(store: Store, table: str) -> None:
        if point == "unavailable" and table in _FAMILY:
            k = seen["family"] + 1
            if n <= k < n + OUTAGE_CALLS:
                seen["family"] = k  # counted as an attempt, nothing stored
                raise StoreUnavailable(
                    f"injected outage (insert attempt {k}) into {table}", store.location
                )

    real_columns = Store.insert_columns
    real_from_file = Store.insert_from_file

    def insert_columns(self: Store, table: str, column_names: Any, columns: Any,
                       **kw: Any) -> None:  # fmt: skip
        outage(self, table)
        real_columns(self, table, column_names, columns, **kw)
        after(table, column_names, columns)

    def insert_from_file(self: Store, table: str, sql: str, data: bytes, **kw: Any) -> None:
        outage(self, table)
        real_from_file(self, table, sql, data, **kw)
        after(table, (), [])

    Store.insert_columns = insert_columns  # type: ignore[method-assign]
    Store.insert_from_file = insert_from_file  # type: ignore[method-assign]


def main() -> None:
    spec = os.environ.get("RELIABILITY_FAULT", "")
    if spec:
        install(spec)
    from agenttrail.cli import main as cli_main

    sys.argv = ["agenttrail", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
