"""``check_export``: re-check an export from its files alone, without the database.

For every file of the manifest: present, same size, same SHA-256, same row count. Then
every row is read back, its seal recomputed with the sealing code, and every chain
checked with the rules ``verify`` applies in the engine. The files are sorted by
tenant, task, emitter and seq, so the families are merged in one streaming pass and
only one task's events are in memory at a time. Last, the manifest's checkpoints
(:mod:`agenttrail.export._proof`): their chain, their signatures when public keys are
given, and every chain head they name inside the export's selection.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agenttrail.events import TERMINAL_STATES, PublicKeys, SchemaRegistry, default_registry
from agenttrail.export._export import MANIFEST, ExportError, file_sha256
from agenttrail.export._formats import read_rows
from agenttrail.export._proof import check_checkpoints
from agenttrail.verify import (
    Finding,
    FindingKind,
    ProducerReconciliation,
    VerifyReport,
    expected_hash,
)
from agenttrail.verify._chains import ChainRow, check_group, grouped


def load_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an export directory.

    Raises:
        ExportError: no manifest, or not one agenttrail wrote.
    """
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{directory} has no {MANIFEST}; is it an agenttrail export?") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("tool") != "agenttrail":
        raise ExportError(f"{path} is not an agenttrail export manifest.")
    return manifest


def _file_finding(entry: dict[str, Any], detail: str) -> Finding:
    return Finding(
        kind=FindingKind.FILE_CHANGED, tenant="", task_id="", producer_id="",
        detail=f"{entry['file']}: {detail}", event_type=str(entry.get("family")),
    )  # fmt: skip


def _chain_rows(
    directory: Path, fmt: str, entry: dict[str, Any], registry: SchemaRegistry,
    counted: dict[str, int], broken: list[Finding],
) -> Iterator[ChainRow]:  # fmt: skip
    """The file's rows as chain rows; a file that stops being readable ends its stream
    with a finding, and the other files are still checked."""
    family = str(entry["family"])
    name = str(entry["file"])
    counted[name] = 0
    rows = read_rows(fmt, directory / name, dict(entry.get("columns", {})))
    while True:
        try:
            row = next(rows)
            counted[name] += 1
            chain_row = _chain_row(family, row, registry)
        except StopIteration:
            return
        except Exception as exc:  # csv, json and pyarrow each report a damaged file their way
            counted.pop(name, None)
            broken.append(
                _file_finding(
                    entry,
                    f"cannot be read as {fmt} after row {counted.get(name, 0)}: "
                    f"{type(exc).__name__}: {exc}",
                )
            )
            return
        yield chain_row


def _chain_row(family: str, row: dict[str, Any], registry: SchemaRegistry) -> ChainRow:
    return ChainRow(
        family=family,
        tenant=str(row["tenant"]),
        task_id=str(row["task_id"]),
        producer_id=str(row["producer_id"]),
        seq=int(row["seq"]),
        producer_seq=int(row["producer_seq"]),
        event_id=str(row["event_id"]),
        prev_hash=str(row["prev_hash"]),
        hash=str(row["hash"]),
        expected_hash=expected_hash(registry, family, row),
        terminal=family == "state_transition" and row.get("to_state") in TERMINAL_STATES,
    )


def check_export(
    directory: Path,
    registry: SchemaRegistry | None = None,
    public_keys: Iterable[str] | None = None,
) -> VerifyReport:
    """Re-check every file and every chain of the export in ``directory``, and its
    checkpoints: with ``public_keys`` each must carry a valid signature by one of them.

    Blocks for one read of every file. Never writes.

    Raises:
        ExportError: the directory holds no readable manifest.
        ValueError: a public key is not 32 bytes of base64.
    """
    registry = registry or default_registry()
    keys = PublicKeys(public_keys) if public_keys is not None else None
    manifest = load_manifest(directory)
    checkpoints, cp_findings, heads = check_checkpoints(
        manifest.get("checkpoints", []), manifest.get("filters", {}), registry, keys
    )
    fmt = str(manifest["format"])
    report = VerifyReport()
    readable: list[dict[str, Any]] = []
    for entry in manifest.get("files", []):
        path = directory / str(entry["file"])
        if not path.is_file():
            report.findings.append(_file_finding(entry, "missing from the export"))
            continue
        if path.stat().st_size != entry["bytes"]:
            report.findings.append(
                _file_finding(entry, f"{path.stat().st_size} bytes, manifest says {entry['bytes']}")
            )
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            report.findings.append(
                _file_finding(
                    entry, f"SHA-256 {digest[:16]}…, manifest says {str(entry['sha256'])[:16]}…"
                )
            )
        readable.append(entry)
    counted: dict[str, int] = {}
    broken: list[Finding] = []
    streams = [_chain_rows(directory, fmt, e, registry, counted, broken) for e in readable]
    merged = heapq.merge(*streams, key=lambda r: (r.tenant, r.task_id, r.producer_id, r.seq))
    tasks: set[tuple[str, str]] = set()
    per_producer: dict[str, int] = {}
    for group in grouped(merged):
        heads.see(group)
        per_producer[group[0].producer_id] = per_producer.get(group[0].producer_id, 0) + len(group)
        report.events += len(group)
        tasks.add((group[0].tenant, group[0].task_id))
        for r in group:
            report.per_family[r.family] = report.per_family.get(r.family, 0) + 1
        report.findings.extend(check_group(group))
    report.findings.extend(broken)
    report.findings.extend(cp_findings)
    report.findings.extend(heads.findings())
    if keys:
        report.findings.extend(
            Finding(
                kind=FindingKind.UNSIGNED_CHECKPOINT,
                tenant="",
                task_id="",
                producer_id=name,
                detail=f"{count} events exported, but the manifest holds no checkpoint of "
                "this producer: nothing signed vouches for them",
            )
            for name, count in sorted(per_producer.items())
            if name not in checkpoints
        )
    report.producers = [
        ProducerReconciliation(
            producer_id=name,
            produced=cp.produced,
            stored=per_producer.get(name, 0),
            checkpoints=cp.checkpoints,
            signed=cp.signed,
            closed=cp.closed,
        )
        for name, cp in sorted(checkpoints.items())
    ]
    report.tasks = len(tasks)
    for entry in readable:
        got = counted.get(str(entry["file"]))
        if got is not None and got != entry["rows"]:
            report.findings.append(
                _file_finding(entry, f"{got} rows, manifest says {entry['rows']}")
            )
    return report


__all__ = ["check_export", "load_manifest"]
