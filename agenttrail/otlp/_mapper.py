"""Spans and log records → agenttrail events, numbered, chained and sealed.

A trace becomes a task:

* **task id** — the attribute ``agenttrail.task.id`` (span or resource) of the first
  span seen, else ``otel-<trace id>``;
* **task type** — ``agenttrail.task.type``, else ``traceloop.workflow.name``, else
  ``gen_ai.agent.name``, else the resource's ``service.name``, else ``otlp``;
* **agent** — ``service.name`` / ``service.version`` of the resource.

The first span seen of a trace records the ``started`` transition (its boundary's
entry names the trace, the service and ``gen_ai.conversation.id``); the root span
(no parent) records the terminal one — ``succeeded``, or ``failed`` with the span's
status message — after its own event. LLM spans become ``llm_call`` events (one step
each), tool spans ``tool_span`` events. Every other span — agent, chain, workflow,
HTTP, anything no dialect claims — is **kept** as an ``agent_message`` with contract
``otlp.span`` whose payload is the whole span (name, kind, scope, attributes, events,
status), so nothing is dropped. Log records whose span was already recorded, or whose
span never came, are kept the same way (contract ``otlp.log``).

Spans of one request are ordered by start time per trace before they are numbered;
spans arriving in later requests follow in arrival order. A span id already recorded
is skipped (an exporter's resend). Event ids are derived from (tenant, trace, span,
role) and timestamps from the span, so a retried request yields identical events.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from agenttrail.events import SchemaEntry, SchemaRegistry, seal
from agenttrail.otlp._dialects import (
    LlmFacts,
    Reading,
    ToolFacts,
    messages_from_log_events,
    read_span,
    to_json,
)
from agenttrail.otlp._otel import OtelLog, OtelSpan
from agenttrail.otlp._state import ReceiverState, StateTxn, TraceState

TERMINAL_OK = "succeeded"
TERMINAL_FAILED = "failed"
_SUMMARY_CHARS = 2000
_CONTENT_KEYS = frozenset(
    {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
     "input.value", "output.value"}
)  # fmt: skip
_CONTENT_PREFIXES = (
    "gen_ai.prompt.", "gen_ai.completion.", "llm.input_messages.", "llm.output_messages.",
)  # fmt: skip
_DETAIL_CHARS = 4000


def event_id(tenant: str, trace_id: str, span_id: str, role: str, ts_us: int) -> str:
    """A UUIDv7 whose time is ``ts_us`` and whose other bits are a hash of the event's origin."""
    digest = hashlib.sha256(f"{tenant}\x00{trace_id}\x00{span_id}\x00{role}".encode()).digest()
    ms = max(0, ts_us // 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(digest[:10], "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def _attr(span: OtelSpan, *keys: str) -> str | None:
    for key in keys:
        value = span.attr(key)
        if value is not None and value != "":
            return str(value)
    return None


def task_identity(span: OtelSpan) -> tuple[str, str, str, str]:
    """(task id, task type, agent name, agent version) of the trace a span belongs to."""
    task_id = _attr(span, "agenttrail.task.id", "agenttrail.task_id") or f"otel-{span.trace_id}"
    task_type = (
        _attr(
            span,
            "agenttrail.task.type",
            "agenttrail.task_type",
            "traceloop.workflow.name",
            "gen_ai.agent.name",
            "service.name",
        )
        or "otlp"
    )
    agent = str(span.resource.get("service.name") or "otlp")
    version = str(span.resource.get("service.version") or "")
    return task_id, task_type, agent, version


class EventMapper:
    """Turns one request's spans or log records into sealed, framed events.

    Args:
        state: the receiver's durable memory (read here, written by the caller's commit).
        registry: the schemas; events are written with the newest of each family.
        producer_id: written into every event.
    """

    def __init__(self, state: ReceiverState, registry: SchemaRegistry):
        self.state = state
        self.registry = registry
        self._entries: dict[str, SchemaEntry] = {
            t: registry.latest(t) for t in registry.event_types
        }
        self._shapes = {t: record_shape(e) for t, e in self._entries.items()}

    # -- entry points ----------------------------------------------------------------

    def map_spans(
        self, txn: StateTxn, tenant: str, spans: list[OtelSpan]
    ) -> list[tuple[str, bytes]]:
        """Events of ``spans`` as (key, framed bytes), in the order they must be produced."""
        by_trace: dict[str, list[OtelSpan]] = {}
        for span in spans:
            by_trace.setdefault(span.trace_id, []).append(span)
        out: list[tuple[str, bytes]] = []
        for trace_id, group in by_trace.items():
            group.sort(key=lambda s: (s.start_ns, s.parent_span_id is not None, s.end_ns))
            roots: list[OtelSpan] = []
            for span in group:
                if self.state.span_seen(txn, tenant, trace_id, span.span_id):
                    continue
                txn.spans.add((tenant, trace_id, span.span_id))
                out.extend(self._span_events(txn, tenant, span))
                if span.parent_span_id is None:
                    roots.append(span)
            # The task ends after everything of it this request carried.
            out.extend(self._terminal(txn, tenant, root) for root in roots)
        return out

    def map_logs(self, txn: StateTxn, tenant: str, logs: list[OtelLog]) -> list[tuple[str, bytes]]:
        """Log records: staged to wait for their span, or kept as events when it was recorded."""
        out: list[tuple[str, bytes]] = []
        for log in logs:
            known = self.state.trace(txn, tenant, log.trace_id)
            if log.span_id and not self.state.span_seen(txn, tenant, log.trace_id, log.span_id):
                txn.add_logs.append((tenant, log))
                continue
            out.extend(self.kept_log(txn, tenant, log, known))
        return out

    def kept_log(
        self, txn: StateTxn, tenant: str, log: OtelLog, known: TraceState | None
    ) -> list[tuple[str, bytes]]:
        """A log record kept as an ``otlp.log`` agent message of its trace's task."""
        state = known or self._new_state_from_log(log)
        if known is None:
            self.state.put_trace(txn, tenant, log.trace_id, state)
        ts = log.time_ns // 1000
        payload = to_json(
            {
                "event_name": log.event_name,
                "body": log.body,
                "attributes": log.attributes,
                "scope": log.scope,
                "severity": log.severity,
                "time_unix_nano": log.time_ns,
            }
        )
        role = f"log:{log.time_ns}:{hashlib.sha256(payload.encode()).hexdigest()[:16]}"
        record = self._message(
            log.span_id or "0" * 16, None, "otlp.log", log.event_name or "log", payload
        )
        events: list[tuple[str, bytes]] = []
        if known is None:
            events.append(self._started(txn, tenant, log.trace_id, state, ts, log.resource, {}))
        events.append(self._emit(txn, tenant, log.trace_id, role, ts, record))
        return events

    # -- per span --------------------------------------------------------------------

    def _span_events(self, txn: StateTxn, tenant: str, span: OtelSpan) -> list[tuple[str, bytes]]:
        events: list[tuple[str, bytes]] = []
        state = self.state.trace(txn, tenant, span.trace_id)
        ts = span.start_ns // 1000
        if state is None:
            task_id, task_type, agent, version = task_identity(span)
            state = TraceState(task_id, task_type, agent, version)
            self.state.put_trace(txn, tenant, span.trace_id, state)
            events.append(
                self._started(txn, tenant, span.trace_id, state, ts, span.resource, span.attributes)
            )
        reading = read_span(span)
        if reading.kind == "llm" and reading.llm is not None:
            logs = self.state.pending_logs(txn, tenant, span.trace_id, span.span_id)
            if logs:
                messages_from_log_events(reading.llm, logs)
            events.append(self._llm(txn, tenant, span, reading.llm))
        elif reading.kind == "tool" and reading.tool is not None:
            events.append(self._tool(txn, tenant, span, reading.tool))
        else:
            for log in self.state.pending_logs(txn, tenant, span.trace_id, span.span_id):
                events.extend(self.kept_log(txn, tenant, log, self._current(txn, tenant, span)))
            events.append(self._kept_span(txn, tenant, span, reading))
        return events

    def _current(self, txn: StateTxn, tenant: str, span: OtelSpan) -> TraceState | None:
        return self.state.trace(txn, tenant, span.trace_id)

    def _new_state_from_log(self, log: OtelLog) -> TraceState:
        res = log.resource
        task_type = str(
            log.attributes.get("agenttrail.task.type")
            or res.get("agenttrail.task.type")
            or res.get("service.name")
            or "otlp"
        )
        task_id = str(
            log.attributes.get("agenttrail.task.id")
            or res.get("agenttrail.task.id")
            or f"otel-{log.trace_id}"
        )
        return TraceState(
            task_id,
            task_type,
            str(res.get("service.name") or "otlp"),
            str(res.get("service.version") or ""),
        )

    def _started(
        self,
        txn: StateTxn,
        tenant: str,
        trace_id: str,
        state: TraceState,
        ts: int,
        resource: dict[str, Any],
        attrs: dict[str, Any],
    ) -> tuple[str, bytes]:
        entry = {
            "otlp": {
                "trace_id": trace_id,
                "service": resource.get("service.name"),
                "conversation_id": attrs.get("gen_ai.conversation.id"),
            }
        }
        record: dict[str, Any] = {
            "event_type": "state_transition",
            "span_id": "0" * 16,
            "parent_span_id": None,
            "from_state": None,
            "to_state": "started",
            "reason": "first span received over OTLP",
            "error_type": None,
            "error_detail": None,
            "boundary": {
                "entry_json": to_json(entry),
                "exit_condition": None,
                "max_tokens": None,
                "max_steps": None,
                "max_wall_clock_s": None,
                "max_spend_usd": None,
                "side_effect_budget": [],
                "escalation_path": None,
                "declared_tools": [],
            },
        }
        return self._emit(txn, tenant, trace_id, "started", ts, record)

    def _terminal(self, txn: StateTxn, tenant: str, span: OtelSpan) -> tuple[str, bytes]:
        failed = span.failed
        state = self.state.trace(txn, tenant, span.trace_id)
        record: dict[str, Any] = {
            "event_type": "state_transition",
            "span_id": span.span_id,
            "parent_span_id": None,
            "from_state": "started",
            "to_state": TERMINAL_FAILED if failed else TERMINAL_OK,
            "reason": "root span ended" + (" with an error" if failed else ""),
            "error_type": (str(span.attributes.get("error.type") or "Error") if failed else None),
            "error_detail": (span.status_message[:_DETAIL_CHARS] or None) if failed else None,
            "boundary": None,
        }
        event = self._emit(txn, tenant, span.trace_id, "terminal", span.end_ns // 1000, record)
        if state is not None:
            current = self.state.trace(txn, tenant, span.trace_id)
            assert current is not None
            self.state.put_trace(txn, tenant, span.trace_id, replace(current, terminal=True))
        return event

    def _llm(self, txn: StateTxn, tenant: str, span: OtelSpan, f: LlmFacts) -> tuple[str, bytes]:
        state = self.state.trace(txn, tenant, span.trace_id)
        assert state is not None
        self.state.put_trace(txn, tenant, span.trace_id, replace(state, step=state.step + 1))
        messages_json = (
            f.messages_json if f.messages_json is not None else to_json(f.messages or [])
        )
        count = len(f.messages) if f.messages is not None else _count_json_list(messages_json)
        raw: dict[str, Any] = {"dialect": f.dialect, "usage": f.usage}
        # Every other attribute of the span travels along (unknown ones included); the
        # message contents are in their own columns already.
        raw["attributes"] = {
            k: v
            for k, v in span.attributes.items()
            if k not in _CONTENT_KEYS and not k.startswith(_CONTENT_PREFIXES)
        }
        if f.output is not None:
            raw["output"] = f.output
        if f.response_id is not None:
            raw["id"] = f.response_id
        error_type, detail = _span_error(span)
        record: dict[str, Any] = {
            "event_type": "llm_call",
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "provider": f.provider,
            "model": f.model,
            "model_version": None,
            "system_prompt_hash": (
                hashlib.sha256(f.system_prompt.encode()).hexdigest()
                if f.system_prompt is not None
                else None
            ),
            "prompt_version": _attr(span, "agenttrail.prompt.version"),
            "prompt_hash": hashlib.sha256(messages_json.encode()).hexdigest(),
            "messages_json": messages_json,
            "message_count": count,
            "params_json": json_sorted(f.params),
            "response_text": f.response_text,
            "response_json": to_json(raw),
            "tool_calls_json": to_json(f.tool_calls) if f.tool_calls else None,
            "finish_reason": f.finish_reason,
            "input_tokens": f.input_tokens,
            "output_tokens": f.output_tokens,
            "cached_tokens": min(f.cached_tokens, f.input_tokens) if f.input_tokens else 0,
            "context_window": None,
            "cost_usd": f.cost_usd,
            "latency_ms": span.duration_ms,
            "ttft_ms": f.ttft_ms,
            "success": not span.failed,
            "error_type": error_type,
            "error_detail": detail,
            "redactions": [],
        }
        return self._emit(txn, tenant, span.trace_id, "llm", span.start_ns // 1000, record)

    def _tool(self, txn: StateTxn, tenant: str, span: OtelSpan, f: ToolFacts) -> tuple[str, bytes]:
        result = f.result
        summary = (
            None
            if result is None
            else (result if len(result) <= _SUMMARY_CHARS else result[:_SUMMARY_CHARS] + "…")
        )
        error_type, detail = _span_error(span)
        record: dict[str, Any] = {
            "event_type": "tool_span",
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "tool": f.name,
            "tool_version": None,
            "tool_call_id": f.call_id,
            "args_json": f.args_json,
            "args_hash": hashlib.sha256(f.args_json.encode()).hexdigest(),
            "idempotency_key": None,
            "attempt": 1,
            "side_effect": "read",
            "declared": True,
            "result_summary": summary,
            "result_size": len(result.encode()) if result is not None else 0,
            "latency_ms": span.duration_ms,
            "success": not span.failed,
            "error_type": error_type,
            "error_detail": detail,
            "redactions": [],
        }
        return self._emit(txn, tenant, span.trace_id, "tool", span.start_ns // 1000, record)

    def _kept_span(
        self, txn: StateTxn, tenant: str, span: OtelSpan, reading: Reading
    ) -> tuple[str, bytes]:
        payload = to_json(
            {
                "name": span.name,
                "kind": span.kind,
                "scope": span.scope,
                "dialect": reading.dialect,
                "start_time_unix_nano": span.start_ns,
                "end_time_unix_nano": span.end_ns,
                "status": {"code": span.status_code, "message": span.status_message},
                "attributes": span.attributes,
                "events": [
                    {"name": e.name, "time_unix_nano": e.time_ns, "attributes": e.attributes}
                    for e in span.events
                ],
            }
        )
        record = self._message(
            span.span_id, span.parent_span_id, "otlp.span", span.name or "span", payload
        )
        record["sender"] = reading.agent_name or record["sender"]
        return self._emit(txn, tenant, span.trace_id, "span", span.start_ns // 1000, record)

    def _message(
        self, span_id: str, parent: str | None, contract: str, recipient: str, payload: str
    ) -> dict[str, Any]:
        return {
            "event_type": "agent_message",
            "span_id": span_id,
            "parent_span_id": parent,
            "message_id": span_id,
            "in_reply_to": None,
            "sender": "otlp",
            "recipient": recipient,
            "direction": "sent",
            "contract_name": contract,
            "contract_version": "1",
            "payload_json": payload,
            "payload_size": len(payload.encode()),
        }

    # -- numbering and sealing -------------------------------------------------------

    def _emit(
        self, txn: StateTxn, tenant: str, trace_id: str, role: str, ts: int, record: dict[str, Any]
    ) -> tuple[str, bytes]:
        state = self.state.trace(txn, tenant, trace_id)
        assert state is not None, "the trace's state is staged before its first event"
        entry = self._entries[record["event_type"]]
        record.update(
            event_id=event_id(tenant, trace_id, record["span_id"], role, ts),
            schema_version=entry.version,
            tenant=tenant,
            task_id=state.task_id,
            task_type=state.task_type,
            agent_name=state.agent_name,
            agent_version=state.agent_version,
            trace_id=trace_id,
            step=state.step,
            seq=state.next_seq,
            ts=ts,
            producer_id=self.state.producer_id,
            producer_seq=txn.producer_seq,
        )
        complete(self._shapes[record["event_type"]], record)
        framed = seal(entry, record, state.prev_hash)
        txn.producer_seq += 1
        self.state.put_trace(
            txn,
            tenant,
            trace_id,
            replace(state, next_seq=state.next_seq + 1, prev_hash=record["hash"]),
        )
        return state.task_id, framed


RecordShape = tuple[frozenset[str], tuple[tuple[str, Any], ...]]


def record_shape(entry: SchemaEntry) -> RecordShape:
    """The field names of a schema and each field's fill-in value (its default, else null)."""
    fields = entry.parsed["fields"]
    return (
        frozenset(f["name"] for f in fields),
        tuple((f["name"], f.get("default")) for f in fields),
    )


def complete(shape: RecordShape, record: dict[str, Any]) -> None:
    """Give ``record`` exactly the schema's fields: missing ones their default (or null),
    ones the schema does not have (e.g. ``tool_call_id`` when writing tool_span v1) dropped."""
    names, fills = shape
    if len(record) == len(names) and names.issuperset(record):
        return
    for name, fill in fills:
        if name not in record:
            record[name] = fill
    for extra in [k for k in record if k not in names]:
        del record[extra]


def json_sorted(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str, sort_keys=True)


def _count_json_list(text: str) -> int:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return 0
    return len(value) if isinstance(value, list) else 1


def _span_error(span: OtelSpan) -> tuple[str | None, str | None]:
    if not span.failed:
        return None, None
    kind = span.attributes.get("error.type") or span.attributes.get("exception.type")
    for ev in span.events:
        if ev.name == "exception":
            kind = kind or ev.attributes.get("exception.type")
            message = ev.attributes.get("exception.message")
            if message and not span.status_message:
                return str(kind or "Error"), str(message)[:_DETAIL_CHARS]
    return str(kind or "Error"), (span.status_message[:_DETAIL_CHARS] or None)


KeyedEvents = list[tuple[str, bytes]]
Producer = Callable[[KeyedEvents], None]
