"""Generated personal data and secrets placed anywhere an agent hands the SDK content (error
messages included) never appear in a byte the SDK writes: exported records, the spool,
rejected.jsonl, log lines."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail.producer import Recorder
from agenttrail.producer.testing import InMemoryExporter
from tests import pii


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _written_bytes(exporter: InMemoryExporter, spool: Path, logs: _Capture) -> bytes:
    out = [r.key + r.value for r in exporter.records]
    out += [p.read_bytes() for p in spool.rglob("*") if p.is_file()]
    out += [line.encode() for line in logs.lines]
    return b"\n".join(out)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.sampled_from(["entry", "args", "result", "messages", "response", "payload", "error"]),
    case=pii.json_with_pii(),
    outage=st.booleans(),
    reject=st.booleans(),
)
def test_generated_pii_never_leaves_the_process(
    where: str, case: tuple[object, str], outage: bool, reject: bool
) -> None:
    value, secret = case
    spool = Path(tempfile.mkdtemp(prefix="pii-"))
    logs = _Capture()
    root = logging.getLogger()
    root.addHandler(logs)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        exporter = InMemoryExporter()
        exporter.available = not outage  # an outage: everything goes to the spool
        rec = Recorder(exporter=exporter, spool_dir=spool, redact_content=True, spool_fsync="never")
        with rec.task("t", entry={"data": value} if where == "entry" else None) as task:
            args = {"q": value} if where == "args" else {"q": 1}
            # attempt="x" cannot be encoded: the span goes to rejected.jsonl instead
            with task.tool("lookup", args=args, attempt="x" if reject else 1) as span:  # type: ignore[arg-type]
                span.result(value if where == "result" else "ok")
            if where == "error":  # exception texts often quote the input
                with task.tool("lookup") as failing:
                    failing.fail(ValueError(f"customer {value} not found"))
            messages = [{"role": "user", "content": value}] if where == "messages" else []
            with task.llm_call(model="m", messages=messages) as call:
                call.respond(
                    str(value) if where == "response" else "ok",
                    raw={"v": value} if where == "response" else None,
                )
            task.agent_message(
                sender="a",
                recipient="b",
                contract="c",
                version="1",
                payload=value if where == "payload" else {},
            )
        # In an outage close() would retry delivery for its whole timeout; the spool is
        # written ahead of any send, so a short one leaves the same bytes to inspect.
        rec.close(timeout=0.2 if outage else 10)
        written = _written_bytes(exporter, spool, logs)
        assert written, "the SDK wrote something"
        assert secret.encode() not in written, f"{secret!r} from {where} was written"
    finally:
        root.removeHandler(logs)
        root.setLevel(old_level)
        shutil.rmtree(spool, ignore_errors=True)
