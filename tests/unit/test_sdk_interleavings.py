"""Hypothesis-generated interleavings of span starts and ends across tasks and threads.

Each generated program has a few tasks and a few worker threads; every thread runs its
own list of operations (start a span under a parent it picks — the root, or a span
already started — or end one of the open spans), all threads at once against shared
tasks. What must hold whatever the interleaving: every span is recorded exactly once,
with the parent it was given; each task's ``seq`` is gapless; the hash chain follows
``seq``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail.producer import Recorder, Span, Task
from agenttrail.producer.testing import InMemoryExporter
from tests.sdk_behaviour import check_chain

# One operation: ("start", task index, parent choice, llm?) or ("end", pick).
op = st.one_of(
    st.tuples(st.just("start"), st.integers(0, 2), st.integers(-1, 5), st.booleans()),
    st.tuples(st.just("end"), st.integers(0, 10), st.just(0), st.just(False)),
)
programs = st.lists(st.lists(op, max_size=12), min_size=1, max_size=4)


def _run_thread(
    tasks: list[Task],
    ops: list[tuple[str, int, int, bool]],
    started: list[Span],
    given_parent: dict[str, str],
    lock: threading.Lock,
    barrier: threading.Barrier,
) -> None:
    mine: list[Span] = []
    barrier.wait()
    for kind, a, b, llm in ops:
        if kind == "start":
            task = tasks[a % len(tasks)]
            with lock:
                candidates = [s for s in started if s.task is task]
            parent: Any = candidates[b % len(candidates)] if b >= 0 and candidates else None
            if llm:
                span: Span = task.start_llm_call("m", [], parent=parent)
            else:
                span = task.start_tool("t", {"n": len(mine)}, parent=parent)
            expected = parent.span_id if parent is not None else task.root_span_id
            with lock:
                started.append(span)
                given_parent[span.span_id] = expected
            mine.append(span)
        elif mine:
            span = mine.pop(a % len(mine))
            span.end()  # ending another thread's span is covered by the task's end


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
def test_any_interleaving_records_every_span_once_with_its_parent(
    program: list[list[tuple[str, int, int, bool]]], tmp_path: Path
) -> None:
    exporter = InMemoryExporter()
    rec = Recorder(exporter=exporter, spool_dir=tmp_path / "spool")
    tasks = [rec.task("interleaved", task_id=f"i{n}") for n in range(3)]
    for t in tasks:
        t.start()
    started: list[Span] = []
    given_parent: dict[str, str] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(len(program))
    threads = [
        threading.Thread(
            target=_run_thread, args=(tasks, ops, started, given_parent, lock, barrier)
        )
        for ops in program
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in tasks:
        t.end()  # spans still open are recorded abandoned
    assert rec.close(timeout=30).complete
    events = exporter.events()
    spans = [e for e in events if e["event_type"] in ("tool_span", "llm_call")]
    assert sorted(e["span_id"] for e in spans) == sorted(given_parent), "each span once"
    assert {e["span_id"]: e["parent_span_id"] for e in spans} == given_parent
    for t in tasks:
        seqs = [e["seq"] for e in events if e["task_id"] == t.task_id]
        assert seqs == list(range(len(seqs))), "seq gapless and in delivery order"
        steps = sorted(e["step"] for e in events if e["task_id"] == t.task_id and "model" in e)
        assert steps == list(range(1, len(steps) + 1)), "each LLM call its own step"
    check_chain(events)
