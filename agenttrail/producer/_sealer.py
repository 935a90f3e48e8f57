"""The sealer: turns event dicts into framed, hash-chained records, in submission order.

Gives each event its event id, schema version, producer id and gapless producer
sequence, links it to the previous event of its task (``prev_hash``/``hash``) and
encodes it once. The bytes made here are the bytes every (re)send carries: a resent
event is byte-identical — same event_id, seq, producer_seq and hash.

An event that cannot be encoded, or is larger than the payload limit, is never sent:
it is appended whole to ``rejected.jsonl`` beside the spool and logged as an error;
the chain continues as if it never was, so its ``seq`` stays a visible gap.

It also seals the producer's checkpoints (:meth:`Sealer.checkpoint`): how many events
it sealed so far and the chain head of every task that moved since the previous one,
signed when a key is given. Recording a head costs one tuple per event.

Not thread-safe: the batch processor calls it under its own lock.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from hashlib import sha256
from pathlib import Path
from typing import Any, TypeAlias

from agenttrail.events import (
    CHECKPOINT_TASK_TYPE,
    DEFAULT_MAX_PAYLOAD_BYTES,
    TERMINAL_STATES,
    EncodeError,
    EventType,
    SchemaEntry,
    SchemaRegistry,
    SigningKey,
    checkpoint_statement,
    checkpoint_task_id,
    default_registry,
    encode_body,
    frame,
    new_span_id,
    new_trace_id,
    seal,
    uuid7,
)
from agenttrail.producer._avro_fast import Encoder, NotFast, compile_encoder

log = logging.getLogger("agenttrail.producer")

MAX_HEADS_PER_CHECKPOINT = 2000
"""More moved tasks than this are split over several checkpoints (each well under 1 MB)."""

_Head = tuple[str, str, str, int, str, int, bool]
Sealed: TypeAlias = tuple[bytes, bytes]
"""One sealed event: its Kafka key (the task id) and its framed value. A plain tuple of
bytes: the collector stops tracking it at its first pass, unlike a record object."""
_HASH_PREFIX = b"\x80\x01"  # the Avro length of a 64-character hex digest


class _Writer:
    """One family's newest schema, with its compiled encoder and framing header."""

    __slots__ = ("encode", "entry", "header", "version")

    def __init__(self, entry: SchemaEntry):
        self.entry = entry
        self.version = entry.version
        self.header = frame(entry.schema_id, b"")
        self.encode: Encoder | None = compile_encoder(entry.schema) if entry.hash_is_last else None

    def seal(self, record: dict[str, Any], prev_hash: str) -> bytes:
        """What :func:`agenttrail.events.seal` does, byte for byte, with the compiled
        encoder when the record fits it (fastavro otherwise)."""
        encode = self.encode
        if encode is None:
            return seal(self.entry, record, prev_hash)
        record["prev_hash"] = prev_hash
        record["hash"] = ""
        try:
            canonical = encode(record)
        except (NotFast, KeyError, UnicodeEncodeError):
            canonical = encode_body(self.entry, record)  # writes it, or raises EncodeError
        digest = sha256(canonical).hexdigest()
        record["hash"] = digest
        # The empty hash is the body's last byte (0x00): swap in the digest.
        return b"".join((self.header, canonical[:-1], _HASH_PREFIX, digest.encode("ascii")))


class Sealer:
    """Seals events of one producer.

    Args:
        producer_id: written into every event.
        rejected_path: where unencodable events are kept (``None``: only logged).
        registry: the schemas to write with (the newest version of each family).
        max_payload_bytes: larger encoded events are rejected.
        identity: ``tenant``, ``agent_name`` and ``agent_version`` written into checkpoints.
        checkpoint_interval_s: the period checkpoints are sealed at (recorded in each).
        signing_key: signs every checkpoint when given.
    """

    def __init__(
        self,
        producer_id: str,
        *,
        rejected_path: Path | None,
        registry: SchemaRegistry | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        identity: dict[str, str] | None = None,
        checkpoint_interval_s: float = 0.0,
        signing_key: SigningKey | None = None,
    ):
        self.producer_id = producer_id
        self.rejected_path = rejected_path
        self.max_payload_bytes = max_payload_bytes
        registry = registry or default_registry()
        self._writers: dict[str, _Writer] = {
            t: _Writer(registry.latest(t)) for t in registry.event_types
        }
        self._chains: dict[str, str] = {}
        self.producer_seq = 0
        self.rejected = 0
        self.identity = identity or {
            "tenant": "default",
            "agent_name": "agent",
            "agent_version": "0",
        }
        self.checkpoint_interval_s = checkpoint_interval_s
        self.signing_key = signing_key
        self.checkpoints = 0
        self._checkpoint_task = checkpoint_task_id(producer_id)
        self._moved: dict[str, _Head] = {}  # task → its head since the last checkpoint
        self._sealed_since_checkpoint = 0

    def seal(self, events: Iterable[dict[str, Any] | None]) -> list[Sealed]:
        """Seal ``events`` in order; rejected ones are left out (and kept on disk), and so
        is None (an event that could not be built).

        ``events`` may be a generator: each event is built, sealed and dropped in turn, so
        that a batch's event dicts are never alive all at once.
        """
        out: list[Sealed] = []
        chains = self._chains
        moved = self._moved
        for event in events:
            if event is None:
                continue
            writer = self._writers.get(event["event_type"])
            if writer is None:
                self._reject(event, f"unknown event type {event['event_type']!r}")
                continue
            event["event_id"] = uuid7(event["ts"] // 1000)
            event["schema_version"] = writer.version
            event["producer_id"] = self.producer_id
            event["producer_seq"] = self.producer_seq
            if event.get("args_hash") is None and "args_json" in event:
                event["args_hash"] = sha256(event["args_json"].encode()).hexdigest()
            task_id = event["task_id"]
            try:
                framed = writer.seal(event, chains.get(task_id, ""))
            except EncodeError as exc:
                self._reject(event, str(exc))
                continue
            if len(framed) > self.max_payload_bytes:
                # Consumers would dead-letter it and the broker may refuse it outright.
                self._reject(
                    event,
                    f"{len(framed)} bytes encoded, over the {self.max_payload_bytes}-byte "
                    "event limit; shorten what the event carries (e.g. the result summary)",
                )
                continue
            self.producer_seq += 1
            closed = (
                event["event_type"] == "state_transition" and event["to_state"] in TERMINAL_STATES
            )
            if closed:
                chains.pop(task_id, None)
            else:
                chains[task_id] = event["hash"]
            moved[task_id] = (
                event["tenant"], event["task_type"], task_id, event["seq"], event["hash"],
                event["ts"], closed,
            )  # fmt: skip
            out.append((task_id.encode(), framed))
        self._sealed_since_checkpoint += len(out)
        return out

    @property
    def checkpoint_pending(self) -> bool:
        """True when events were sealed since the last checkpoint."""
        return self._sealed_since_checkpoint > 0

    def checkpoint(self, *, final: bool = False) -> list[Sealed]:
        """Seal checkpoints covering everything sealed so far (one per 2,000 moved tasks).

        Each takes the next ``producer_seq`` and the next checkpoint number, links to the
        previous checkpoint (``prev_hash``) and is signed when a key is configured. A
        checkpoint that cannot be encoded is rejected like any event (kept on disk).
        """
        if EventType.CHECKPOINT not in self._writers:
            return []  # a registry without the checkpoint family (an older schemas/ dir)
        heads = list(self._moved.values())
        self._moved = {}
        self._sealed_since_checkpoint = 0
        chunks = [
            heads[i : i + MAX_HEADS_PER_CHECKPOINT]
            for i in range(0, len(heads), MAX_HEADS_PER_CHECKPOINT)
        ] or [[]]
        out: list[Sealed] = []
        for n, chunk in enumerate(chunks):
            record = self._checkpoint_record(chunk, final=final and n == len(chunks) - 1)
            if record is not None:
                out.append(record)
        return out

    def _checkpoint_record(self, heads: list[_Head], *, final: bool) -> Sealed | None:
        writer = self._writers[EventType.CHECKPOINT]
        entry = writer.entry
        ts = time.time_ns() // 1000
        task_id = self._checkpoint_task
        event: dict[str, Any] = {
            "event_id": uuid7(ts // 1000),
            "event_type": EventType.CHECKPOINT.value,
            "schema_version": entry.version,
            **self.identity,
            "task_id": task_id,
            "task_type": CHECKPOINT_TASK_TYPE,
            "trace_id": new_trace_id(),
            "span_id": new_span_id(),
            "parent_span_id": None,
            "step": 0,
            "seq": self.checkpoints,
            "ts": ts,
            "producer_id": self.producer_id,
            "producer_seq": self.producer_seq,
            "final": final,
            "interval_s": float(self.checkpoint_interval_s),
            "head_tenants": [h[0] for h in heads],
            "head_task_types": [h[1] for h in heads],
            "head_task_ids": [h[2] for h in heads],
            "head_seqs": [h[3] for h in heads],
            "head_hashes": [h[4] for h in heads],
            "head_ts": [h[5] for h in heads],
            "head_closed": [h[6] for h in heads],
            "key_id": None,
            "signature": None,
            "prev_hash": self._chains.get(task_id, ""),
        }
        if self.signing_key is not None:
            event["key_id"] = self.signing_key.public_key
            event["signature"] = self.signing_key.sign(checkpoint_statement(event))
        try:
            framed = writer.seal(event, event["prev_hash"])
        except EncodeError as exc:
            self._reject(event, str(exc))
            return None
        self.producer_seq += 1
        self.checkpoints += 1
        self._chains[task_id] = event["hash"]
        return task_id.encode(), framed

    def _reject(self, event: dict[str, Any], reason: str) -> None:
        self.rejected += 1
        log.error(
            "agenttrail could not encode a %s event of task %s (%s); it is kept in %s, "
            "not sent. This is a bug in the caller's values or in agenttrail.",
            event.get("event_type"),
            event.get("task_id"),
            reason,
            self.rejected_path,
        )
        path = self.rejected_path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps({"reason": reason, "event": event}, default=repr) + "\n")
        except OSError as exc:
            log.error("cannot write rejected event to %s: %s", path, exc)
