"""One behaviour suite for the SDK, run against the in-memory exporter (unit) and the
real broker (integration). Subclasses provide ``make_recorder`` and ``read_events``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from agenttrail.events import canonical_hash, default_registry
from agenttrail.producer import LimitExceeded, Limits, Recorder, tool

MESSAGES = [
    {"role": "system", "content": "You create invoices. Never invent order ids."},
    {"role": "user", "content": "Invoice order 7294, please — total €12.400"},
]


def check_chain(events: list[dict[str, Any]]) -> None:
    """Every event's hash is recomputable and links to the previous event of its task."""
    registry = default_registry()
    by_task: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_task.setdefault(e["task_id"], []).append(e)
    for task_events in by_task.values():
        task_events.sort(key=lambda e: e["seq"])
        prev = ""
        for e in task_events:
            entry = registry.by_id(_id_of(e))
            assert e["prev_hash"] == prev, f"chain break at seq {e['seq']}"
            assert canonical_hash(entry, e) == e["hash"]
            prev = e["hash"]


def _id_of(event: dict[str, Any]) -> int:
    for entry in default_registry().entries:
        if entry.event_type == event["event_type"] and entry.version == event["schema_version"]:
            return entry.schema_id
    raise AssertionError(f"no schema for {event['event_type']} v{event['schema_version']}")


class RecorderBehaviour:
    """What every exporter must give the user: same events, same order, nothing lost."""

    def make_recorder(self, tmp_path: Path, **settings: Any) -> Recorder:
        raise NotImplementedError

    def read_events(self, recorder: Recorder, expected: int) -> list[dict[str, Any]]:
        """Close or flush the recorder and return the events it delivered, decoded."""
        raise NotImplementedError

    def test_the_readme_example_records_exactly_what_happened(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path, tenant="acme", agent="invoicer", agent_version="1.4.0")
        with rec.task("invoice_generation", entry={"order_id": "7294"}) as task:
            with task.llm_call(
                model="gpt-4.1", messages=MESSAGES, params={"temperature": 0}
            ) as call:
                call.respond(
                    content="calling get_order",
                    input_tokens=1840,
                    output_tokens=512,
                    finish_reason="stop",
                )
            with task.tool(
                "create_invoice", args={"order_id": "7294"}, side_effect="write"
            ) as span:
                span.result({"invoice_id": "inv_1", "status": "draft"})
            task.transition("waiting_confirmation", reason="amount over 10k")
        events = self.read_events(rec, expected=5)
        events.sort(key=lambda e: e["seq"])
        assert [(e["event_type"], e.get("to_state")) for e in events] == [
            ("state_transition", "started"),
            ("llm_call", None),
            ("tool_span", None),
            ("state_transition", "waiting_confirmation"),
            ("state_transition", "succeeded"),
        ]
        started, llm, span_ev, waiting, done = events
        assert {e["task_id"] for e in events} == {task.task_id}
        assert {(e["tenant"], e["agent_name"], e["agent_version"]) for e in events} == {
            ("acme", "invoicer", "1.4.0")
        }
        assert json.loads(started["boundary"]["entry_json"]) == {"order_id": "7294"}
        assert json.loads(llm["messages_json"]) == MESSAGES
        assert llm["prompt_hash"] == hashlib.sha256(llm["messages_json"].encode()).hexdigest()
        assert (
            llm["system_prompt_hash"] == hashlib.sha256(MESSAGES[0]["content"].encode()).hexdigest()
        )
        assert (llm["input_tokens"], llm["output_tokens"], llm["step"]) == (1840, 512, 1)
        assert json.loads(llm["params_json"]) == {"temperature": 0}
        assert span_ev["side_effect"] == "write" and span_ev["success"] is True
        assert json.loads(span_ev["result_summary"]) == {"invoice_id": "inv_1", "status": "draft"}
        assert span_ev["args_hash"] == hashlib.sha256(b'{"order_id":"7294"}').hexdigest()
        assert (waiting["from_state"], waiting["reason"]) == ("started", "amount over 10k")
        assert done["from_state"] == "waiting_confirmation"
        assert len({e["trace_id"] for e in events}) == 1
        check_chain(events)

    def test_seq_is_gapless_and_ids_unique_across_threads(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        tasks_per_thread, spans_per_task, threads = 5, 20, 4
        task_ids: list[str] = []
        lock = threading.Lock()

        def agent(n: int) -> None:
            for t in range(tasks_per_thread):
                with rec.task("load", task_id=f"load-{n}-{t}") as task:
                    with lock:
                        task_ids.append(task.task_id)
                    for i in range(spans_per_task):
                        with task.tool("step", args={"i": i}) as span:
                            span.result(i)

        workers = [threading.Thread(target=agent, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        expected = threads * tasks_per_thread * (spans_per_task + 2)
        events = self.read_events(rec, expected=expected)
        assert len(events) == expected
        assert len({e["event_id"] for e in events}) == expected
        assert sorted(e["producer_seq"] for e in events) == list(range(expected))
        for task_id in task_ids:
            mine = [e for e in events if e["task_id"] == task_id]
            assert [e["seq"] for e in mine] == list(range(spans_per_task + 2)), (
                "within a task, events arrive in seq order without gaps"
            )
            assert [json.loads(e["args_json"])["i"] for e in mine[1:-1]] == list(
                range(spans_per_task)
            )
        check_chain(events)

    def test_an_exception_fails_the_task_and_propagates(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        with pytest.raises(KeyError, match="7294"), rec.task("invoice_generation") as task:
            with task.tool("get_order", args={"order_id": "7294"}):
                raise KeyError("order 7294 not in staging")
        events = sorted(self.read_events(rec, expected=3), key=lambda e: e["seq"])
        span_ev, end = events[1], events[2]
        assert span_ev["success"] is False and span_ev["error_type"] == "KeyError"
        assert "7294" in span_ev["error_detail"]
        assert (end["to_state"], end["error_type"]) == ("failed", "KeyError")
        assert task.state == "failed"

    def test_nested_tool_spans_name_their_parent(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        with rec.task("nesting") as task, task.tool("outer") as outer:
            with task.tool("inner") as inner:
                inner.result("ok")
        events = self.read_events(rec, expected=4)
        spans = {e["tool"]: e for e in events if e["event_type"] == "tool_span"}
        assert spans["inner"]["parent_span_id"] == outer.span_id == spans["outer"]["span_id"]
        assert spans["outer"]["parent_span_id"] == task.root_span_id

    def test_step_limit_is_a_hard_stop(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        calls = 0
        with pytest.raises(LimitExceeded) as raised:
            with rec.task("looping", limits=Limits(max_steps=3)) as task:
                while True:
                    with task.llm_call(
                        model="m", messages=[{"role": "user", "content": "go"}]
                    ) as c:
                        calls += 1
                        c.respond("again", input_tokens=10, output_tokens=2)
        assert calls == 3
        assert (raised.value.limit, raised.value.limit_value, raised.value.observed) == (
            "steps",
            3,
            4,
        )
        events = sorted(self.read_events(rec, expected=6), key=lambda e: e["seq"])
        guard, last = events[-2], events[-1]
        assert (guard["event_type"], guard["kind"], guard["limit_name"]) == (
            "guard_event",
            "limit_exceeded",
            "steps",
        )
        assert last["to_state"] == "limit_exceeded"
        assert sum(1 for e in events if e["event_type"] == "llm_call") == 3

    def test_token_limit_stops_the_next_call(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        with rec.task("expensive", limits=Limits(max_tokens=1000)) as task:
            with task.llm_call(model="m", messages=[]) as c:
                c.respond("big", input_tokens=900, output_tokens=200)
            with pytest.raises(LimitExceeded, match="tokens"), task.tool("anything"):
                pass
        events = self.read_events(rec, expected=4)
        assert [
            e.get("kind") or e.get("to_state") for e in events if e["event_type"] != "llm_call"
        ][-2:] == ["limit_exceeded", "limit_exceeded"]

    def test_agent_messages_carry_their_contract(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path, agent="orchestrator")
        with rec.task("software_delivery") as task:
            mid = task.agent_message(
                sender="orchestrator",
                recipient="CodingAgent",
                contract="coding.request",
                version="2.1",
                payload={"spec": "add endpoint"},
            )
            task.agent_message(
                sender="CodingAgent",
                recipient="orchestrator",
                contract="coding.result",
                version="2.0",
                payload={"diff": "+1 -0"},
                direction="received",
                in_reply_to=mid,
            )
        events = [
            e for e in self.read_events(rec, expected=4) if e["event_type"] == "agent_message"
        ]
        assert [(e["contract_name"], e["contract_version"], e["direction"]) for e in events] == [
            ("coding.request", "2.1", "sent"),
            ("coding.result", "2.0", "received"),
        ]
        assert events[1]["in_reply_to"] == events[0]["message_id"] == mid

    def test_tool_decorator_records_inside_a_task_only(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)

        @tool("notify_finance", side_effect="irreversible")
        def notify_finance(invoice_id: str, amount: float = 0.0) -> dict[str, bool]:
            return {"sent": True}

        assert notify_finance("outside") == {"sent": True}
        with rec.task("invoice_generation"):
            assert notify_finance("inv_1", amount=12.5) == {"sent": True}
        events = self.read_events(rec, expected=3)
        (span_ev,) = [e for e in events if e["event_type"] == "tool_span"]
        assert span_ev["tool"] == "notify_finance" and span_ev["side_effect"] == "irreversible"
        assert json.loads(span_ev["args_json"]) == {"invoice_id": "inv_1", "amount": 12.5}

    def test_sensitive_arguments_never_leave_the_process(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        args = {"user": "ann", "credentials": {"password": "hunter2", "api_key": "sk-123"}}
        with rec.task("login") as task, task.tool("login", args=args):
            pass
        (span_ev,) = [
            e for e in self.read_events(rec, expected=3) if e["event_type"] == "tool_span"
        ]
        assert "hunter2" not in span_ev["args_json"] and "sk-123" not in span_ev["args_json"]
        assert sorted(span_ev["redactions"]) == [
            "$.credentials.api_key",
            "$.credentials.password",
        ]
        original = json.dumps(args, sort_keys=True, separators=(",", ":"))
        assert span_ev["args_hash"] == hashlib.sha256(original.encode()).hexdigest()
        assert args["credentials"]["password"] == "hunter2", "the caller's object is untouched"
