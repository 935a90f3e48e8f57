"""``agenttrail up`` serves OTLP (URL in up.json) and ``agenttrail otlp`` guards its door.

Both run as the user runs them: the installed CLI in its own process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from agenttrail.cli import main
from tests.deadline import wait_until
from tests.unit.test_otlp_receiver import full_trace, traces

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "agenttrail.cli"]


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url + "/v1/traces", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_up_serves_otlp_on_loopback_and_the_trace_becomes_a_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = subprocess.Popen(
        [*CLI, "up", "--data", str(data), "--port", "0", "--otlp-port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert up.stdout is not None
        ready = json.loads(up.stdout.readline())
        url = ready["otlp"]
        assert url.startswith("http://127.0.0.1:")
        assert json.loads((data / "up.json").read_text())["otlp"] == url
        body = traces(*full_trace(), resource={"agenttrail.tenant": "up-test"}).SerializeToString()
        assert post(url, body, {"Content-Type": "application/x-protobuf"}) == 200

        def stored() -> Any:
            result = CliRunner().invoke(main, ["runs", "--data", str(data), "--json"])
            runs = json.loads(result.output).get("runs") if result.exit_code == 0 else None
            # All six events of the trace (started, 3 spans, kept span, succeeded).
            return runs if runs and runs[0]["events"] == 6 else None

        runs = wait_until(stored, timeout=120, what="the OTLP trace to be a stored run")
        assert runs[0]["tenant"] == "up-test" and runs[0]["task_type"] == "invoicing"
        assert runs[0]["outcome"] == "succeeded"
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=300)
    assert up.returncode == 0


def test_otlp_refuses_to_run_open_to_the_network_without_tokens(tmp_path: Path) -> None:
    no_tokens = CliRunner().invoke(main, ["otlp", "--bootstrap", "127.0.0.1:1"])
    assert no_tokens.exit_code == 2 and "--tokens-file" in no_tokens.output
    open_door = CliRunner().invoke(
        main, ["otlp", "--bootstrap", "127.0.0.1:1", "--no-auth", "--host", "0.0.0.0"]
    )
    assert open_door.exit_code == 2 and "without authentication" in open_door.output


def test_otlp_with_tokens_refuses_unauthenticated_requests(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"s3cret-token": "acme"}))
    proc = subprocess.Popen(
        [*CLI, "otlp", "--bootstrap", "127.0.0.1:1", "--tokens-file", str(tokens),
         "--host", "127.0.0.1", "--port", "0", "--state", str(tmp_path / "s.db"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["auth"] is True
        body = traces(*full_trace()).SerializeToString()
        pb = {"Content-Type": "application/x-protobuf"}
        assert post(ready["otlp"], body, pb) == 401
        assert post(ready["otlp"], body, {**pb, "Authorization": "Bearer wrong"}) == 401
        # The right token, but no broker behind it: 503, never a silent 200.
        assert post(ready["otlp"], body, {**pb, "Authorization": "Bearer s3cret-token"}) == 503
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "s3cret-token" not in err
