"""The sealer: turns event dicts into framed, hash-chained records, in submission order.

Gives each event its event id, schema version, producer id and gapless producer
sequence, links it to the previous event of its task (``prev_hash``/``hash``) and
encodes it once. The bytes made here are the bytes every (re)send carries: a resent
event is byte-identical — same event_id, seq, producer_seq and hash.

An event that cannot be encoded, or is larger than the payload limit, is never sent:
it is appended whole to ``rejected.jsonl`` beside the spool and logged as an error;
the chain continues as if it never was, so its ``seq`` stays a visible gap.

Not thread-safe: the batch processor calls it under its own lock.
"""

from __future__ import annotations

import json
import logging
from hashlib import sha256
from pathlib import Path
from typing import Any

from agenttrail.events import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    TERMINAL_STATES,
    EncodeError,
    SchemaEntry,
    SchemaRegistry,
    default_registry,
    seal,
    uuid7,
)
from agenttrail.producer._exporter import OutRecord

log = logging.getLogger("agenttrail.producer")


class Sealer:
    """Seals events of one producer.

    Args:
        producer_id: written into every event.
        rejected_path: where unencodable events are kept (``None``: only logged).
        registry: the schemas to write with (the newest version of each family).
        max_payload_bytes: larger encoded events are rejected.
    """

    def __init__(
        self,
        producer_id: str,
        *,
        rejected_path: Path | None,
        registry: SchemaRegistry | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ):
        self.producer_id = producer_id
        self.rejected_path = rejected_path
        self.max_payload_bytes = max_payload_bytes
        registry = registry or default_registry()
        self._writers: dict[str, SchemaEntry] = {
            t: registry.latest(t) for t in registry.event_types
        }
        self._chains: dict[str, str] = {}
        self.producer_seq = 0
        self.rejected = 0

    def seal(self, events: list[dict[str, Any]]) -> list[OutRecord]:
        """Seal ``events`` in order; rejected ones are left out (and kept on disk)."""
        out: list[OutRecord] = []
        chains = self._chains
        for event in events:
            entry = self._writers.get(event["event_type"])
            if entry is None:
                self._reject(event, f"unknown event type {event['event_type']!r}")
                continue
            event["event_id"] = uuid7(event["ts"] // 1000)
            event["schema_version"] = entry.version
            event["producer_id"] = self.producer_id
            event["producer_seq"] = self.producer_seq
            if event.get("args_hash") is None and "args_json" in event:
                event["args_hash"] = sha256(event["args_json"].encode()).hexdigest()
            task_id = event["task_id"]
            try:
                framed = seal(entry, event, chains.get(task_id, ""))
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
            if event["event_type"] == "state_transition" and event["to_state"] in TERMINAL_STATES:
                chains.pop(task_id, None)
            else:
                chains[task_id] = event["hash"]
            out.append(OutRecord(task_id.encode(), framed))
        return out

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
