"""``export_store``: stream the selected tasks' events to files plus ``manifest.json``.

One file per family table (``<table>.<format>``), rows sorted by tenant, task, emitter
and seq; memory is bounded by one engine block per file being written. The manifest
records the filters, row counts, SHA-256 and size of every file, the schema versions
present, every column's type, the verification of the same tasks in the store at
export time, the export time and the tool version — everything ``export verify``
needs to re-check the export without the database. The producers' checkpoints are not a
file but part of the manifest (``checkpoints``): every checkpoint of every producer
whose events are exported, so the export's verifier can check their signatures and
that every chain head they name inside the export's selection is in it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agenttrail import __version__
from agenttrail.events import EventType
from agenttrail.export._formats import FORMATS, open_writer
from agenttrail.store import FAMILY_TABLES, Store
from agenttrail.verify import verify_store
from agenttrail.verify._engine import filters

_CHECKPOINTS = FAMILY_TABLES[EventType.CHECKPOINT]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
ORDER = "tenant, task_id, producer_id, seq, producer_seq"
"""Row order of every exported file (``export verify`` merges the files on it)."""


class ExportError(Exception):
    """The export cannot be written (bad directory, unknown format)."""


@dataclass(frozen=True)
class ExportFilters:
    """Which tasks an export holds (whole tasks; None = no restriction)."""

    tenant: str | None = None
    task_type: str | None = None
    task_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "tenant": self.tenant,
            "task_type": self.task_type,
            "task_id": self.task_id,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _columns(store: Store, table: str) -> list[tuple[str, str]]:
    rows = store.query(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} "
        "ORDER BY position",
        {"d": store.database, "t": table},
    )
    return [(str(n), str(t)) for n, t in rows]


def export_store(
    store: Store,
    out: Path,
    *,
    fmt: str = "jsonl",
    selection: ExportFilters | None = None,
    on_rows: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the selected tasks' events to ``out`` and return the manifest (also written).

    Blocks until every file is written and hashed. ``on_total`` is called once with the
    number of rows to write, ``on_rows`` after each block with its row count.

    Raises:
        ExportError: ``out`` holds a previous export, or ``fmt`` is unknown.
        StoreUnavailable: the store failed a query.
    """
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    selection = selection or ExportFilters()
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists():
        raise ExportError(
            f"{out} already holds an export ({MANIFEST}); choose an empty directory so "
            "that no file of an earlier export is mistaken for part of this one."
        )
    where, params = filters(
        selection.tenant, selection.task_id, selection.since, selection.until, selection.task_type
    )
    tables = {
        family: table
        for family, table in FAMILY_TABLES.items()
        if table != _CHECKPOINTS and _columns(store, table)
    }
    counts = {
        table: int(store.query(f"SELECT count() FROM {table}{where}", params)[0][0])
        for table in tables.values()
    }
    if on_total is not None:
        on_total(sum(counts.values()))
    files: list[dict[str, Any]] = []
    for family, table in tables.items():
        columns = _columns(store, table)
        names = [n for n, _ in columns]
        types = [t for _, t in columns]
        path = out / f"{table}.{fmt}"
        versions = sorted(
            int(v)
            for (v,) in store.query(f"SELECT DISTINCT schema_version FROM {table}{where}", params)
        )
        writer = open_writer(fmt, path, names, types)
        try:
            select = ", ".join(f"`{n}`" for n in names)
            sql = f"SELECT {select} FROM {table}{where} ORDER BY {ORDER}"
            for _, block in store.stream_columns(sql, params):
                writer.write(block)
                if on_rows is not None:
                    on_rows(len(block[0]) if block else 0)
        finally:
            writer.close()
        files.append(
            {
                "family": str(family),
                "table": table,
                "file": path.name,
                "rows": writer.rows,
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
                "schema_versions": versions,
                "columns": dict(columns),
            }
        )
    report = verify_store(
        store, tenant=selection.tenant, task_id=selection.task_id, since=selection.since
    )
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "tool": "agenttrail",
        "tool_version": __version__,
        "exported_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "store": store.location,
        "database": store.database,
        "format": fmt,
        "order": ORDER,
        "filters": selection.to_dict(),
        "files": files,
        "rows": sum(f["rows"] for f in files),
        "verification": report.to_dict(),
        "checkpoints": _checkpoints(store, tables.values(), where, params),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)  # UUID


def _checkpoints(
    store: Store, tables: Iterable[str], where: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every checkpoint (all schema columns) of the producers of the exported events."""
    columns = [n for n, _ in _columns(store, _CHECKPOINTS)]
    if not columns:
        return []
    names = [n for n in columns if n not in ("kafka_partition", "kafka_offset", "ingested_at")]
    producers = " UNION DISTINCT ".join(
        f"SELECT DISTINCT producer_id FROM {t}{where}" for t in tables
    )
    sql = (
        f"SELECT {', '.join(f'`{n}`' for n in names)} FROM {_CHECKPOINTS} "
        f"WHERE producer_id IN ({producers}) ORDER BY producer_id, seq, producer_seq"
    )
    return [
        {n: _json_value(v) for n, v in zip(names, row, strict=True)}
        for row in store.query(sql, params)
    ]


__all__ = ["MANIFEST", "ExportError", "ExportFilters", "export_store", "file_sha256"]
