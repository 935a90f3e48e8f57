"""tool_call_id end to end: the SDK records the id the model gave a tool call (tool_span v2),
the store keeps it (migration 0070), replay and tail show it (0071), the LLM call that asked
for a span is found by it, and a v1 tool span written by an older producer is stored with
NULL next to v2 ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from agenttrail.consumers.testing import sample_record
from agenttrail.embedded import LocalStack
from agenttrail.events import EVENTS_TOPIC, default_registry, seal
from agenttrail.producer import Recorder
from agenttrail.producer._exporter import KafkaExporter
from agenttrail.query import replay_task
from agenttrail.store import Store
from tests.integration.test_derived import CopyingExporter

TASK = "calls-001"
OLD_TASK = "calls-v1"
ASKED = [
    {"id": "call_7QxWt2", "type": "function", "function": {"name": "get_order", "arguments": "{}"}},
    {"id": "toolu_01Abc", "type": "function", "function": {"name": "refund", "arguments": "{}"}},
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, dict[str, Any]]]:
    data: Path = tmp_path_factory.mktemp("calls") / "data"
    with LocalStack(data, partitions=2) as stack:
        exporter = CopyingExporter(KafkaExporter(stack.bootstrap))
        rec = Recorder(exporter=exporter, tenant="acme", agent="caller", spool_dir=data / "sp")
        with rec.task("support", task_id=TASK) as task:
            with task.llm_call(model="gpt-4.1", messages=[{"role": "user", "content": "go"}]) as c:
                c.respond(None, tool_calls=ASKED, input_tokens=5, output_tokens=2)
            asked_by = c.span_id
            with task.tool("get_order", args={"id": 1}, tool_call_id="call_7QxWt2") as span:
                span.result({"ok": True})
            task.start_tool(
                "refund", {"id": 1}, side_effect="write", tool_call_id="toolu_01Abc"
            ).end("done")
            with task.tool("log_note", args={"text": "no model asked"}) as span:
                span.result("ok")
        assert rec.close().spooled == 0
        # An older producer's tool span, framed with tool_span v1 (no tool_call_id field).
        v1 = next(
            e for e in default_registry().entries if e.event_type == "tool_span" and e.version == 1
        )
        old = sample_record("tool_span", task_id=OLD_TASK)
        old["schema_version"] = 1
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
        producer.send(EVENTS_TOPIC, key=OLD_TASK.encode(), value=seal(v1, old, "")).get(60)
        producer.close()
        stack.wait_stored(len(exporter.events()) + 1, timeout=180)
        assert stack.store is not None
        yield stack.store, {"asked_by": asked_by, "events": exporter.events()}


def _rows(store: Store, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.query(sql.replace("DB.", f"{store.database}."), params)]


def test_each_tool_span_keeps_the_id_it_was_given_and_v1_spans_hold_null(
    stored: tuple[Store, dict[str, Any]],
) -> None:
    store, recorded = stored
    sent = {
        e["tool"]: e["tool_call_id"] for e in recorded["events"] if e["event_type"] == "tool_span"
    }
    assert sent == {"get_order": "call_7QxWt2", "refund": "toolu_01Abc", "log_note": None}
    rows = _rows(
        store,
        "SELECT task_id, tool, tool_call_id, schema_version FROM DB.tool_spans "
        "WHERE task_id IN ({a:String}, {b:String}) ORDER BY task_id, seq",
        a=TASK,
        b=OLD_TASK,
    )
    newest = default_registry().latest("tool_span").version
    assert rows == [
        (TASK, "get_order", "call_7QxWt2", newest),
        (TASK, "refund", "toolu_01Abc", newest),
        (TASK, "log_note", None, newest),
        (OLD_TASK, "create_invoice", None, 1),
    ]


def test_the_llm_call_that_asked_for_a_span_is_found_by_its_id(
    stored: tuple[Store, dict[str, Any]],
) -> None:
    store, recorded = stored
    # The join of migration 0070's comment.
    rows = _rows(
        store,
        "SELECT t.tool, l.span_id FROM DB.tool_spans AS t "
        "JOIN DB.llm_calls AS l ON l.tenant = t.tenant AND l.task_id = t.task_id "
        "WHERE t.task_id = {task:String} AND t.tool_call_id IS NOT NULL "
        "AND position(ifNull(l.tool_calls_json, ''), t.tool_call_id) > 0 ORDER BY t.seq",
        task=TASK,
    )
    assert rows == [("get_order", recorded["asked_by"]), ("refund", recorded["asked_by"])]


def test_replay_and_tail_show_the_id_on_the_tool_span_line(
    stored: tuple[Store, dict[str, Any]],
) -> None:
    store, _ = stored
    lines = {
        e.summary.split("(")[0]: e.summary
        for e in replay_task(store, TASK)
        if e.family == "tool_span"
    }
    assert "[call_7QxWt2]" in lines["get_order"]
    assert "[toolu_01Abc]" in lines["refund"]
    assert "[" not in lines["log_note"].split(")")[1].split("→")[0]
    tail = _rows(
        store,
        "SELECT summary FROM DB.event_timeline WHERE task_id = {task:String} "
        "AND family = 'tool_span' ORDER BY seq",
        task=TASK,
    )
    assert [r[0] for r in tail] == [lines["get_order"], lines["refund"], lines["log_note"]]
