"""An OpenAI Agents SDK tracing processor that records each agent run as a task.

``install(recorder)`` adds :class:`AgenttrailTracingProcessor` to the Agents SDK's
trace processors (``replace=True`` makes it the only one, so nothing is sent to
OpenAI's trace endpoint). Each trace (one ``Runner.run``) becomes a task — its id the
trace id, its type ``task_type`` or the trace's workflow name; each generation span
an LLM call (messages, model, tokens incl. cached, tool calls with their ids, finish
reason); each function span a tool span whose ``tool_call_id`` is the id the model gave
that call (matched by tool name and arguments in the preceding generation's output).

The processor is called synchronously by the agent loop. When a generation or tool
span starts it checks the task: a stopped task (a crossed limit, a kill) raises
:class:`~agenttrail.producer.TaskStopped` there — a ``BaseException``, which the Agents
SDK does not swallow — so the model or tool is never called and the run stops. The
span's content is recorded when it ends (the SDK fills it in during the span).

Example:
    >>> install(rec, task_type="triage", limits=Limits(max_steps=8))   # doctest: +SKIP
    >>> result = await Runner.run(agent, "Where is order 7294?")
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from agents.tracing import Span, Trace, TracingProcessor, add_trace_processor, set_trace_processors
from agents.tracing.span_data import FunctionSpanData, GenerationSpanData

from agenttrail.producer import Limits, Recorder, Task


@dataclass
class _Run:
    task: Task
    pending_calls: list[dict[str, Any]] = field(default_factory=list)


class AgenttrailTracingProcessor(TracingProcessor):
    """Records Agents SDK traces into ``recorder``; see the module docstring.

    Args:
        recorder: where the tasks are recorded.
        task_type: type of every task; the trace's workflow name when omitted.
        limits: hard limits of every task.
    """

    def __init__(
        self, recorder: Recorder, task_type: str | None = None, limits: Limits | None = None
    ):
        self.recorder = recorder
        self.task_type = task_type
        self.limits = limits
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def _run(self, trace_id: str) -> _Run | None:
        with self._lock:
            return self._runs.get(trace_id)

    def on_trace_start(self, trace: Trace) -> None:
        task = self.recorder.task(
            self.task_type or trace.name or "openai_agents",
            task_id=trace.trace_id,
            limits=self.limits,
            entry={"workflow": trace.name},
        )
        task.start()
        with self._lock:
            self._runs[trace.trace_id] = _Run(task)

    def on_trace_end(self, trace: Trace) -> None:
        with self._lock:
            run = self._runs.pop(trace.trace_id, None)
        if run is not None and run.task.stopped is None and run.task.state != "failed":
            run.task.end()

    def on_span_start(self, span: Span[Any]) -> None:
        run = self._run(span.trace_id)
        if run is None:
            return
        if isinstance(span.span_data, GenerationSpanData):
            run.task.check_open(new_step=True)
        elif isinstance(span.span_data, FunctionSpanData):
            run.task.check_open()

    def on_span_end(self, span: Span[Any]) -> None:
        run = self._run(span.trace_id)
        if run is None:
            return
        data = span.span_data
        if isinstance(data, GenerationSpanData):
            self._generation(run, span, data)
        elif isinstance(data, FunctionSpanData):
            self._function(run, span, data)

    def _generation(self, run: _Run, span: Span[Any], data: GenerationSpanData) -> None:
        usage = data.usage or {}
        details = usage.get("input_tokens_details") or {}
        output = list(data.output or [])
        message = output[0] if output else {}
        calls = [
            {
                "id": c.get("id"),
                "name": (c.get("function") or {}).get("name"),
                "arguments": (c.get("function") or {}).get("arguments"),
            }
            for c in (message.get("tool_calls") or [])
        ]
        run.pending_calls = list(calls)
        call = run.task.start_llm_call(
            str(data.model or "unknown"),
            list(data.input or []),
            provider="openai",
            params=dict(data.model_config or {}),
        )
        call.respond(
            message.get("content"),
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
            finish_reason="tool_calls" if calls else "stop",
            tool_calls=calls or None,
        )
        call.end(error=_error(span))

    def _function(self, run: _Run, span: Span[Any], data: FunctionSpanData) -> None:
        call_id = None
        for i, pending in enumerate(run.pending_calls):
            if pending["name"] == data.name and pending["arguments"] == data.input:
                call_id = run.pending_calls.pop(i)["id"]
                break
        else:
            for i, pending in enumerate(run.pending_calls):
                if pending["name"] == data.name:
                    call_id = run.pending_calls.pop(i)["id"]
                    break
        try:
            args = json.loads(data.input) if data.input else {}
        except json.JSONDecodeError:
            args = {"input": data.input}
        tool = run.task.start_tool(data.name, args=args, tool_call_id=call_id)
        error = _error(span)
        if error is not None:
            tool.end(error=error)
        else:
            tool.end(data.output)

    def shutdown(self) -> None:
        self.recorder.flush()

    def force_flush(self) -> None:
        self.recorder.flush()


def _error(span: Span[Any]) -> str | None:
    err = span.error
    if not err:
        return None
    return str(err.get("message") or err)


def install(
    recorder: Recorder,
    *,
    task_type: str | None = None,
    limits: Limits | None = None,
    replace: bool = True,
) -> AgenttrailTracingProcessor:
    """Register the processor with the Agents SDK; with ``replace`` it is the only one."""
    processor = AgenttrailTracingProcessor(recorder, task_type, limits)
    if replace:
        set_trace_processors([processor])
    else:
        add_trace_processor(processor)
    return processor
