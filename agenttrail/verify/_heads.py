"""Checkpoint rules shared by ``verify`` (store) and ``export verify`` (files).

A checkpoint vouches for two things: how far its producer got (``producer_seq``), and
the chain head of every task that moved since the previous checkpoint. The store (or
the export) must still hold each named head, unchanged; a public key, when given,
must have signed every checkpoint. What breaks a rule becomes a finding here, in words
that say what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agenttrail.events import ChainHead, PublicKeys, checkpoint_statement
from agenttrail.verify._findings import Finding, FindingKind


@dataclass
class ProducerCheckpoints:
    """What one producer's checkpoints say, folded in checkpoint order."""

    producer_id: str
    checkpoints: int = 0
    signed: int = 0
    produced: int = 0
    """``producer_seq`` of the newest checkpoint plus one (the checkpoint included)."""
    closed: bool = False
    """The newest checkpoint is the final one a producer seals at close."""
    newest: int = -1
    """Number (``seq``) of the newest checkpoint."""
    key_ids: set[str] = field(default_factory=set)


def head_finding(
    producer_id: str,
    checkpoint: int,
    head: ChainHead,
    stored_hash: str,
    task_events: int,
    task_max_seq: int,
) -> Finding | None:
    """The finding for one named head, given what the store holds of its task.

    Args:
        stored_hash: hash of the stored event at the head's seq (``''`` when none).
        task_events: events of the task stored (0: the whole task is gone).
        task_max_seq: the task's highest stored seq (when ``task_events``).
    """
    if stored_hash == head.hash:
        return None

    def found(kind: FindingKind, detail: str, seq: int) -> Finding:
        return Finding(
            kind=kind, tenant=head.tenant, task_id=head.task_id, producer_id=producer_id,
            detail=detail, seq=seq,
        )  # fmt: skip

    said = (
        f"checkpoint {checkpoint} of producer {producer_id} names seq {head.seq} "
        f"(hash {head.hash[:16]}…) as this task's head"
    )
    if task_events == 0:
        return found(
            FindingKind.TASK_DELETED,
            f"{said}, but no event of the task is stored: seq 0…{head.seq} "
            f"({head.seq + 1} events of task type {head.task_type}) missing",
            0,
        )
    if not stored_hash and task_max_seq < head.seq:
        first = task_max_seq + 1
        span = f"seq {first}" if first == head.seq else f"seq {first}…{head.seq}"
        return found(
            FindingKind.TAIL_DELETED,
            f"{said}, but the stored task ends at seq {task_max_seq}: {span} "
            f"({head.seq - task_max_seq} events) missing",
            first,
        )
    if not stored_hash:
        return found(
            FindingKind.MISSING_EVENTS, f"{said}, but no event with that seq is stored", head.seq
        )
    return found(
        FindingKind.MODIFIED,
        f"{said}, but the stored event at that seq hashes to {stored_hash[:16]}…: the task "
        "was rewritten after the checkpoint",
        head.seq,
    )


def fold_checkpoints(
    rows: Sequence[Mapping[str, Any]], keys: PublicKeys | None
) -> tuple[dict[str, ProducerCheckpoints], list[Finding]]:
    """Count each producer's checkpoints and, with ``keys``, check every signature.

    ``rows`` are checkpoint records or table rows (the statement fields, see
    :func:`agenttrail.events.checkpoint_statement`), in any order.
    """
    producers: dict[str, ProducerCheckpoints] = {}
    findings: list[Finding] = []
    for row in sorted(rows, key=lambda r: (str(r["producer_id"]), int(r["seq"]))):
        name = str(row["producer_id"])
        p = producers.setdefault(name, ProducerCheckpoints(name))
        p.checkpoints += 1
        if int(row["seq"]) >= p.newest:
            p.newest = int(row["seq"])
            p.produced = max(p.produced, int(row["producer_seq"]) + 1)
            p.closed = bool(row["final"])
        if row.get("key_id"):
            p.key_ids.add(str(row["key_id"]))
        if keys is None:
            continue
        where = f"checkpoint {int(row['seq'])} (producer_seq {int(row['producer_seq'])})"
        if not row.get("signature"):
            findings.append(_checkpoint_finding(
                FindingKind.UNSIGNED_CHECKPOINT, row,
                f"{where} carries no signature; the public key given vouches only for signed "
                "checkpoints",
            ))  # fmt: skip
            continue
        try:
            statement = checkpoint_statement(row)
        except (KeyError, TypeError, ValueError) as exc:
            statement, reason = b"", f" ({exc})"
        else:
            reason = ""
        if statement and keys.verifies(statement, str(row["signature"])):
            p.signed += 1
            continue
        findings.append(_checkpoint_finding(
            FindingKind.BAD_SIGNATURE, row,
            f"{where}: its signature does not verify with the public key given{reason}; it was "
            "forged or altered without the signing key (by key id "
            f"{str(row.get('key_id'))[:12]}…)",
        ))  # fmt: skip
    return producers, findings


def _checkpoint_finding(kind: FindingKind, row: Mapping[str, Any], detail: str) -> Finding:
    return Finding(
        kind=kind, tenant=str(row["tenant"]), task_id=str(row["task_id"]),
        producer_id=str(row["producer_id"]), detail=detail, event_id=str(row["event_id"]),
        event_type="checkpoint", seq=int(row["seq"]),
    )  # fmt: skip


__all__ = ["ProducerCheckpoints", "fold_checkpoints", "head_finding"]
