"""The SDK's checkpoints: how far a producer got and its chain heads, sealed off the
agent's thread, chained, and (with a key) signed so that any holder of the public key
can check them.

Ground truth is what the test itself recorded: the tasks it ran and the events the
in-memory exporter received, never what the checkpoint code computed.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from agenttrail.events import (
    PublicKeys,
    checkpoint_statement,
    checkpoint_task_id,
    heads_of,
    new_signing_key,
)
from agenttrail.producer import Recorder, RecorderConfigError
from agenttrail.producer.testing import InMemoryExporter
from tests.deadline import wait_until


def _run_task(rec: Recorder, name: str, tools: int) -> str:
    with rec.task("proof", task_id=name) as task:
        for i in range(tools):
            with task.tool("lookup", args={"i": i}) as span:
                span.result({"ok": i})
    return name


def test_close_seals_one_final_checkpoint_covering_every_event(tmp_path: Path) -> None:
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path, checkpoint_interval_s=0)
    _run_task(rec, "a", 3)
    _run_task(rec, "b", 1)
    assert rec.close(timeout=30).complete
    everything = exporter.events(checkpoints=True)
    events = exporter.events()
    (cp,) = exporter.checkpoints()
    assert everything[-1] == cp and len(everything) == len(events) + 1
    # producer_seq is gapless over events and checkpoints alike; the checkpoint is last.
    assert [e["producer_seq"] for e in everything] == list(range(len(everything)))
    assert cp["final"] is True and cp["seq"] == 0 and cp["prev_hash"] == ""
    assert cp["task_id"] == checkpoint_task_id(rec.producer_id)
    last = {e["task_id"]: e for e in events}
    assert {(h.task_id, h.seq, h.hash, h.closed) for h in heads_of(cp)} == {
        (t, e["seq"], e["hash"], True) for t, e in last.items()
    }
    assert cp["signature"] is None and cp["key_id"] is None


def test_periodic_checkpoints_name_only_tasks_that_moved_and_chain(tmp_path: Path) -> None:
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path, checkpoint_interval_s=0.05)
    task = rec.task("proof", task_id="long").__enter__()
    with task.tool("step", args={}) as span:
        span.result(1)
    first = wait_until(
        lambda: [c for c in exporter.checkpoints() if heads_of(c)],
        what="a periodic checkpoint naming the open task",
    )[0]
    assert [h.task_id for h in heads_of(first)] == ["long"]
    assert heads_of(first)[0].closed is False and first["final"] is False
    _run_task(rec, "short", 1)
    task.__exit__(None, None, None)
    rec.close(timeout=30)
    cps = exporter.checkpoints()
    assert [c["seq"] for c in cps] == list(range(len(cps)))
    for before, after in itertools.pairwise(cps):
        assert after["prev_hash"] == before["hash"]
    named = [h for c in cps for h in heads_of(c)]
    events = exporter.events()
    # Every task's final head is named by some checkpoint; nothing unmoved is repeated.
    for task_id in ("long", "short"):
        newest = [e for e in events if e["task_id"] == task_id][-1]
        assert (task_id, newest["seq"], newest["hash"]) in {
            (h.task_id, h.seq, h.hash) for h in named
        }
    assert cps[-1]["final"] is True
    assert all(not heads_of(c) for c in cps[1:-1] if c["producer_seq"] == cps[0]["producer_seq"])


def test_signed_checkpoints_verify_with_the_public_key_only(tmp_path: Path) -> None:
    pem, public = new_signing_key()
    _, other = new_signing_key()
    key_file = tmp_path / "checkpoint.pem"
    key_file.write_bytes(pem)
    exporter = InMemoryExporter()
    rec = Recorder(
        exporter=exporter, spool_dir=tmp_path / "s", checkpoint_key_file=key_file,
        checkpoint_interval_s=0,
    )  # fmt: skip
    _run_task(rec, "a", 2)
    rec.close(timeout=30)
    (cp,) = exporter.checkpoints()
    assert cp["key_id"] == public
    statement = checkpoint_statement(cp)
    assert PublicKeys([public]).verifies(statement, cp["signature"])
    assert not PublicKeys([other]).verifies(statement, cp["signature"])
    altered: dict[str, Any] = {**cp, "head_seqs": [s - 1 for s in cp["head_seqs"]]}
    assert not PublicKeys([public]).verifies(checkpoint_statement(altered), cp["signature"])


def test_a_bad_checkpoint_key_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    with pytest.raises(RecorderConfigError, match=r"not-a-key\.pem.*agenttrail kill --new-key"):
        Recorder(exporter=InMemoryExporter(), spool_dir=tmp_path, checkpoint_key_file=bad)


def test_a_recorder_that_sealed_nothing_seals_no_checkpoint(tmp_path: Path) -> None:
    exporter = InMemoryExporter()
    Recorder(exporter=exporter, spool_dir=tmp_path).close(timeout=30)
    assert exporter.records == []


def test_a_registry_without_the_checkpoint_family_records_events_without_checkpoints(
    tmp_path: Path,
) -> None:
    import json
    import shutil

    from agenttrail._contracts import schemas_dir
    from agenttrail.consumers.testing import sample_record
    from agenttrail.events import SchemaRegistry, to_micros
    from agenttrail.producer._pipeline import Pipeline

    root = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), root)
    shutil.rmtree(root / "checkpoint")
    doc = json.loads((root / "registry.json").read_text())
    doc["schemas"] = [s for s in doc["schemas"] if s["event_type"] != "checkpoint"]
    (root / "registry.json").write_text(json.dumps(doc))
    exporter = InMemoryExporter()
    pipeline = Pipeline(
        exporter, "p-old", spool_root=None, registry=SchemaRegistry.load(root),
        checkpoint_interval_s=0.01,
    )  # fmt: skip
    for seq, family in enumerate(["state_transition", "tool_span", "guard_event"]):
        record = sample_record(family, task_id="t", seq=seq)
        record["ts"] = to_micros(record["ts"])
        pipeline.submit(record)
    report = pipeline.close(timeout=30)
    assert report.complete and report.delivered == 3
    assert exporter.checkpoints() == [] and len(exporter.events()) == 3
