"""``agenttrail otlp`` with client certificates, as a process, into a real local stack.

The receiver runs as the user runs it (its own process, HTTPS, --client-ca and
--client-identities); the trace a certificate sends becomes a stored run of that
certificate's tenant, and the refused requests add nothing to the store.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from agenttrail.cli import main
from agenttrail.embedded import LocalStack
from tests.certs import Issued, TestCA
from tests.deadline import wait_until
from tests.unit.test_otlp_receiver import PB, full_trace, traces

ROOT = Path(__file__).resolve().parents[2]


def _post(url: str, ca: Path, who: Issued | None, body: bytes) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    if who is not None:
        context.load_cert_chain(who.cert, who.key)
    with httpx.Client(verify=context, timeout=30) as client:
        answer = client.post(url + "/v1/traces", content=body, headers={"Content-Type": PB})
        return answer.status_code


def test_a_client_certificate_trace_becomes_a_run_of_its_tenant(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    server, agent, stranger = ca.server(), ca.client("agent", "invoicer"), ca.client("x", "x")
    identities = tmp_path / "identities.json"
    identities.write_text(json.dumps({"CN=invoicer": "acme"}))
    with LocalStack(tmp_path / "data", partitions=2) as stack:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agenttrail.cli", "otlp", "--bootstrap", stack.bootstrap,
             "--host", "127.0.0.1", "--port", "0", "--state", str(tmp_path / "otlp.db"),
             "--tls-cert", str(server.cert), "--tls-key", str(server.key),
             "--client-ca", str(ca.cert), "--client-identities", str(identities), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert ready["mtls"] is True and ready["otlp"].startswith("https://127.0.0.1:")
            body = traces(*full_trace()).SerializeToString()
            claims_other = traces(
                *full_trace(), resource={"agenttrail.tenant": "globex"}
            ).SerializeToString()
            assert _post(ready["otlp"], ca.cert, None, body) == 401
            assert _post(ready["otlp"], ca.cert, stranger, body) == 401
            assert _post(ready["otlp"], ca.cert, agent, claims_other) == 403
            assert _post(ready["otlp"], ca.cert, agent, body) == 200

            def stored() -> Any:
                result = CliRunner().invoke(main, ["runs", "--data", str(stack.data), "--json"])
                runs = json.loads(result.output).get("runs") if result.exit_code == 0 else None
                return runs if runs and runs[0]["events"] == 6 else None

            runs = wait_until(stored, timeout=120, what="the mTLS trace to be a stored run")
            assert [(r["tenant"], r["task_type"]) for r in runs] == [("acme", "invoicing")]
            # The stack's counters are published a moment after the rows are visible.
            wait_until(lambda: stack.snapshot().events_total >= 6, timeout=60,
                       what="the stack to count the stored events")  # fmt: skip
            assert stack.snapshot().events_total == 6  # the refused requests wrote nothing
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
        assert proc.returncode == 0
