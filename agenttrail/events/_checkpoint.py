"""What a checkpoint commits to, as bytes to sign: one definition for SDK, verify, exports.

A checkpoint (``schemas/checkpoint/v1.avsc``) says how far its producer got: every event
with a lower ``producer_seq`` was sealed before it, and for each task that moved since
the previous checkpoint, its newest event (the chain head: seq, hash, ts). Its
signature covers :func:`checkpoint_statement`: a protocol line, then the canonical JSON
(sorted keys, no spaces) of the fields below — the checkpoint's identity and place,
the hash of the producer's previous checkpoint (so signed checkpoints form a chain a
verifier can walk), and the heads. Anyone with the public key can check it from these
fields alone, in any language.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agenttrail.events._models import to_micros

CHECKPOINT_PROTOCOL = b"agenttrail.checkpoint.v1\n"
"""The first line of every signed checkpoint statement."""

CHECKPOINT_TASK_PREFIX = "checkpoint:"
"""A producer's checkpoints are the task ``checkpoint:<producer_id>`` (one chain)."""

CHECKPOINT_TASK_TYPE = "checkpoint"
"""The task type every checkpoint carries."""

HEAD_FIELDS: tuple[str, ...] = (
    "head_tenants",
    "head_task_ids",
    "head_task_types",
    "head_seqs",
    "head_hashes",
    "head_ts",
    "head_closed",
)
"""The parallel per-task arrays of a checkpoint, in :class:`ChainHead` order."""


@dataclass(frozen=True)
class ChainHead:
    """The newest event of one task sealed before a checkpoint."""

    tenant: str
    task_id: str
    task_type: str
    seq: int
    hash: str
    ts: int
    closed: bool


def heads_of(record: Mapping[str, Any]) -> list[ChainHead]:
    """The chain heads a checkpoint record (or stored row) names.

    Raises:
        ValueError: the ``head_*`` arrays differ in length.
    """
    columns: list[Sequence[Any]] = [record.get(name) or [] for name in HEAD_FIELDS]
    if len({len(c) for c in columns}) > 1:
        raise ValueError("the head_* arrays of a checkpoint differ in length")
    return [
        ChainHead(str(t), str(i), str(ty), int(s), str(h), int(ts), bool(c))
        for t, i, ty, s, h, ts, c in zip(*columns, strict=True)
    ]


def checkpoint_task_id(producer_id: str) -> str:
    """The task id of ``producer_id``'s checkpoints."""
    return CHECKPOINT_TASK_PREFIX + producer_id


def _micros(value: Any) -> int:
    return to_micros(value) if isinstance(value, datetime) else int(value)


def checkpoint_statement(record: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers (see the module docstring).

    ``record`` is a checkpoint as sealed by the SDK, decoded, or read back from a table
    (``ts`` as microseconds or a datetime).

    Raises:
        KeyError: a field the statement covers is missing.
    """
    statement = {
        "event_id": str(record["event_id"]),
        "tenant": record["tenant"],
        "agent_name": record["agent_name"],
        "agent_version": record["agent_version"],
        "producer_id": record["producer_id"],
        "producer_seq": int(record["producer_seq"]),
        "checkpoint": int(record["seq"]),
        "ts": _micros(record["ts"]),
        "final": bool(record["final"]),
        "interval_s": float(record["interval_s"]),
        "prev_hash": record["prev_hash"],
        "key_id": record.get("key_id"),
        "heads": [
            [h.tenant, h.task_id, h.task_type, h.seq, h.hash, h.ts, h.closed]
            for h in heads_of(record)
        ],
    }
    return (
        CHECKPOINT_PROTOCOL
        + json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


__all__ = [
    "CHECKPOINT_PROTOCOL",
    "CHECKPOINT_TASK_PREFIX",
    "CHECKPOINT_TASK_TYPE",
    "HEAD_FIELDS",
    "ChainHead",
    "checkpoint_statement",
    "checkpoint_task_id",
    "heads_of",
]
