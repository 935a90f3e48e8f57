"""One OTLP export request → events acknowledged by the broker → an OTLP answer.

The order of work is what makes the answers true:

1. authenticate (401/403 before anything is decoded),
2. decode the whole body (400 with the reason when it is not OTLP; nothing written),
3. validate each span or record on its own (rejected ones are counted in
   ``partial_success`` with their reasons; the rest are kept),
4. under one lock: map, number and seal the events, produce them and wait for the
   broker's acknowledgement, then commit the receiver's state — only then answer 200.

When the broker does not acknowledge, the state is not committed and the answer is
503 with ``Retry-After``: the client's retry produces identical events. When more
requests wait for the lock than ``max_waiting`` the answer is 429 with
``Retry-After``: the request was not read into events at all.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from agenttrail.events import SchemaRegistry, default_registry
from agenttrail.otlp._auth import Authenticator
from agenttrail.otlp._mapper import EventMapper
from agenttrail.otlp._otel import Converted, OtelLog, OtelSpan, convert_logs, convert_traces
from agenttrail.otlp._sink import KafkaSink, MemorySink, SinkUnavailable
from agenttrail.otlp._state import ReceiverState
from agenttrail.otlp._wire import (
    BadRequest,
    Encoding,
    decompress,
    encoding_of,
    logs_response,
    parse_logs,
    parse_traces,
    serialize,
    trace_response,
)

log = logging.getLogger("agenttrail.otlp")

Signal = Literal["traces", "logs"]
MAX_REASONS = 5


class Busy(Exception):
    """Too many requests are waiting; answered with 429 and ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(Exception):
    """The broker or the state store did not take the events; answered with 503."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Outcome:
    """What one request did: items accepted, rejected (with reasons), events produced."""

    accepted: int
    rejected: int
    reasons: tuple[str, ...]
    events: int
    body: bytes

    @property
    def message(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class IngestCounters:
    requests: int = 0
    spans: int = 0
    logs: int = 0
    rejected: int = 0
    events: int = 0
    refused_busy: int = 0
    refused_unavailable: int = 0
    bad_requests: int = 0


class OtlpIngestor:
    """Turns OTLP export requests into agenttrail events. Thread-safe.

    Args:
        sink: where events go (:class:`KafkaSink` in production).
        state: the receiver's durable memory.
        auth: token and client certificate → tenant mappings; neither means trust
            (loopback only).
        registry: the schemas to write with.
        max_body_bytes: largest body accepted once inflated.
        max_waiting: requests allowed to wait for the produce lock before 429.
        log_join_window_s: how long a log record waits for its span before it is kept
            on its own (see :meth:`sweep`).
    """

    def __init__(
        self,
        sink: KafkaSink | MemorySink,
        state: ReceiverState,
        *,
        auth: Authenticator | None = None,
        registry: SchemaRegistry | None = None,
        max_body_bytes: int = 64 * 1024 * 1024,
        max_waiting: int = 8,
        log_join_window_s: float = 600.0,
    ):
        self.sink = sink
        self.state = state
        self.auth = auth or Authenticator()
        self.mapper = EventMapper(state, registry or default_registry())
        self.max_body_bytes = max_body_bytes
        self.log_join_window_s = log_join_window_s
        self.counters = IngestCounters()
        self._lock = threading.Lock()
        self.max_waiting = max_waiting
        self._slots = threading.BoundedSemaphore(max_waiting)
        self._failing_until = 0.0

    def handle(
        self,
        signal: Signal,
        body: bytes,
        *,
        content_type: str | None,
        content_encoding: str | None = None,
        authorization: str | None = None,
        peer_identities: tuple[str, ...] = (),
    ) -> tuple[Outcome, Encoding]:
        """Ingest one request.

        ``peer_identities`` are the verified client certificate's identities (mutual
        TLS), empty without one.

        Raises:
            AuthError: 401/403, nothing decoded or written.
            BadRequest: 400/415, nothing written.
            Busy: 429, nothing written.
            Unavailable: 503, nothing committed (a retry writes identical events).
        """
        granted = self.auth.tenant_of(authorization, peer_identities)
        encoding = encoding_of(content_type)
        if time.monotonic() < self._failing_until:
            self.counters.refused_unavailable += 1
            raise Unavailable("the broker failed moments ago; retry shortly", 2)
        if not self._slots.acquire(blocking=False):
            self.counters.refused_busy += 1
            raise Busy(f"{self.max_waiting} requests are already waiting", 1)
        try:
            try:
                payload = decompress(body, content_encoding, self.max_body_bytes)
                if signal == "traces":
                    converted = convert_traces(parse_traces(payload, encoding))
                else:
                    converted = convert_logs(parse_logs(payload, encoding))
            except BadRequest:
                self.counters.bad_requests += 1
                raise
            tenants = self._tenants(granted, converted)
            outcome = self._produce(signal, converted, tenants, encoding)
        finally:
            self._slots.release()
        return outcome, encoding

    def _tenants(self, granted: str | None, converted: Converted) -> dict[int, str]:
        """Tenant per distinct resource (by identity); raises WrongTenant before any write."""
        resources: dict[int, dict[str, Any]] = {}
        for span in converted.spans:
            resources.setdefault(id(span.resource), span.resource)
        for record in converted.logs:
            resources.setdefault(id(record.resource), record.resource)
        keys = list(resources)
        tenants = self.auth.resolve(granted, [resources[k] for k in keys])
        return dict(zip(keys, tenants, strict=True))

    def _produce(
        self, signal: Signal, converted: Converted, tenants: dict[int, str], encoding: Encoding
    ) -> Outcome:
        by_tenant_spans: dict[str, list[OtelSpan]] = {}
        for span in converted.spans:
            by_tenant_spans.setdefault(tenants[id(span.resource)], []).append(span)
        by_tenant_logs: dict[str, list[OtelLog]] = {}
        for record in converted.logs:
            by_tenant_logs.setdefault(tenants[id(record.resource)], []).append(record)
        with self._lock:
            txn = self.state.begin()
            events = []
            for tenant, spans in by_tenant_spans.items():
                events.extend(self.mapper.map_spans(txn, tenant, spans))
            for tenant, logs in by_tenant_logs.items():
                events.extend(self.mapper.map_logs(txn, tenant, logs))
            try:
                self.sink.produce(events)
            except SinkUnavailable as exc:
                self._failing_until = time.monotonic() + 1.0
                self.counters.refused_unavailable += 1
                log.warning("OTLP %s request refused with 503: %s", signal, exc)
                raise Unavailable(str(exc), 2) from exc
            try:
                self.state.commit(txn)
            except sqlite3.Error as exc:
                self.counters.refused_unavailable += 1
                log.error("OTLP receiver cannot store its state %s: %s", self.state.path, exc)
                raise Unavailable(f"the receiver cannot store its state: {exc}", 5) from exc
        accepted = len(converted.spans) + len(converted.logs)
        c = self.counters
        c.requests += 1
        c.spans += len(converted.spans)
        c.logs += len(converted.logs)
        c.rejected += len(converted.rejected)
        c.events += len(events)
        reasons = tuple(converted.rejected[:MAX_REASONS])
        if len(converted.rejected) > MAX_REASONS:
            reasons += (f"and {len(converted.rejected) - MAX_REASONS} more",)
        message = "; ".join(reasons)
        rejected = len(converted.rejected)
        response = (
            trace_response(rejected, message)
            if signal == "traces"
            else logs_response(rejected, message)
        )
        return Outcome(accepted, rejected, reasons, len(events), serialize(response, encoding))

    def sweep(self) -> int:
        """Keep log records whose span has not come within the join window; returns how many.

        Each becomes an ``otlp.log`` event of its trace's task. Called periodically by
        the server; safe to call at any time.
        """
        with self._lock:
            expired = self.state.expired_logs(self.log_join_window_s)
            if not expired:
                return 0
            txn = self.state.begin()
            events = []
            for rowid, tenant, record in expired:
                known = self.state.trace(txn, tenant, record.trace_id)
                events.extend(self.mapper.kept_log(txn, tenant, record, known))
                txn.take_logs.append(rowid)
            try:
                self.sink.produce(events)
            except SinkUnavailable as exc:
                log.warning("OTLP: expired log records stay pending (%s)", exc)
                return 0
            self.state.commit(txn)
            return len(expired)
