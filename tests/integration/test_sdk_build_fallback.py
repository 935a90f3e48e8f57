"""A span whose event failed to build leaves no hole that ``verify`` reports.

The events are recorded by a real Recorder whose scrubber carries a detector with a bug
(it raises on the error text the worker scrubs), stored as the consumer stores them —
checkpoints included — and checked by ``verify_store``, the code behind ``agenttrail
verify``. Leaving the fallback record out shows what the store held before: a seq gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agenttrail.producer import Recorder
from agenttrail.producer._build_fallback import BUILD_FAILED
from agenttrail.producer._detectors import BUILTIN_DETECTORS
from agenttrail.producer._scrub import Scrubber
from agenttrail.producer.testing import InMemoryExporter
from agenttrail.store import Store
from agenttrail.verify import FindingKind, verify_store
from tests.integration import test_verify as stored


class Exploding:
    """A user's detector with a bug: it raises on text holding ``BOOM``."""

    kind = "exploding"

    def find(self, text: str) -> Iterable[tuple[int, int]]:
        if "BOOM" in text:
            raise RuntimeError("detector bug")
        return ()


def _recorded(tmp_path: Path) -> tuple[list[dict[str, Any]], str]:
    exporter = InMemoryExporter()
    scrubber = Scrubber((*BUILTIN_DETECTORS, Exploding()))
    rec = Recorder(exporter=exporter, spool_dir=tmp_path, scrubber=scrubber, tenant="acme")
    with rec.task("refund") as task:
        for i in range(3):
            with task.tool("lookup", args={"i": i}) as span:
                span.result({"found": True})
        task.start_tool("refund", {"amount": 5}).end(error="gateway said BOOM")
        with task.tool("notify", args={"i": 9}) as span:
            span.result("sent")
    assert rec.close().complete
    return exporter.events(checkpoints=True), task.task_id


def test_verify_finds_no_gap_where_a_build_failed(store: Store, tmp_path: Path) -> None:
    events, task_id = _recorded(tmp_path)
    mine = [e for e in events if e["task_id"] == task_id]
    assert [e["seq"] for e in mine] == list(range(7))
    (failed,) = [e for e in mine if e.get("error_type") == BUILD_FAILED]
    assert failed["tool"] == "refund" and failed["seq"] == 4
    stored.store_events(store, events)
    report = verify_store(store)
    assert report.findings == []
    assert [p.missing for p in report.producers] == [[]]


def test_without_the_fallback_record_verify_reports_the_gap(store: Store, tmp_path: Path) -> None:
    events, task_id = _recorded(tmp_path)
    stored.store_events(store, [e for e in events if e.get("error_type") != BUILD_FAILED])
    kinds = {f.kind for f in verify_store(store).findings if f.task_id in (task_id, "")}
    assert FindingKind.SEQ_GAP in kinds
