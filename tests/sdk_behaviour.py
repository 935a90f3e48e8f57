"""One behaviour suite for the SDK, run against the in-memory exporter (unit) and the
real broker (integration). Subclasses provide ``make_recorder`` and ``read_events``.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agenttrail.events import canonical_hash, default_registry
from agenttrail.producer import (
    ABANDONED,
    CallbackPolicy,
    LimitExceeded,
    Limits,
    Recorder,
    SpanAlreadyEnded,
    TaskStopped,
    bind,
    cancel_on_stop,
    current_task,
    tool,
)

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


# --- Execution styles: the same recording from sync code, threads, asyncio, callbacks ---


class CallbackFramework:
    """Behaves like an async agent framework's callback manager: each callback runs in
    its own asyncio task (so in its own copy of the context), start and end of one run
    in different callbacks, and every exception a handler raises is swallowed — except
    BaseExceptions, which frameworks let through like CancelledError."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.swallowed: list[BaseException] = []

    async def fire(self, event: str, *args: Any) -> None:
        async def call() -> None:
            try:
                getattr(self.handler, event)(*args)
            except Exception as exc:  # what frameworks do with handler errors
                self.swallowed.append(exc)

        await asyncio.create_task(call())


class SpanHandler:
    """An integration written against the start/end API: open in one callback, close in
    another, with explicit parents (the framework's parent run id)."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.open: dict[str, Any] = {}

    def on_chain_start(self, run_id: str, parent: str | None) -> None:
        self.open[run_id] = self.task.start_tool(
            "chain", {"run": run_id}, parent=self.open.get(parent or "")
        )

    def on_llm_start(self, run_id: str, parent: str | None) -> None:
        self.open[run_id] = self.task.start_llm_call(
            "m", [{"role": "user", "content": run_id}], parent=self.open.get(parent or "")
        )

    def on_llm_end(self, run_id: str, tokens: int) -> None:
        call = self.open.pop(run_id)
        call.respond(run_id, input_tokens=tokens, output_tokens=1)
        call.end()

    def on_chain_end(self, run_id: str) -> None:
        self.open.pop(run_id).end(result="done")


class ExecutionStyles:
    """Mixed into RecorderBehaviour: spans and ``@tool`` in every way Python runs work."""

    make_recorder: Any
    read_events: Any

    def _spans(self, events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {e["span_id"]: e for e in events if e["event_type"] in ("tool_span", "llm_call")}

    def test_async_callbacks_record_every_call_with_the_parent_given(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)

        async def agent() -> tuple[Any, CallbackFramework]:
            with rec.task("callbacks") as task:
                framework = CallbackFramework(SpanHandler(task))
                await framework.fire("on_chain_start", "chain-1", None)
                # Two overlapping LLM calls under the chain, ended in the other order.
                await framework.fire("on_llm_start", "llm-a", "chain-1")
                await framework.fire("on_llm_start", "llm-b", "chain-1")
                await framework.fire("on_llm_end", "llm-b", 7)
                await framework.fire("on_llm_end", "llm-a", 5)
                await framework.fire("on_chain_end", "chain-1")
            return task, framework

        task, framework = asyncio.run(agent())
        assert framework.swallowed == [], "no handler error for the framework to swallow"
        events = self.read_events(rec, expected=5)
        assert [e.get("to_state") for e in events if e["event_type"] == "state_transition"] == [
            "started",
            "succeeded",
        ]
        chain = next(e for e in events if e["event_type"] == "tool_span")
        calls = sorted(
            (e for e in events if e["event_type"] == "llm_call"), key=lambda e: e["step"]
        )
        assert [json.loads(c["messages_json"])[0]["content"] for c in calls] == ["llm-a", "llm-b"]
        assert [c["input_tokens"] for c in calls] == [5, 7]
        assert {c["parent_span_id"] for c in calls} == {chain["span_id"]}
        assert chain["parent_span_id"] == task.root_span_id
        check_chain(events)

    def test_a_with_span_closed_in_another_context_records_and_restores(
        self, tmp_path: Path
    ) -> None:
        rec = self.make_recorder(tmp_path)
        with rec.task("contexts") as task:
            span = task.tool("opened_here")
            contextvars.copy_context().run(span.__enter__)
            other = contextvars.copy_context()
            other.run(span.__exit__, None, None, None)
            with task.tool("after") as after:
                pass
        events = self.read_events(rec, expected=4)
        spans = {e["tool"]: e for e in events if e["event_type"] == "tool_span"}
        assert set(spans) == {"opened_here", "after"}
        assert after.parent_span_id == task.root_span_id

    def test_gather_and_taskgroup_parallel_tools_nest_under_the_open_span(
        self, tmp_path: Path
    ) -> None:
        rec = self.make_recorder(tmp_path)

        @tool("fetch")
        async def fetch(i: int) -> int:
            await asyncio.sleep(0)
            return i

        async def agent() -> tuple[str, str]:
            with rec.task("parallel") as task:
                with task.tool("gather") as g:
                    assert await asyncio.gather(*(fetch(i) for i in range(4))) == [0, 1, 2, 3]
                with task.tool("taskgroup") as tg:
                    async with asyncio.TaskGroup() as group:
                        for i in range(4, 8):
                            group.create_task(fetch(i))
            return g.span_id, tg.span_id

        gather_id, group_id = asyncio.run(agent())
        events = self.read_events(rec, expected=12)
        fetched = [e for e in events if e.get("tool") == "fetch"]
        by_parent = {
            p: sorted(json.loads(e["args_json"])["i"] for e in fetched if e["parent_span_id"] == p)
            for p in (gather_id, group_id)
        }
        assert by_parent == {gather_id: [0, 1, 2, 3], group_id: [4, 5, 6, 7]}
        check_chain(events)

    def test_thread_pools_record_with_bind_and_to_thread_without(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)

        @tool("work")
        def work(i: int) -> int:
            return i * i

        async def agent() -> str:
            with rec.task("threads") as task:
                with task.tool("outer") as outer:
                    with ThreadPoolExecutor(4) as pool:
                        assert list(pool.map(bind(work), range(4))) == [0, 1, 4, 9]
                    loop = asyncio.get_running_loop()
                    assert await loop.run_in_executor(None, bind(work), 4) == 16
                    assert await asyncio.to_thread(work, 5) == 25
            return outer.span_id

        outer_id = asyncio.run(agent())
        events = self.read_events(rec, expected=9)
        works = [e for e in events if e.get("tool") == "work"]
        assert sorted(json.loads(e["args_json"])["i"] for e in works) == [0, 1, 2, 3, 4, 5]
        assert {e["parent_span_id"] for e in works} == {outer_id}

    def test_generators_are_recorded_over_the_whole_stream(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)

        @tool("tokens")
        def tokens(n: int) -> Iterator[str]:
            for i in range(n):
                yield f"t{i}"

        @tool("atokens")
        async def atokens(n: int) -> AsyncIterator[str]:
            for i in range(n):
                await asyncio.sleep(0)
                yield f"a{i}"

        async def agent() -> list[str]:
            with rec.task("stream"):
                got = list(tokens(3))
                got += [t async for t in atokens(2)]
            return got

        assert asyncio.run(agent()) == ["t0", "t1", "t2", "a0", "a1"]
        events = self.read_events(rec, expected=4)
        results = {e["tool"]: json.loads(e["result_summary"]) for e in events if e.get("tool")}
        assert results == {"tokens": ["t0", "t1", "t2"], "atokens": ["a0", "a1"]}

    def test_a_cancelled_asyncio_task_fails_its_span_and_task(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        entered = asyncio.Event()

        async def agent() -> None:
            with rec.task("cancelled"):
                with rec_task_tool(rec, "slow"):
                    entered.set()
                    await asyncio.sleep(3600)

        async def main() -> None:
            running = asyncio.create_task(agent())
            await entered.wait()
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running

        asyncio.run(main())
        events = sorted(self.read_events(rec, expected=3), key=lambda e: e["seq"])
        assert (events[1]["success"], events[1]["error_type"]) == (False, "CancelledError")
        assert (events[2]["to_state"], events[2]["error_type"]) == ("failed", "CancelledError")

    # --- start/end rules -------------------------------------------------------------

    def test_ending_twice_is_an_error_and_records_once(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        with rec.task("twice") as task:
            span = task.start_tool("t")
            span.end(result=1)
            with pytest.raises(SpanAlreadyEnded, match="already ended"):
                span.end(result=2)
            with pytest.raises(SpanAlreadyEnded):
                span.result(3)
            call = task.start_llm_call("m", [])
            call.end()
            with pytest.raises(SpanAlreadyEnded):
                call.respond("late")
        events = self.read_events(rec, expected=4)
        assert [e["event_type"] for e in events].count("tool_span") == 1

    def test_a_span_ended_cannot_be_changed_before_the_worker_builds_its_event(
        self, tmp_path: Path
    ) -> None:
        # The pipeline worker builds a span's event after end() returns: fail() (the
        # one mutator that did not check) must refuse, and the record stay as ended.
        rec = self.make_recorder(tmp_path)
        with rec.task("late-fail") as task:
            span = task.start_tool("t")
            span.end(result="fine")
            with pytest.raises(SpanAlreadyEnded, match=r"fail\(\)"):
                span.fail("too late")
        events = self.read_events(rec, expected=3)
        tool_span = next(e for e in events if e["event_type"] == "tool_span")
        assert (tool_span["success"], tool_span["error_type"]) == (True, None)
        assert tool_span["result_summary"] == "fine"

    def test_spans_open_when_the_task_ends_are_recorded_abandoned(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        with rec.task("abandoning") as task:
            task.start_tool("forgotten", {"x": 1})
            task.start_llm_call("m", [])
        events = sorted(self.read_events(rec, expected=4), key=lambda e: e["seq"])
        assert [e["event_type"] for e in events] == [
            "state_transition",
            "tool_span",
            "llm_call",
            "state_transition",
        ]
        assert {(e["success"], e["error_type"]) for e in events[1:3]} == {(False, ABANDONED)}
        assert events[3]["to_state"] == "succeeded"
        check_chain(events)

    def test_explicit_parents_by_span_and_by_id(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        with rec.task("parents") as task:
            a = task.start_tool("a")
            b = task.start_tool("b", parent=a)
            c = task.start_tool("c", parent="00f067aa0ba902b7")
            with task.tool("d", parent=b) as d:
                with task.tool("e") as e:
                    pass
            for s in (c, b, a):
                s.end()
        events = self.read_events(rec, expected=7)
        parent = {x["tool"]: x["parent_span_id"] for x in events if x.get("tool")}
        assert parent == {
            "a": task.root_span_id,
            "b": a.span_id,
            "c": "00f067aa0ba902b7",
            "d": b.span_id,
            "e": d.span_id,
        }
        assert e.parent_span_id == d.span_id

    def test_tool_spans_record_the_tool_call_id_the_model_gave(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        asked = [{"id": "call_1", "name": "a"}, {"id": "toolu_2", "name": "b"}]
        with rec.task("calls") as task:
            with task.llm_call(model="m", messages=[]) as call:
                call.respond(None, tool_calls=asked)
            late = task.start_tool("b", tool_call_id="toolu_2", parent=call)
            with task.tool("a", tool_call_id="call_1"):
                pass
            late.end("ok")  # ended after a later span, from the start/end form
            with task.tool("c"):
                pass
        events = self.read_events(rec, expected=6)
        spans = {e["tool"]: e for e in events if e["event_type"] == "tool_span"}
        assert {t: e["tool_call_id"] for t, e in spans.items()} == {
            "a": "call_1",
            "b": "toolu_2",
            "c": None,
        }
        assert spans["b"]["parent_span_id"] == call.span_id
        (llm,) = (e for e in events if e["event_type"] == "llm_call")
        asked_ids = [c["id"] for c in json.loads(llm["tool_calls_json"])]
        assert asked_ids == [spans["a"]["tool_call_id"], spans["b"]["tool_call_id"]]

    def test_a_task_joins_a_w3c_trace(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        with rec.task("joined", traceparent=header) as task:
            with task.tool("t") as span:
                pass
        assert task.traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        assert span.traceparent == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{span.span_id}-01"
        events = self.read_events(rec, expected=3)
        assert {e["trace_id"] for e in events} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
        roots = [e for e in events if e["event_type"] == "state_transition"]
        assert {e["parent_span_id"] for e in roots} == {"00f067aa0ba902b7"}
        with pytest.raises(ValueError, match="not a W3C traceparent"):
            rec.task("bad", traceparent="00-xyz-01")

    # --- hard stops -----------------------------------------------------------------

    def test_a_stop_cannot_be_swallowed_and_is_recorded_once(self, tmp_path: Path) -> None:
        stops: list[tuple[str, str]] = []
        rec = self.make_recorder(tmp_path)
        swallowed = 0
        attempts = 0
        with rec.task(
            "swallowing",
            limits=Limits(max_steps=1),
            on_stop=lambda t, err: stops.append((t.task_id, type(err).__name__)),
        ) as task:
            for _ in range(4):
                attempts += 1
                try:
                    with task.llm_call(model="m", messages=[]) as call:
                        call.respond("x")
                except Exception:  # an agent framework's catch-all
                    swallowed += 1
                except LimitExceeded:
                    pass  # a framework that also catches BaseException keeps getting it
            with pytest.raises(TaskStopped):
                task.start_tool("after_stop")
            with pytest.raises(TaskStopped):
                task.transition("running")
            with pytest.raises(TaskStopped):
                task.agent_message(sender="a", recipient="b", contract="c", version="1", payload={})
            task.end("succeeded")  # ignored: the task already ended at the stop
        assert swallowed == 0, "except Exception does not catch a hard stop"
        assert stops == [(task.task_id, "LimitExceeded")], "on_stop runs once"
        events = sorted(self.read_events(rec, expected=4), key=lambda e: e["seq"])
        terminal = [e["to_state"] for e in events if e["event_type"] == "state_transition"]
        assert terminal == ["started", "limit_exceeded"]
        assert sum(e["event_type"] == "llm_call" for e in events) == 1

    def test_on_stop_can_cancel_the_running_asyncio_task(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path)
        after_cancel: list[str] = []

        async def agent() -> None:
            with rec.task("budget", limits=Limits(max_tokens=10), on_stop=cancel_on_stop()) as t:
                with t.llm_call(model="m", messages=[]) as call:
                    call.respond("big", input_tokens=50)
                # The stop happened as the call ended; the hook cancels this coroutine
                # at its next await, even if a framework swallowed everything else.
                await asyncio.sleep(3600)
                after_cancel.append("never")

        with pytest.raises(asyncio.CancelledError):
            asyncio.run(agent())
        assert after_cancel == []
        events = sorted(self.read_events(rec, expected=4), key=lambda e: e["seq"])
        assert [e.get("kind") or e.get("to_state") for e in events[2:]] == [
            "limit_exceeded",
            "limit_exceeded",
        ]


def rec_task_tool(rec: Recorder, name: str) -> Any:
    """The tool span of the current task (for coroutines that only see the recorder)."""
    task = current_task.get()
    assert task is not None
    return task.tool(name)


class RecorderBehaviour(ExecutionStyles):
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
        with rec.task("invoice_generation") as task:
            approve = CallbackPolicy(lambda request: True, name="test")
            task.confirm("notify_finance", {"invoice_id": "inv_1", "amount": 12.5}, policy=approve)
            assert notify_finance("inv_1", amount=12.5) == {"sent": True}
        events = self.read_events(rec, expected=5)  # + confirmation requested, granted
        (span_ev,) = [e for e in events if e["event_type"] == "tool_span"]
        assert span_ev["tool"] == "notify_finance" and span_ev["side_effect"] == "irreversible"
        assert json.loads(span_ev["args_json"]) == {"invoice_id": "inv_1", "amount": 12.5}

    def test_sensitive_arguments_never_leave_the_process(self, tmp_path: Path) -> None:
        rec = self.make_recorder(tmp_path, redaction_key="k" * 32)
        args = {"user": "ann", "credentials": {"password": "hunter2", "api_key": "sk-123"}}
        with rec.task("login") as task, task.tool("login", args=args):
            pass
        events = self.read_events(rec, expected=4)
        (span_ev,) = [e for e in events if e["event_type"] == "tool_span"]
        (guard_ev,) = [e for e in events if e["event_type"] == "guard_event"]
        assert guard_ev["kind"] == "redaction_applied" and "hunter2" not in json.dumps(
            guard_ev, default=str
        )
        assert "hunter2" not in span_ev["args_json"] and "sk-123" not in span_ev["args_json"]
        assert sorted(span_ev["redactions"]) == [
            "$.credentials.api_key",
            "$.credentials.password",
        ]
        # The hash of redacted arguments is keyed (HMAC-SHA256 under the redaction key): a
        # plain SHA-256 of a short secret could be reversed by hashing candidates.
        original = json.dumps(args, sort_keys=True, separators=(",", ":"))
        keyed = hmac.new(b"k" * 32, original.encode(), hashlib.sha256).hexdigest()
        assert span_ev["args_hash"] == keyed
        assert args["credentials"]["password"] == "hunter2", "the caller's object is untouched"
