"""`agenttrail consume` killed mid-stream (SIGKILL) and restarted: no loss, no duplicate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from agenttrail.embedded import EmbeddedBroker
from agenttrail.store import open_store
from tests.deadline import wait_until
from tests.integration.conftest import INGEST_KAFKA_OPTIONS
from tests.integration.test_pipeline import (
    Produced,
    make_events,
    produce,
    stored_ids,
    stored_positions,
)


class ConsumerProcess:
    """`agenttrail consume --json` in a subprocess; its status lines are collected."""

    def __init__(self, bootstrap: str, topic: str, group: str, store_dir: Path, *extra: str):
        env = dict(os.environ, AGENTTRAIL_KAFKA_OPTIONS=json.dumps(INGEST_KAFKA_OPTIONS))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from agenttrail.cli import main; main()", "consume",
             "--bootstrap", bootstrap, "--topic", topic, "--group", group,
             "--data", str(store_dir), "--batch-size", "25", "--batch-ms", "50",
             "--status-every", "0.2", "--json", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def last(self) -> dict[str, Any]:
        return self.lines[-1] if self.lines else {}

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


@pytest.mark.parametrize("cut", ["by_size", "when_idle"])
def test_killed_consumer_restarted_loses_nothing_and_stores_nothing_twice(
    broker: EmbeddedBroker,
    topic: str,
    unique_group: str,
    store_dir: Path,
    cut: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # when_idle: batch_size and batch_ms are out of reach, so every batch is one the idle
    # writer took (min_batch_size) and ends wherever the fetch happened to stand; the
    # ledger's recorded ranges are all the redo has to go by.
    extra: tuple[str, ...] = ()
    if cut == "when_idle":
        monkeypatch.setenv("AGENTTRAIL_MIN_BATCH_SIZE", "3")
        extra = ("--batch-size", "100000", "--batch-ms", "600000")
    produced = produce(broker.bootstrap, topic, make_events(tasks=24, per_task=25, prefix="a"))
    first = ConsumerProcess(broker.bootstrap, topic, unique_group, store_dir, *extra)
    wait_until(
        lambda: first.last().get("events_total", 0) >= 150,
        timeout=60,
        what="the first consumer storing 150 events",
    )
    more = Produced()
    sender = threading.Thread(
        target=produce,
        args=(broker.bootstrap, topic, make_events(tasks=24, per_task=25, prefix="b"), more),
    )
    sender.start()  # the kill lands while events are still arriving
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    sender.join(timeout=60)
    total = produced.messages + more.messages

    second = ConsumerProcess(broker.bootstrap, topic, unique_group, store_dir, *extra)

    def caught_up() -> bool:
        s = second.last()
        return s.get("lag") == 0 and len(s.get("partitions", [])) == 4

    try:
        wait_until(caught_up, timeout=90, what="the restarted consumer catching up (lag 0)")
    except AssertionError:
        second.proc.kill()
        raise AssertionError(
            f"last status {second.last()}; log:\n{second.stderr()[-3000:]}"
        ) from None
    assert second.stop(signal.SIGTERM) == 0, second.stderr()
    assert second.last()["status"] == "stopped"

    with open_store(data=store_dir) as store:
        ids = stored_ids(store)
        positions = stored_positions(store)
    expected = set(produced.hashes) | set(more.hashes)
    assert set(ids) == expected, f"missing {len(expected - set(ids))} events"
    assert set(ids.values()) == {1}, "some event stored twice"
    assert len(positions) == total and set(positions.values()) == {1}
