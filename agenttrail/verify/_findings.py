"""What ``verify`` reports: findings (each naming the task, the event and what is wrong)
and, per producer, the reconciliation of what was produced against what was stored."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class FindingKind(StrEnum):
    """Every kind of problem ``verify`` and ``export verify`` can name."""

    MODIFIED = "modified"
    """The event's stored fields no longer hash to its ``hash``: altered or forged."""
    BROKEN_LINK = "broken_link"
    """``prev_hash`` is not the hash of the previous event of its task and emitter."""
    SEQ_GAP = "seq_gap"
    """``seq`` values of a task are missing."""
    DUPLICATE = "duplicate"
    """The same event is stored more than once."""
    CONFLICTING_SEQ = "conflicting_seq"
    """Two different events claim the same ``seq`` of a task."""
    REORDERED = "reordered"
    """``seq`` order differs from the emitter's order (``producer_seq``)."""
    MISSING_EVENTS = "missing_events"
    """A checkpoint says events were produced that are neither stored nor dead-lettered."""
    TAIL_DELETED = "tail_deleted"
    """A checkpoint names a chain head of a task that the store no longer holds."""
    TASK_DELETED = "task_deleted"
    """A checkpoint names a task of which no event is stored."""
    BAD_SIGNATURE = "bad_signature"
    """A checkpoint's signature does not verify with the configured public key."""
    UNSIGNED_CHECKPOINT = "unsigned_checkpoint"
    """A public key was given but a checkpoint carries no signature by it."""
    STREAM_OPEN = "stream_open"
    """(``--require-closed``) A producer's newest checkpoint is not its final one: what
    it sealed after that checkpoint, or after its last stored event, is vouched for by
    nothing — it crashed, is still running, or its stream's end was deleted."""
    FILE_CHANGED = "file_changed"
    """An exported file's SHA-256 or row count differs from the manifest."""


@dataclass(frozen=True)
class Finding:
    """One problem, located.

    Attributes:
        kind: what is wrong.
        tenant: the task's tenant.
        task_id: the task (for checkpoint findings, the task the checkpoint names).
        producer_id: the emitter.
        detail: a sentence saying what is wrong and what was expected.
        event_id: the event concerned, when there is one.
        event_type: its family.
        seq: its ``seq`` (or the first missing one).
    """

    kind: FindingKind
    tenant: str
    task_id: str
    producer_id: str
    detail: str
    event_id: str | None = None
    event_type: str | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        out = asdict(self)
        out["kind"] = str(self.kind)
        return out

    def line(self) -> str:
        """One human line: task, event, what is wrong."""
        where = f"task {self.task_id!r} (tenant {self.tenant}, producer {self.producer_id})"
        event = ""
        if self.event_id is not None:
            event = f" event {self.event_id} ({self.event_type} seq {self.seq})"
        elif self.seq is not None:
            event = f" seq {self.seq}"
        return f"{self.kind}: {where}{event}: {self.detail}"


@dataclass
class ProducerReconciliation:
    """Produced against stored, for one emitter, from its newest checkpoint.

    Attributes:
        producer_id: the emitter.
        produced: events its newest checkpoint says it sealed (``producer_seq`` 0…n-1).
        stored: of those, how many are in the store (or the export).
        dead_lettered: of those, how many are in ``dead_letters``.
        missing: ``[first, last]`` ``producer_seq`` ranges neither stored nor dead-lettered.
        checkpoints: checkpoints seen; ``signed``: how many carry a valid signature
            (counted only when a public key is given).
        closed: its newest checkpoint is the final one a producer seals at close; while
            False, events it sealed after its newest checkpoint are vouched for by nothing.
    """

    producer_id: str
    produced: int
    stored: int = 0
    dead_lettered: int = 0
    missing: list[list[int]] = field(default_factory=list)
    checkpoints: int = 0
    signed: int = 0
    closed: bool = False

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class VerifyReport:
    """The outcome of one verification.

    Attributes:
        events: events checked; ``tasks``: distinct tasks checked.
        per_family: events checked per family.
        findings: every problem found (capped at ``max_findings``; see ``truncated``).
        producers: the per-producer reconciliation (emitters that sent checkpoints).
        truncated: more findings existed than were kept.
    """

    events: int = 0
    tasks: int = 0
    per_family: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    producers: list[ProducerReconciliation] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.findings

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "ok": self.ok,
            "events": self.events,
            "tasks": self.tasks,
            "per_family": dict(self.per_family),
            "findings": [f.to_dict() for f in self.findings],
            "producers": [p.to_dict() for p in self.producers],
            "truncated": self.truncated,
        }


__all__ = ["Finding", "FindingKind", "ProducerReconciliation", "VerifyReport"]
