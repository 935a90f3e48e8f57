"""One stored event in full: every column of its row, nothing cut.

The timeline (:func:`agenttrail.query.replay_task`) summarises each event in one line of
at most 100 characters; this reads the row itself, so a tool span's arguments and result
summary, or a state transition's boundary, can be seen whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agenttrail.query._replay import TaskNotFound, _within, locate_task
from agenttrail.store import FAMILY_TABLES, Store


@dataclass(frozen=True)
class StoredEvent:
    """Every column of one stored event, in table order.

    Attributes:
        family: the event family (``tool_span``, ``llm_call``, …).
        table: the table the row was read from.
        columns: column name → value, exactly as stored (strings are never cut).
    """

    family: str
    table: str
    columns: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: times as ISO 8601, other non-JSON values as text."""
        return {
            "family": self.family,
            "table": self.table,
            "columns": {k: _jsonable(v) for k, v in self.columns.items()},
        }


def event_at_seq(
    store: Store, task_id: str, seq: int, tenant: str | None = None
) -> list[StoredEvent]:
    """The event(s) of ``task_id`` with sequence number ``seq``, every column in full.

    A task's ``seq`` is unique per emitter, so this is one event unless the id exists in
    several tenants. Blocks on one query for the task's location, one for the column
    names and one per family table.

    Raises:
        TaskNotFound: no event of the task has ``seq`` (or the task is unknown).
        StoreUnavailable: the store failed a query.
    """
    locations = locate_task(store, task_id, tenant)
    found: list[StoredEvent] = []
    names = _columns_by_table(store)
    for family, table in FAMILY_TABLES.items():
        cols = names.get(table)
        if not cols:
            continue
        select = ", ".join(f"`{c}`" for c in cols)
        sql = (
            f"SELECT {select} FROM {store.database}.{table} "
            f"WHERE task_id = {{task_id:String}} AND seq = {{seq:UInt64}} AND {_within()}"
        )
        for where in locations:
            for row in store.query(sql, {"task_id": task_id, "seq": seq, **where.params()}):
                found.append(StoredEvent(str(family), table, dict(zip(cols, row, strict=True))))
    if not found:
        scope = f" in tenant {tenant!r}" if tenant is not None else ""
        raise TaskNotFound(
            f"Task {task_id!r}{scope} has no event with seq {seq} in store {store.location}. "
            f"`agenttrail replay {task_id}` lists its events with their seq."
        )
    return found


def _columns_by_table(store: Store) -> dict[str, list[str]]:
    rows = store.query(
        "SELECT table, name FROM system.columns WHERE database = {db:String} "
        "AND table IN {tables:Array(String)} ORDER BY table, position",
        {"db": store.database, "tables": list(FAMILY_TABLES.values())},
    )
    out: dict[str, list[str]] = {}
    for table, name in rows:
        out.setdefault(str(table), []).append(str(name))
    return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
