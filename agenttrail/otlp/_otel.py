"""OTLP spans and log records as plain Python values, checked one by one.

Each span or log record of a request is converted on its own: one that breaks the
OTLP data model (an id of the wrong length, an end before its start) is rejected with
its reason and counted in ``partial_success``; the others are kept.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agenttrail.otlp._wire import hex_id

Attributes = dict[str, Any]

STATUS_ERROR = 2
"""``Status.code`` of a failed span (STATUS_CODE_ERROR)."""


@dataclass(frozen=True)
class OtelEvent:
    """A span event: name, time (ns since the epoch) and attributes."""

    name: str
    time_ns: int
    attributes: Attributes


@dataclass(frozen=True)
class OtelSpan:
    """One span with its resource and scope, ids as lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: Attributes
    resource: Attributes
    scope: str
    events: tuple[OtelEvent, ...] = ()
    status_code: int = 0
    status_message: str = ""

    @property
    def failed(self) -> bool:
        return self.status_code == STATUS_ERROR

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    def attr(self, key: str, default: Any = None) -> Any:
        """A span attribute, else a resource attribute, else ``default``."""
        value = self.attributes.get(key)
        if value is None:
            value = self.resource.get(key, default)
        return value


@dataclass(frozen=True)
class OtelLog:
    """One log record (an OTel event when ``event_name`` is set), linked to a span."""

    trace_id: str
    span_id: str
    time_ns: int
    event_name: str
    body: Any
    attributes: Attributes
    resource: Attributes
    scope: str
    severity: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Converted:
    """What a request yielded: the valid items and a reason per rejected one."""

    spans: list[OtelSpan] = field(default_factory=list)
    logs: list[OtelLog] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def any_value(value: AnyValue) -> Any:
    """A Python value of an OTLP ``AnyValue`` (bytes as base64 text)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def attributes(kvs: Any) -> Attributes:
    """A dict of OTLP key-values (a later duplicate key wins)."""
    return {kv.key: any_value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


def _check_ids(trace: bytes, span: bytes, what: str, span_required: bool) -> str | None:
    if len(trace) != 16 or not any(trace):
        return f"{what}: trace_id must be 16 bytes and not all zero (got {len(trace)} bytes)"
    if span_required and (len(span) != 8 or not any(span)):
        return f"{what}: span_id must be 8 bytes and not all zero (got {len(span)} bytes)"
    if not span_required and span and len(span) != 8:
        return f"{what}: span_id must be 8 bytes when set (got {len(span)} bytes)"
    return None


def convert_traces(request: ExportTraceServiceRequest) -> Converted:
    """Every span of a trace export, each validated on its own."""
    out = Converted()
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for sp in ss.spans:
                label = f"span {sp.name!r} ({hex_id(sp.span_id) or 'no id'})"
                problem = _check_ids(sp.trace_id, sp.span_id, label, span_required=True)
                if problem is None and sp.parent_span_id and len(sp.parent_span_id) != 8:
                    problem = f"{label}: parent_span_id must be 8 bytes when set"
                if problem is None and sp.end_time_unix_nano < sp.start_time_unix_nano:
                    problem = f"{label}: end_time_unix_nano is before start_time_unix_nano"
                if problem is None and sp.start_time_unix_nano == 0:
                    problem = f"{label}: start_time_unix_nano is not set"
                if problem is not None:
                    out.rejected.append(problem)
                    continue
                out.spans.append(
                    OtelSpan(
                        trace_id=hex_id(sp.trace_id),
                        span_id=hex_id(sp.span_id),
                        parent_span_id=hex_id(sp.parent_span_id) or None,
                        name=sp.name,
                        kind=int(sp.kind),
                        start_ns=int(sp.start_time_unix_nano),
                        end_ns=int(sp.end_time_unix_nano),
                        attributes=attributes(sp.attributes),
                        resource=resource,
                        scope=scope,
                        events=tuple(
                            OtelEvent(e.name, int(e.time_unix_nano), attributes(e.attributes))
                            for e in sp.events
                        ),
                        status_code=int(sp.status.code),
                        status_message=sp.status.message,
                    )
                )
    return out


def convert_logs(request: ExportLogsServiceRequest) -> Converted:
    """Every log record of a logs export, each validated on its own.

    A record without a trace id belongs to no task; it is rejected with that reason.
    """
    out = Converted()
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for lr in sl.log_records:
                attrs = attributes(lr.attributes)
                name = lr.event_name or str(attrs.get("event.name") or "")
                label = f"log record {name or lr.severity_text or 'unnamed'!r}"
                if not lr.trace_id:
                    out.rejected.append(
                        f"{label}: has no trace_id, so it belongs to no task; emit it inside a span"
                    )
                    continue
                problem = _check_ids(lr.trace_id, lr.span_id, label, span_required=False)
                if problem is not None:
                    out.rejected.append(problem)
                    continue
                out.logs.append(
                    OtelLog(
                        trace_id=hex_id(lr.trace_id),
                        span_id=hex_id(lr.span_id),
                        time_ns=int(lr.time_unix_nano or lr.observed_time_unix_nano),
                        event_name=name,
                        body=any_value(lr.body),
                        attributes=attrs,
                        resource=resource,
                        scope=scope,
                        severity=lr.severity_text,
                    )
                )
    return out
