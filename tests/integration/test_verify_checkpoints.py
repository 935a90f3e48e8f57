"""Proof of no loss: ``verify`` against checkpoints, in stores an attacker built.

The ground truth is a real recorder's output: tasks run through the SDK, every event
and checkpoint it exported kept in memory. Each test then stores a tampered subset of
that output — events are append-only, so the damage is done before the insert: a
task's tail left out, a whole task left out, a middle range of ``producer_seq`` left
out, a checkpoint forged without the key, an old checkpoint replayed — and checks
that ``verify`` exits 1 naming exactly what is missing, counted from the ground truth.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.events import (
    SigningKey,
    checkpoint_statement,
    default_registry,
    heads_of,
    new_signing_key,
    seal,
)
from agenttrail.producer import Recorder
from agenttrail.producer.testing import InMemoryExporter
from agenttrail.store import Store
from agenttrail.verify import FindingKind, verify_store
from tests.deadline import wait_until
from tests.integration.test_verify import store_events


@dataclass
class Run:
    """What one recorder sealed, in producer_seq order (events and checkpoints)."""

    producer_id: str
    sealed: list[dict[str, Any]]
    public_key: str | None

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [e for e in self.sealed if e["task_id"] == task_id]

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        return [e for e in self.sealed if e["event_type"] == "checkpoint"]


def _tools(task: Any, n: int) -> None:
    for i in range(n):
        with task.tool("lookup", args={"i": i}) as span:
            span.result({"ok": i})


def _named(exporter: InMemoryExporter, task_id: str, closed: bool) -> bool:
    return any(
        h.task_id == task_id and h.closed == closed
        for c in exporter.checkpoints()
        for h in heads_of(c)
    )


def record_run(tmp_path: Path, *, signed: bool = False) -> Run:
    """Task a stays open across checkpoints; b ends in between; c and a's tail come last."""
    public = None
    settings: dict[str, Any] = {}
    if signed:
        pem, public = new_signing_key()
        (tmp_path / "key.pem").write_bytes(pem)
        settings["checkpoint_key_file"] = tmp_path / "key.pem"
    exporter = InMemoryExporter()
    rec = Recorder(
        exporter=exporter, spool_dir=tmp_path / "spool", tenant="acme", agent="prover",
        checkpoint_interval_s=0.05, **settings,
    )  # fmt: skip
    a = rec.task("proof", task_id="a")
    a.__enter__()
    _tools(a, 3)
    wait_until(lambda: _named(exporter, "a", False), what="a checkpoint naming open task a")
    with rec.task("proof", task_id="b") as b:
        _tools(b, 3)
    wait_until(lambda: _named(exporter, "b", True), what="a checkpoint naming b's end")
    with rec.task("proof", task_id="c") as c:
        _tools(c, 2)
    _tools(a, 4)
    a.__exit__(None, None, None)
    assert rec.close(timeout=30).complete
    sealed = exporter.events(checkpoints=True)
    assert [e["producer_seq"] for e in sealed] == list(range(len(sealed)))
    assert sealed[-1]["event_type"] == "checkpoint" and sealed[-1]["final"]
    return Run(rec.producer_id, sealed, public)


def ranges(values: Iterable[int]) -> list[list[int]]:
    """Sorted values as [first, last] runs of consecutive numbers."""
    out: list[list[int]] = []
    for v in sorted(values):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def _without(run: Run, dropped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = {e["event_id"] for e in dropped}
    return [e for e in run.sealed if e["event_id"] not in ids]


def _producer(report: Any, run: Run) -> Any:
    (rec,) = [p for p in report.producers if p.producer_id == run.producer_id]
    return rec


def _cli(store_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["verify", "--data", str(store_dir), "--json", *args])


@pytest.fixture(scope="module")
def unsigned_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return record_run(tmp_path_factory.mktemp("unsigned"))


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return record_run(tmp_path_factory.mktemp("signed"), signed=True)


def test_an_intact_run_reconciles_exactly(store: Store, unsigned_run: Run) -> None:
    run = unsigned_run
    store_events(store, run.sealed)
    report = verify_store(store)
    assert report.findings == []
    p = _producer(report, run)
    assert (p.produced, p.stored, p.dead_lettered, p.missing) == (
        len(run.sealed), len(run.sealed), 0, [],
    )  # fmt: skip
    assert (p.checkpoints, p.closed) == (len(run.checkpoints), True)


def test_a_deleted_task_tail_is_named_with_its_seqs_and_producer_seqs(
    store: Store, store_dir: Path, unsigned_run: Run
) -> None:
    run = unsigned_run
    tail = run.of("a")[-3:]
    store_events(store, _without(run, tail))
    report = verify_store(store)
    # One finding per checkpoint that saw a head of the tail (the final one saw the last).
    cuts = [f for f in report.findings if f.kind == FindingKind.TAIL_DELETED]
    first, last = tail[0]["seq"], tail[-1]["seq"]
    assert cuts and {(f.task_id, f.seq) for f in cuts} == {("a", first)}
    assert any(f"seq {first}…{last} (3 events) missing" in f.detail for f in cuts)
    assert _producer(report, run).missing == ranges(e["producer_seq"] for e in tail)
    store.close()
    result = _cli(store_dir)
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert {"tail_deleted", "missing_events"} <= {f["kind"] for f in doc["findings"]}


def test_a_deleted_whole_task_is_named(store: Store, unsigned_run: Run) -> None:
    run = unsigned_run
    task_b = run.of("b")
    store_events(store, _without(run, task_b))
    report = verify_store(store)
    gone = [f for f in report.findings if f.kind == FindingKind.TASK_DELETED]
    assert gone and {(f.task_id, f.tenant) for f in gone} == {("b", "acme")}
    assert any(f"seq 0…{task_b[-1]['seq']} ({len(task_b)} events" in f.detail for f in gone)
    assert _producer(report, run).missing == ranges(e["producer_seq"] for e in task_b)


def test_a_dropped_middle_range_of_producer_seq_is_reported_exactly(
    store: Store, unsigned_run: Run
) -> None:
    run = unsigned_run
    middle = len(run.sealed) // 2
    dropped = run.sealed[middle : middle + 4]
    store_events(store, _without(run, dropped))
    report = verify_store(store)
    assert not report.ok
    expected = [[dropped[0]["producer_seq"], dropped[-1]["producer_seq"]]]
    assert _producer(report, run).missing == expected
    missing = [f for f in report.findings if f.kind == FindingKind.MISSING_EVENTS and not f.task_id]
    assert [f.seq for f in missing] == [expected[0][0]]
    assert f"producer_seq {expected[0][0]}…{expected[0][1]} (4 events)" in missing[0].detail


def test_signed_checkpoints_verify_with_the_public_key(
    store: Store, store_dir: Path, signed_run: Run
) -> None:
    run = signed_run
    assert run.public_key is not None
    store_events(store, run.sealed)
    report = verify_store(store, public_keys=[run.public_key])
    assert report.findings == []
    p = _producer(report, run)
    assert p.signed == p.checkpoints == len(run.checkpoints)
    _, stranger = new_signing_key()
    wrong = verify_store(store, public_keys=[stranger])
    assert {f.kind for f in wrong.findings} == {FindingKind.BAD_SIGNATURE}
    assert len(wrong.findings) == len(run.checkpoints)
    store.close()
    assert _cli(store_dir, "--public-key", run.public_key).exit_code == 0


def test_unsigned_checkpoints_fail_when_a_public_key_is_required(
    store: Store, unsigned_run: Run
) -> None:
    store_events(store, unsigned_run.sealed)
    _, public = new_signing_key()
    report = verify_store(store, public_keys=[public])
    assert {f.kind for f in report.findings} == {FindingKind.UNSIGNED_CHECKPOINT}


def _forged_final(run: Run, truncated: list[dict[str, Any]], key: SigningKey) -> dict[str, Any]:
    """The final checkpoint rewritten to vouch for ``truncated``: a's head moved back,
    re-hashed correctly, and signed with a key that is not the recorder's."""
    final = copy.deepcopy(run.checkpoints[-1])
    head_a = [e for e in truncated if e["task_id"] == "a"][-1]
    final["head_tenants"] = ["acme"]
    final["head_task_ids"] = ["a"]
    final["head_task_types"] = ["proof"]
    final["head_seqs"] = [head_a["seq"]]
    final["head_hashes"] = [head_a["hash"]]
    final["head_ts"] = [int(head_a["ts"].timestamp() * 1_000_000)]
    final["head_closed"] = [False]
    final["signature"] = key.sign(checkpoint_statement(final))
    seal(default_registry().latest("checkpoint"), final, final["prev_hash"])
    return final


def test_a_checkpoint_forged_without_the_key_is_detected(
    store: Store, store_dir: Path, signed_run: Run
) -> None:
    run = signed_run
    assert run.public_key is not None
    tail = run.of("a")[-3:]
    kept = _without(run, [*tail, run.checkpoints[-1]])
    pem, _ = new_signing_key()
    forged = _forged_final(run, kept, SigningKey(pem))
    store_events(store, [*kept, forged])
    report = verify_store(store, public_keys=[run.public_key])
    (bad,) = [f for f in report.findings if f.kind == FindingKind.BAD_SIGNATURE]
    assert bad.event_id == str(forged["event_id"]) and bad.seq == forged["seq"]
    # Its producer_seq slots cannot be faked either: a's tail is still missing.
    assert _producer(report, run).missing == ranges(e["producer_seq"] for e in tail)
    store.close()
    result = _cli(store_dir, "--public-key", run.public_key)
    assert result.exit_code == 1
    assert "bad_signature" in {f["kind"] for f in json.loads(result.output)["findings"]}


def test_a_replayed_old_checkpoint_is_detected(store: Store, signed_run: Run) -> None:
    run = signed_run
    assert run.public_key is not None
    # The end of the stream cut off from a's tail on (checkpoints after it included)...
    cut_at = run.of("a")[-3]["producer_seq"]
    kept = [e for e in run.sealed if e["producer_seq"] < cut_at]
    old = run.checkpoints[0]
    # ...and checkpoint 0 replayed as it was, a second copy standing in for the newest.
    store_events(store, [*kept, copy.deepcopy(old)])
    report = verify_store(store, public_keys=[run.public_key])
    (copy_of_old,) = [f for f in report.findings if f.kind == FindingKind.DUPLICATE]
    assert (copy_of_old.event_id, copy_of_old.seq) == (str(old["event_id"]), 0)
    # What followed the newest checkpoint left no gap (the stream's end is gone, the
    # final checkpoint with it): only a verifier that requires closed streams can say so.
    p = _producer(report, run)
    assert (p.closed, p.produced, p.missing) == (False, cut_at, [])
    strict = verify_store(store, public_keys=[run.public_key], require_closed=True)
    (cut,) = [f for f in strict.findings if f.kind == FindingKind.STREAM_OPEN]
    assert cut.producer_id == run.producer_id and cut.seq == cut_at
    assert f"from producer_seq {cut_at} on is unaccounted for" in cut.detail


def test_a_replayed_checkpoint_restamped_as_the_newest_fails_its_signature(
    store: Store, signed_run: Run
) -> None:
    run = signed_run
    assert run.public_key is not None
    final = run.checkpoints[-1]
    cut_at = run.of("a")[-3]["producer_seq"]
    kept = [e for e in run.sealed if e["producer_seq"] < cut_at]
    replay = copy.deepcopy(run.checkpoints[0])
    # Moved into the final checkpoint's place, hash chain repaired; the signature is old.
    for name in ("seq", "producer_seq", "prev_hash", "final", "event_id", "ts"):
        replay[name] = final[name]
    seal(default_registry().latest("checkpoint"), replay, replay["prev_hash"])
    store_events(store, [*kept, replay])
    report = verify_store(store, public_keys=[run.public_key])
    (bad,) = [f for f in report.findings if f.kind == FindingKind.BAD_SIGNATURE]
    assert bad.seq == final["seq"]
    assert _producer(report, run).missing == [[cut_at, final["producer_seq"] - 1]]


# -- exports: the manifest carries the checkpoints ------------------------------------------


def _cut_from_export(out: Path, drop: Any) -> None:
    """Remove rows from the exported jsonl files and rewrite the manifest to match, as an
    attacker without the signing key can: sizes, SHA-256 and row counts all agree."""
    from agenttrail.export._export import file_sha256

    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["files"]:
        path = out / entry["file"]
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not drop(json.loads(line))]
        path.write_text("".join(kept))
        entry.update(rows=len(kept), bytes=path.stat().st_size, sha256=file_sha256(path))
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_an_export_carries_the_signed_checkpoints_and_export_verify_checks_them(
    store: Store, tmp_path: Path, signed_run: Run
) -> None:
    from agenttrail.export import check_export, export_store

    run = signed_run
    assert run.public_key is not None
    store_events(store, run.sealed)
    out = tmp_path / "audit"
    manifest = export_store(store, out, fmt="jsonl")
    assert [c["event_id"] for c in manifest["checkpoints"]] == [
        str(c["event_id"]) for c in run.checkpoints
    ]
    assert manifest["rows"] == len(run.sealed) - len(run.checkpoints)
    report = check_export(out, public_keys=[run.public_key])
    assert report.findings == []
    (p,) = report.producers
    assert (p.signed, p.checkpoints, p.closed) == (len(run.checkpoints),) * 2 + (True,)

    tail_seqs = {e["seq"] for e in run.of("a")[-2:]}
    _cut_from_export(
        out, lambda r: r["task_id"] == "b" or (r["task_id"] == "a" and r["seq"] in tail_seqs)
    )
    cut = check_export(out, public_keys=[run.public_key])
    assert {(f.kind, f.task_id) for f in cut.findings} == {
        (FindingKind.TASK_DELETED, "b"),
        (FindingKind.TAIL_DELETED, "a"),
    }
    result = CliRunner().invoke(
        main, ["export", "verify", str(out), "--public-key", run.public_key, "--json"]
    )
    assert result.exit_code == 1, result.output


def test_a_checkpoint_altered_in_an_export_manifest_fails_its_signature(
    store: Store, tmp_path: Path, signed_run: Run
) -> None:
    from agenttrail.export import check_export, export_store

    run = signed_run
    assert run.public_key is not None
    store_events(store, run.sealed)
    out = tmp_path / "audit"
    export_store(store, out, fmt="jsonl")
    manifest = json.loads((out / "manifest.json").read_text())
    victim = next(c for c in manifest["checkpoints"] if c["head_seqs"])
    victim["head_seqs"] = [s + 5 for s in victim["head_seqs"]]
    (out / "manifest.json").write_text(json.dumps(manifest))
    report = check_export(out, public_keys=[run.public_key])
    kinds = {f.kind for f in report.findings if f.event_id == victim["event_id"]}
    assert FindingKind.BAD_SIGNATURE in kinds and FindingKind.MODIFIED in kinds


def test_through_kafka_and_the_consumer_signed_checkpoints_verify(tmp_path: Path) -> None:
    from agenttrail.embedded import LocalStack
    from agenttrail.producer._exporter import KafkaExporter

    pem, public = new_signing_key()
    (tmp_path / "key.pem").write_bytes(pem)
    with LocalStack(tmp_path / "data", partitions=2) as stack:
        rec = Recorder(
            exporter=KafkaExporter(stack.bootstrap), tenant="acme", spool_dir=tmp_path / "sp",
            checkpoint_key_file=tmp_path / "key.pem", checkpoint_interval_s=0.05,
        )  # fmt: skip
        for t in range(4):
            with rec.task("proof", task_id=f"k{t}") as task:
                _tools(task, 3)
        report = rec.close(timeout=60)
        assert report.complete, report
        stack.wait_stored(report.delivered, timeout=120)
        assert stack.store is not None
        verified = verify_store(stack.store, public_keys=[public], require_closed=True)
    assert verified.findings == []
    (p,) = verified.producers
    assert (p.produced, p.stored, p.missing, p.closed) == (
        report.delivered, report.delivered, [], True,
    )  # fmt: skip
    assert p.signed == p.checkpoints >= 1
