"""The README's own paths through a restarted one-machine stack (issue 7 item 1's tests).

`agenttrail demo`, then `agenttrail up` on the same data directory, then an agent; and
`up`, Ctrl-C, `up` again, then an agent. Every event the broker acknowledged to the
test's agent must be stored exactly once: the test keeps the ids of the events it
emitted and counts them in the store after `up` stops.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from agenttrail.producer import Recorder
from agenttrail.producer._exporter import KafkaExporter
from agenttrail.store import FAMILY_TABLES, open_store
from tests.integration.test_derived import CopyingExporter

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "agenttrail.cli")
TENANT = "readme-path"


def _up(data: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    up = subprocess.Popen(
        [*CLI, "up", "--data", str(data), "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert up.stdout is not None
    ready = json.loads(up.stdout.readline())
    assert ready["status"] == "ready", ready
    return up, ready


def _stop(up: subprocess.Popen[str]) -> dict[str, Any]:
    up.send_signal(signal.SIGINT)
    out, err = up.communicate(timeout=300)
    assert up.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["status"] == "stopped", final
    return dict(final)


def _agent(bootstrap: str, tmp_path: Path, name: str, tasks: int = 5) -> list[str]:
    """An agent as in the README's tour; returns the ids of the events the broker acked."""
    exporter = CopyingExporter(KafkaExporter(bootstrap))
    rec = Recorder(exporter=exporter, tenant=TENANT, agent=name, spool_dir=tmp_path / name)
    for t in range(tasks):
        with rec.task("invoice_generation", task_id=f"{name}-{t}") as task:
            with task.llm_call(model="gpt-4.1", messages=[{"role": "user", "content": "x"}]) as c:
                c.respond("ok", input_tokens=3, output_tokens=1)
            with task.tool("create_invoice", args={"order_id": str(t)}) as span:
                span.result({"invoice_id": f"inv_{t}"})
    report = rec.close(timeout=60)
    assert report.complete, report
    ids = [str(e["event_id"]) for e in exporter.events(checkpoints=True)]
    assert len(ids) == report.delivered
    return ids


def _stored_ids(data: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    with open_store(data=data, create=False) as store:
        for table in FAMILY_TABLES.values():
            rows = store.query(
                f"SELECT toString(event_id) FROM {store.database}.{table} "
                "WHERE tenant = {t:String}",
                {"t": TENANT},
            )
            counts.update(str(r[0]) for r in rows)
    return counts


def _assert_exactly_once(emitted: list[str], stored: collections.Counter[str]) -> None:
    missing = [i for i in emitted if stored[i] == 0]
    doubled = [i for i in emitted if stored[i] > 1]
    extra = set(stored) - set(emitted)
    assert not missing, f"{len(missing)} of {len(emitted)} acknowledged events were not stored"
    assert not doubled, f"{len(doubled)} events were stored more than once"
    assert not extra, f"{len(extra)} stored events were never emitted by the test"


def test_demo_then_up_then_an_agent_stores_every_acknowledged_event_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    demo = subprocess.run(
        [*CLI, "demo", "--data", str(data), "--tasks", "30", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert demo.returncode == 0, demo.stderr
    up, ready = _up(data)
    emitted = _agent(ready["bootstrap"], tmp_path, "after-demo")
    _stop(up)
    _assert_exactly_once(emitted, _stored_ids(data))


def test_up_then_ctrl_c_then_up_then_an_agent_stores_every_acknowledged_event_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    up, ready = _up(data)
    emitted = _agent(ready["bootstrap"], tmp_path, "first-up")
    _stop(up)
    up, ready = _up(data)
    emitted += _agent(ready["bootstrap"], tmp_path, "second-up")
    _stop(up)
    _assert_exactly_once(emitted, _stored_ids(data))
