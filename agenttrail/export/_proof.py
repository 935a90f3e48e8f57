"""The checkpoint half of ``export verify``: from the manifest's checkpoints alone.

The manifest carries every checkpoint of the exported producers. They are checked as
one more chain per producer (hash, links, numbering), their signatures with the public
keys given, and every chain head they name *inside the export's selection* must be in
the exported rows with the hash the checkpoint saw: a task whose tail, or whole self,
was removed from the files (and the manifest's row counts adjusted) is named.

A head is inside the selection when its tenant, task type and task match the export's
filters and, with a time window, when the head event itself lies in the window (then
its task had an event there, so the export must hold it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agenttrail.events import ChainHead, PublicKeys, SchemaRegistry, heads_of, to_micros
from agenttrail.verify import Finding, expected_hash
from agenttrail.verify._chains import ChainRow, check_group, grouped
from agenttrail.verify._heads import ProducerCheckpoints, fold_checkpoints, head_finding


def _micros(value: str | None) -> int | None:
    return None if value is None else to_micros(datetime.fromisoformat(value))


def _in_selection(head: ChainHead, filters: Mapping[str, Any]) -> bool:
    since, until = _micros(filters.get("since")), _micros(filters.get("until"))
    return (
        filters.get("tenant") in (None, head.tenant)
        and filters.get("task_type") in (None, head.task_type)
        and filters.get("task_id") in (None, head.task_id)
        and (since is None or head.ts >= since)
        and (until is None or head.ts < until)
    )


@dataclass
class HeadLedger:
    """What the exported rows hold of the tasks the in-selection heads name."""

    wanted: dict[tuple[str, str], list[tuple[str, int, ChainHead]]] = field(default_factory=dict)
    events: dict[tuple[str, str], int] = field(default_factory=dict)
    max_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    hashes: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def see(self, group: list[ChainRow]) -> None:
        """Note one exported task/emitter group (called for every group, in any order)."""
        key = (group[0].tenant, group[0].task_id)
        heads = self.wanted.get(key)
        if heads is None:
            return
        seqs = {h.seq for _, _, h in heads}
        self.events[key] = self.events.get(key, 0) + len(group)
        self.max_seq[key] = max(self.max_seq.get(key, -1), max(r.seq for r in group))
        for r in group:
            if r.seq in seqs:
                self.hashes.setdefault((*key, r.seq), r.hash)

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for key, heads in self.wanted.items():
            for producer, checkpoint, head in heads:
                finding = head_finding(
                    producer, checkpoint, head, self.hashes.get((*key, head.seq), ""),
                    self.events.get(key, 0), self.max_seq.get(key, -1),
                )  # fmt: skip
                if finding is not None:
                    out.append(finding)
        return out


def _checkpoint_row(row: Mapping[str, Any], registry: SchemaRegistry) -> ChainRow:
    return ChainRow(
        family="checkpoint", tenant=str(row["tenant"]), task_id=str(row["task_id"]),
        producer_id=str(row["producer_id"]), seq=int(row["seq"]),
        producer_seq=int(row["producer_seq"]), event_id=str(row["event_id"]),
        prev_hash=str(row["prev_hash"]), hash=str(row["hash"]),
        expected_hash=expected_hash(registry, "checkpoint", row), terminal=False,
    )  # fmt: skip


def check_checkpoints(
    checkpoints: Iterable[Mapping[str, Any]],
    filters: Mapping[str, Any],
    registry: SchemaRegistry,
    keys: PublicKeys | None,
) -> tuple[dict[str, ProducerCheckpoints], list[Finding], HeadLedger]:
    """Chain and signature findings of the manifest's checkpoints, and the ledger of
    heads to look for in the exported rows."""
    rows = [dict(r) for r in checkpoints]
    for r in rows:
        r["ts_micros"] = _micros(str(r["ts"]))
    producers, findings = fold_checkpoints([{**r, "ts": r["ts_micros"]} for r in rows], keys)
    chain_rows = sorted(
        (_checkpoint_row(r, registry) for r in rows),
        key=lambda c: (c.tenant, c.task_id, c.producer_id, c.seq),
    )
    for group in grouped(chain_rows):
        findings.extend(check_group(group))
    ledger = HeadLedger()
    for r in rows:
        for head in heads_of(r):
            if _in_selection(head, filters):
                ledger.wanted.setdefault((head.tenant, head.task_id), []).append(
                    (str(r["producer_id"]), int(r["seq"]), head)
                )
    return producers, findings, ledger


__all__ = ["HeadLedger", "check_checkpoints"]
