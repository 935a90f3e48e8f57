"""The embedded broker dies with the process that started it, SIGKILL included (issue 7.6).

A broker that outlives `agenttrail broker` or `agenttrail up` keeps the port (the next
`up` cannot start) and acknowledges produce requests that nothing will ever store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agenttrail.embedded._broker import _port_is_free
from tests.deadline import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agenttrail.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert ready["status"] == "ready", ready
    return proc, ready


def _tansu_children(pid: int) -> list[int]:
    # Children are listed per thread that forked them.
    children = [
        c
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]
    return [int(c) for c in children if b"tansu" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.parametrize("command", ["broker", "up"])
def test_sigkill_of_the_starting_process_kills_tansu_and_frees_the_port(
    command: str, tmp_path: Path
) -> None:
    proc, ready = _start([command, "--port", "0", "--data", str(tmp_path / "data"), "--json"])
    port = int(str(ready["bootstrap"]).rsplit(":", 1)[1])
    (tansu,) = _tansu_children(proc.pid)
    assert not _port_is_free("127.0.0.1", port)

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    wait_until(lambda: not _alive(tansu), timeout=30, what=f"Tansu pid {tansu} to die")
    wait_until(lambda: _port_is_free("127.0.0.1", port), timeout=30, what=f"port {port} freed")


def test_a_broker_orphaned_where_the_kernel_did_not_kill_it_is_stopped_by_the_next_start(
    tmp_path: Path,
) -> None:
    # Where PR_SET_PDEATHSIG does not exist, the pid file is the safety net: simulate an
    # orphan by starting a broker whose parent shell exits at once (no death signal).
    from agenttrail.embedded import EmbeddedBroker
    from agenttrail.embedded._broker import _resolve_binary

    log = tmp_path / "broker.log"
    binary = _resolve_binary()
    orphan_cmd = (
        f"{binary} broker --cluster-id agenttrail-orphan --listener-url tcp://127.0.0.1:0 "
        "--storage-engine memory://tansu/ >/dev/null 2>&1 & echo $!"
    )
    pid = int(subprocess.run(["sh", "-c", orphan_cmd], capture_output=True, text=True).stdout)
    (tmp_path / "broker.pid").write_text(f"{pid}\n{binary}\n")
    wait_until(lambda: _alive(pid), timeout=10, what="the orphan to run")

    broker = EmbeddedBroker(port=0, log_path=log).start(timeout=30)
    try:
        assert not _alive(pid), "the orphaned broker of the pid file is still running"
        assert (tmp_path / "broker.pid").read_text().split()[0] == str(broker.pid)
    finally:
        broker.stop()
    assert not (tmp_path / "broker.pid").exists()
