"""Ctrl-C during `agenttrail demo`, at several moments (issue 7 item 4).

Each time: no traceback, the demo says what was stored, exit 130 (or 0 when it had
already finished), and no spool is left behind for the demo's broker, which is gone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from tests.deadline import wait_until

ROOT = Path(__file__).resolve().parents[2]
_CLI = (sys.executable, "-m", "agenttrail.cli")
NOISE = ("Traceback", "IllegalStateError", "has been closed", "KeyboardInterrupt")


class _Demo:
    def __init__(self, data: Path, tasks: int) -> None:
        self.data = data
        self.process = subprocess.Popen(
            [*_CLI, "demo", "--data", str(data), "--tasks", str(tasks), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.err = ""
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        while chunk := stream.read(1):
            self.err += chunk

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, dict[str, object] | None, str]:
        out, _ = self.process.communicate(timeout=300)
        self._reader.join(30)
        summary = json.loads(out) if out.strip().startswith("{") else None
        return self.process.returncode, summary, self.err


def _spool_left(data: Path) -> list[Path]:
    root = data / "spool"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _during_start(demo: _Demo) -> None:
    wait_until(lambda: (demo.data / "broker.log").exists(), timeout=120, what="the broker launch")


def _during_tasks(demo: _Demo) -> None:
    wait_until(lambda: "running tasks" in demo.err, timeout=120, what="tasks to start")


def _during_storage(demo: _Demo) -> None:
    wait_until(lambda: "storing" in demo.err, timeout=300, what="the storage wait")


MOMENTS: dict[str, tuple[Callable[[_Demo], None], int]] = {
    "during start": (_during_start, 1),
    "during tasks": (_during_tasks, 1),
    "twice during tasks": (_during_tasks, 2),
    "during the storage wait": (_during_storage, 1),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_ctrl_c_stops_cleanly_says_what_was_stored_and_leaves_no_spool(
    moment: str, tmp_path: Path
) -> None:
    wait_for, presses = MOMENTS[moment]
    demo = _Demo(tmp_path / "data", tasks=3000)
    wait_for(demo)
    for _ in range(presses):
        demo.interrupt()
    code, summary, err = demo.finish()

    for noise in NOISE:
        assert noise not in err, err[-3000:]
    assert _spool_left(demo.data) == [], "an undeliverable spool was left behind"
    assert summary is not None, err[-2000:]
    if moment == "during start" and summary["tasks"] == 0:
        assert code == 130 and summary["events_emitted"] == 0
        return
    assert code == (130 if summary["status"] == "interrupted" else 0), (code, summary)
    stored = summary["stored_by_this_run"]
    assert isinstance(stored, dict)
    assert stored.pop("dead_letters") == 0
    emitted = summary["events_emitted"]
    assert isinstance(emitted, int)
    if moment in ("during start", "during tasks"):
        # One Ctrl-C before storage: everything recorded is delivered and stored.
        assert sum(stored.values()) == emitted, summary
    else:
        assert sum(stored.values()) <= emitted
    if summary["status"] == "interrupted":
        assert summary["tasks"] != summary["tasks_asked"] or moment == "during the storage wait"
