"""Test doubles for agents' own tests: record into memory, read back decoded events.

Example:
    >>> from agenttrail.producer import Recorder
    >>> from agenttrail.producer.testing import InMemoryExporter
    >>> exporter = InMemoryExporter()
    >>> rec = Recorder(exporter=exporter, agent="invoicer")
    >>> with rec.task("invoice_generation") as task:
    ...     with task.tool("get_order", args={"order_id": "1"}) as span:
    ...         span.result({"ok": True})
    >>> rec.flush()
    True
    >>> [e["event_type"] for e in exporter.events()]
    ['state_transition', 'tool_span', 'state_transition']
"""

from __future__ import annotations

import threading
from typing import Any

from agenttrail.events import EventCodec
from agenttrail.producer._exporter import AckCallback, ExporterUnavailable, OutRecord

__all__ = ["InMemoryExporter"]


class InMemoryExporter:
    """Keeps exported records in memory, in order. Thread-safe.

    Set :attr:`available` to False to simulate a broker outage: exports then raise
    :class:`ExporterUnavailable` and the recorder spools, exactly as with Kafka.
    """

    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.available = True
        self.resets = 0
        self._lock = threading.Lock()
        self._codec = EventCodec()

    destination = "memory"

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        if not self.available:
            raise ExporterUnavailable("in-memory exporter is set unavailable")
        with self._lock:
            self.records.extend(records)
        for r in records:
            on_done(r, None)

    def probe(self, timeout: float) -> bool:
        return self.available

    def flush(self, timeout: float) -> bool:
        return True

    def reset(self) -> None:
        self.resets += 1

    def shutdown(self) -> None:
        return None

    def events(self, *, checkpoints: bool = False) -> list[dict[str, Any]]:
        """Every exported event, decoded, in export order.

        The recorder's own checkpoints (``event_type`` ``checkpoint``) are left out
        unless ``checkpoints`` is true; :meth:`checkpoints` gives only them.
        """
        with self._lock:
            records = list(self.records)
        decoded = [self._codec.decode(r.value) for r in records]
        if checkpoints:
            return decoded
        return [e for e in decoded if e["event_type"] != "checkpoint"]

    def checkpoints(self) -> list[dict[str, Any]]:
        """The recorder's checkpoints, decoded, in export order."""
        return [e for e in self.events(checkpoints=True) if e["event_type"] == "checkpoint"]

    def events_of(self, task_id: str) -> list[dict[str, Any]]:
        """The events of one task, in export order."""
        return [e for e in self.events() if e["task_id"] == task_id]

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
