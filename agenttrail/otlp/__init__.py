"""OTLP/HTTP receiver: OpenTelemetry GenAI spans and log events → agenttrail events.

Apps instrumented with the official OpenTelemetry GenAI instrumentations, OpenInference
or OpenLLMetry send to it by changing one endpoint; their spans become the same events
the SDK writes, on the same topic, sealed the same way, so runs, metrics, replay,
queries and verify work for them unchanged. Imports only ``agenttrail.events`` of
agenttrail (never the consumers or the store).

Example:
    >>> state = ReceiverState(Path("otlp-state.db"))                # doctest: +SKIP
    >>> ingestor = OtlpIngestor(KafkaSink("127.0.0.1:9092"), state)
    >>> server = OtlpHttpServer(ingestor, port=4318).start()
    >>> # export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
"""

from agenttrail.otlp._auth import (
    TENANT_ATTRIBUTE,
    Authenticator,
    AuthError,
    Unauthenticated,
    WrongTenant,
    load_tokens,
)
from agenttrail.otlp._dialects import LlmFacts, Reading, ToolFacts, read_span
from agenttrail.otlp._ingest import Busy, IngestCounters, OtlpIngestor, Outcome, Unavailable
from agenttrail.otlp._mapper import EventMapper, task_identity
from agenttrail.otlp._otel import OtelLog, OtelSpan, convert_logs, convert_traces
from agenttrail.otlp._server import DEFAULT_PORT, LOOPBACK, OtlpHttpServer
from agenttrail.otlp._sink import KafkaSink, MemorySink, SinkUnavailable
from agenttrail.otlp._state import ReceiverState
from agenttrail.otlp._tls import cert_identities, load_identities, server_context
from agenttrail.otlp._wire import BadRequest, UnsupportedMediaType

__all__ = [
    "DEFAULT_PORT",
    "LOOPBACK",
    "TENANT_ATTRIBUTE",
    "AuthError",
    "Authenticator",
    "BadRequest",
    "Busy",
    "EventMapper",
    "IngestCounters",
    "KafkaSink",
    "LlmFacts",
    "MemorySink",
    "OtelLog",
    "OtelSpan",
    "OtlpHttpServer",
    "OtlpIngestor",
    "Outcome",
    "Reading",
    "ReceiverState",
    "SinkUnavailable",
    "ToolFacts",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "WrongTenant",
    "cert_identities",
    "convert_logs",
    "convert_traces",
    "load_identities",
    "load_tokens",
    "read_span",
    "server_context",
    "task_identity",
]
