"""The OTLP receiver without broker or store: bodies, answers, numbering, auth, retries.

Requests are built with the opentelemetry-proto messages; events are decoded from what
the receiver handed to a MemorySink and compared with values the test put in.
"""

from __future__ import annotations

import gzip
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agenttrail.events import EventCodec, canonical_hash, default_registry
from agenttrail.otlp import (
    Authenticator,
    BadRequest,
    Busy,
    MemorySink,
    OtlpHttpServer,
    OtlpIngestor,
    ReceiverState,
    Unauthenticated,
    Unavailable,
    WrongTenant,
)
from tests.deadline import wait_until

PB = "application/x-protobuf"
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
ROOT, LLM, TOOL, OTHER = (bytes([0, 0, 0, 0, 0, 0, 0, n]) for n in (1, 2, 3, 4))
T0 = 1_780_000_000_000_000_000


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list):
        out = AnyValue()
        out.array_value.values.extend(value(x) for x in v)
        return out
    if isinstance(v, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=value(x)) for k, x in v.items())
        return out
    return AnyValue(string_value=str(v))


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in attrs.items()]


def span(
    span_id: bytes,
    parent: bytes | None,
    name: str,
    attrs: dict[str, Any],
    start: int,
    *,
    trace: bytes = TRACE,
    error: str | None = None,
) -> Span:
    s = Span(
        trace_id=trace,
        span_id=span_id,
        parent_span_id=parent or b"",
        name=name,
        start_time_unix_nano=T0 + start * 1_000_000,
        end_time_unix_nano=T0 + (start + 5) * 1_000_000,
    )
    s.attributes.extend(kvs(attrs))
    if error is not None:
        s.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return s


def traces(*spans: Span, resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs(resource or {"service.name": "invoicer"}))
    ss = rs.scope_spans.add()
    ss.scope.name = "test"
    ss.spans.extend(spans)
    return req


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4.1",
    "gen_ai.request.temperature": 0.5,
    "gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "Grüße 🧾"}]}], ensure_ascii=False
    ),
    "gen_ai.output.messages": json.dumps(
        [
            {
                "role": "assistant",
                "parts": [
                    {"type": "tool_call", "id": "call_9", "name": "get_order", "arguments": {}}
                ],
                "finish_reason": "tool_calls",
            }
        ]
    ),
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 30,
    "gen_ai.usage.cache_read.input_tokens": 100,
    "gen_ai.usage.reasoning.output_tokens": 12,
    "gen_ai.conversation.id": "conv-1",
    "vendor.unknown.attribute": "kept",
}
EXEC = {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": "get_order",
    "gen_ai.tool.call.id": "call_9",
    "gen_ai.tool.call.arguments": '{"order_id":"7294"}',
    "gen_ai.tool.call.result": '{"status":"confirmed"}',
}


def full_trace() -> list[Span]:
    return [
        span(ROOT, None, "invoice_generation", {"agenttrail.task.type": "invoicing"}, 0),
        span(LLM, ROOT, "chat gpt-4.1", CHAT, 1),
        span(TOOL, LLM, "execute_tool get_order", EXEC, 2),
        span(OTHER, ROOT, "GET /orders", {"http.method": "GET", "x.y": [1, 2]}, 3),
    ]


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def ingestor(sink: MemorySink, state_path: Path) -> Iterator[OtlpIngestor]:
    state = ReceiverState(state_path)
    yield OtlpIngestor(sink, state)
    state.close()


def decoded(sink: MemorySink) -> list[dict[str, Any]]:
    codec = EventCodec()
    return [codec.decode(v) for _, v in sink.records]


def send(ing: OtlpIngestor, req: Any, signal: str = "traces", **kw: Any) -> Any:
    outcome, _ = ing.handle(signal, req.SerializeToString(), content_type=PB, **kw)  # type: ignore[arg-type]
    return outcome


def assert_chain(events: list[dict[str, Any]]) -> None:
    """seq gapless from 0 and each event's prev_hash the previous one's recomputed hash."""
    reg = default_registry()
    assert [e["seq"] for e in events] == list(range(len(events)))
    prev = ""
    for e in events:
        assert e["prev_hash"] == prev
        assert e["hash"] == canonical_hash(reg.latest(e["event_type"]), e)
        prev = e["hash"]


def test_a_trace_becomes_one_task_with_its_calls_tool_and_kept_span(
    ingestor: OtlpIngestor, sink: MemorySink
) -> None:
    send(ingestor, traces(*full_trace()))
    events = decoded(sink)
    assert [e["event_type"] for e in events] == [
        "state_transition", "agent_message", "llm_call", "tool_span", "agent_message",
        "state_transition",
    ]  # fmt: skip
    assert {e["task_id"] for e in events} == {f"otel-{TRACE.hex()}"}
    assert {e["task_type"] for e in events} == {"invoicing"}
    assert events[0]["to_state"] == "started" and events[-1]["to_state"] == "succeeded"
    llm = events[2]
    assert llm["model"] == "gpt-4.1" and llm["provider"] == "openai"
    assert llm["messages_json"] == CHAT["gen_ai.input.messages"]  # verbatim
    assert (llm["input_tokens"], llm["output_tokens"], llm["cached_tokens"]) == (120, 30, 100)
    raw = json.loads(llm["response_json"])
    assert raw["usage"]["reasoning.output_tokens"] == 12
    assert raw["attributes"]["vendor.unknown.attribute"] == "kept"
    assert json.loads(llm["tool_calls_json"])[0]["id"] == "call_9"
    assert llm["finish_reason"] == "tool_calls" and llm["step"] == 1
    assert json.loads(llm["params_json"]) == {"temperature": 0.5}
    tool = events[3]
    assert tool["tool"] == "get_order" and tool["args_json"] == '{"order_id":"7294"}'
    assert tool["result_summary"] == '{"status":"confirmed"}'
    assert tool["tool_call_id"] == "call_9", "gen_ai.tool.call.id joins the span to the call"
    kept = json.loads(events[4]["payload_json"])
    assert kept["name"] == "GET /orders" and kept["attributes"] == {
        "http.method": "GET",
        "x.y": [1, 2],
    }
    assert json.loads(events[0]["boundary"]["entry_json"])["otlp"]["conversation_id"] is None
    assert_chain(events)


def test_spans_arriving_in_any_order_across_requests_number_one_gapless_chain(
    ingestor: OtlpIngestor, sink: MemorySink
) -> None:
    root, llm, tool, other = full_trace()
    for part in ([tool], [other, llm], [root]):
        send(ingestor, traces(*part))
    events = decoded(sink)
    assert len(events) == 6
    assert_chain(events)
    assert [e["to_state"] for e in events if e["event_type"] == "state_transition"] == [
        "started", "succeeded",
    ]  # fmt: skip


def test_a_resent_request_adds_nothing(ingestor: OtlpIngestor, sink: MemorySink) -> None:
    send(ingestor, traces(*full_trace()))
    first = list(sink.records)
    send(ingestor, traces(*full_trace()))
    assert sink.records == first


def test_a_broker_failure_commits_nothing_and_the_retry_writes_identical_events(
    sink: MemorySink, tmp_path: Path
) -> None:
    reference_sink = MemorySink()
    reference = OtlpIngestor(reference_sink, ReceiverState(tmp_path / "ref.db"))
    state = ReceiverState(tmp_path / "s.db")
    ing = OtlpIngestor(sink, state)
    # Same producer id, so the two receivers would write identical bytes.
    state.producer_id = reference.state.producer_id
    root, llm, tool, other = full_trace()
    for ingestor in (reference, ing):
        send(ingestor, traces(llm))
    sink.fail_next = 1
    with pytest.raises(Unavailable):
        send(ing, traces(tool, other, root))
    ing._failing_until = 0.0  # the retry comes after Retry-After
    send(ing, traces(tool, other, root))
    send(reference, traces(tool, other, root))
    assert sink.records == reference_sink.records


def test_state_survives_a_restart(sink: MemorySink, state_path: Path) -> None:
    root, llm, tool, other = full_trace()
    first = ReceiverState(state_path)
    send(OtlpIngestor(sink, first), traces(llm, tool))
    first.close()
    again = ReceiverState(state_path)
    send(OtlpIngestor(sink, again), traces(other, root))
    events = decoded(sink)
    assert_chain(events)
    assert len({e["producer_id"] for e in events}) == 1
    assert [e["producer_seq"] for e in events] == list(range(len(events)))


def test_json_and_gzip_bodies_give_the_same_events_as_protobuf(tmp_path: Path) -> None:
    req = traces(*full_trace())
    as_json = json_format.MessageToDict(req)
    # OTLP/JSON spells ids in hex, not in the protobuf mapping's base64.
    for rs in as_json["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in sp:
                        sp[key] = json_format.base64.b64decode(sp[key]).hex()  # type: ignore[attr-defined]
    bodies = {
        "pb": (req.SerializeToString(), PB, None),
        "json": (json.dumps(as_json).encode(), "application/json", None),
        "gzip": (gzip.compress(req.SerializeToString()), PB, "gzip"),
    }
    results = {}
    for name, (body, ctype, enc) in bodies.items():
        sink = MemorySink()
        state = ReceiverState(tmp_path / f"{name}.db")
        state.producer_id = "00000000-0000-7000-8000-000000000000"
        outcome, _ = OtlpIngestor(sink, state).handle(
            "traces", body, content_type=ctype, content_encoding=enc
        )
        assert outcome.rejected == 0
        results[name] = sink.records
    assert results["pb"] == results["json"] == results["gzip"]
    assert len(results["pb"]) == 6


@pytest.mark.parametrize(
    ("body", "ctype", "encoding", "reason"),
    [
        (b"\xff\xff\xff\xff", PB, None, "not a protobuf"),
        (b"{not json", "application/json", None, "not JSON"),
        (b"[1, 2]", "application/json", None, "not an OTLP"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
         "application/json", None, "not a hex id"),
        (b"\x1f\x8b\x08\x00garbage", PB, "gzip", "corrupt|truncated"),
        (b"x", PB, "br", "not supported"),
        (b"x", "text/plain", None, "not OTLP"),
    ],
)  # fmt: skip
def test_a_bad_body_is_refused_with_its_reason_and_nothing_written(
    ingestor: OtlpIngestor, sink: MemorySink, body: bytes, ctype: str, encoding: str | None,
    reason: str,
) -> None:  # fmt: skip
    with pytest.raises(BadRequest, match=reason):
        ingestor.handle("traces", body, content_type=ctype, content_encoding=encoding)
    assert sink.records == []
    assert ingestor.state.pending_count() == 0


def test_invalid_spans_are_rejected_one_by_one_in_partial_success(
    ingestor: OtlpIngestor, sink: MemorySink
) -> None:
    bad_trace = span(LLM, None, "bad", {}, 0, trace=b"\x00" * 16)
    bad_id = span(b"\x01\x02", None, "short", {}, 0)
    good = span(ROOT, None, "root", {}, 0)
    outcome = send(ingestor, traces(bad_trace, bad_id, good))
    assert (outcome.accepted, outcome.rejected) == (1, 2)
    response = ExportTraceServiceResponse.FromString(outcome.body)
    assert response.partial_success.rejected_spans == 2
    assert "trace_id must be 16 bytes" in response.partial_success.error_message
    assert "span_id must be 8 bytes" in response.partial_success.error_message
    assert [e["event_type"] for e in decoded(sink)] == [
        "state_transition", "agent_message", "state_transition",
    ]  # fmt: skip


def test_tokens_map_to_tenants_and_refusals_write_nothing(sink: MemorySink, tmp_path: Path) -> None:
    auth = Authenticator.from_tokens({"tok-acme": "acme", "tok-globex": "globex"})
    ing = OtlpIngestor(sink, ReceiverState(tmp_path / "a.db"), auth=auth)
    req = traces(*full_trace())
    with pytest.raises(Unauthenticated):
        send(ing, req)
    with pytest.raises(Unauthenticated):
        send(ing, req, authorization="Bearer nope")
    claims_globex = traces(*full_trace(), resource={"agenttrail.tenant": "globex"})
    with pytest.raises(WrongTenant):
        send(ing, claims_globex, authorization="Bearer tok-acme")
    assert sink.records == []
    send(ing, req, authorization="Bearer tok-acme")
    assert {e["tenant"] for e in decoded(sink)} == {"acme"}


def test_without_tokens_the_resource_names_the_tenant(
    ingestor: OtlpIngestor, sink: MemorySink
) -> None:
    send(ingestor, traces(*full_trace(), resource={"agenttrail.tenant": "initech"}))
    assert {e["tenant"] for e in decoded(sink)} == {"initech"}


def test_more_waiting_requests_than_allowed_get_busy(sink: MemorySink, tmp_path: Path) -> None:
    ing = OtlpIngestor(sink, ReceiverState(tmp_path / "b.db"), max_waiting=1)
    body = traces(*full_trace()).SerializeToString()
    done = threading.Event()
    with ing._lock:  # the produce stage is taken: the first request waits in its slot
        waiting = threading.Thread(
            target=lambda: (ing.handle("traces", body, content_type=PB), done.set())
        )
        waiting.start()
        wait_until(lambda: ing._slots._value == 0, what="the first request to take its slot")  # type: ignore[attr-defined]
        with pytest.raises(Busy):
            ing.handle("traces", body, content_type=PB)
    waiting.join(timeout=30)
    assert done.is_set() and len(sink.records) == 6


def logs(*records: LogRecord) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(kvs({"service.name": "invoicer"}))
    rl.scope_logs.add().log_records.extend(records)
    return req


def event_log(name: str, body: dict[str, Any], at: int, span_id: bytes = LLM) -> LogRecord:
    return LogRecord(
        time_unix_nano=T0 + at,
        event_name=name,
        body=value(body),
        trace_id=TRACE,
        span_id=span_id,
    )


LEGACY_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4.1",
    "gen_ai.usage.input_tokens": 20,
    "gen_ai.usage.output_tokens": 4,
}


def test_older_convention_log_events_join_their_span(
    ingestor: OtlpIngestor, sink: MemorySink
) -> None:
    # The shape opentelemetry-instrumentation-openai-v2 2.3b0 emits with content capture.
    send(
        ingestor,
        logs(
            event_log("gen_ai.system.message", {"content": "Be exact."}, 1),
            event_log("gen_ai.user.message", {"content": "Grüße"}, 2),
            event_log(
                "gen_ai.choice",
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Hallo"},
                },
                3,
            ),
        ),
        signal="logs",
    )
    assert sink.records == [] and ingestor.state.pending_count() == 3
    send(ingestor, traces(span(LLM, None, "chat gpt-4.1", LEGACY_CHAT, 0)))
    llm = next(e for e in decoded(sink) if e["event_type"] == "llm_call")
    assert json.loads(llm["messages_json"]) == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Grüße"},
    ]
    assert llm["response_text"] == "Hallo" and llm["finish_reason"] == "stop"
    assert ingestor.state.pending_count() == 0


def test_log_events_after_their_span_or_without_one_are_kept(
    ingestor: OtlpIngestor, sink: MemorySink
) -> None:
    send(ingestor, traces(span(LLM, None, "chat gpt-4.1", LEGACY_CHAT, 0)))
    send(ingestor, logs(event_log("gen_ai.user.message", {"content": "late"}, 2)), signal="logs")
    orphan = event_log("gen_ai.user.message", {"content": "lost span"}, 3, span_id=OTHER)
    send(ingestor, logs(orphan), signal="logs")
    ingestor.log_join_window_s = -1.0  # everything pending is overdue
    assert ingestor.sweep() == 1
    kept = [
        json.loads(e["payload_json"]) for e in decoded(sink) if e["event_type"] == "agent_message"
    ]
    assert [k["body"]["content"] for k in kept] == ["late", "lost span"]
    assert_chain(decoded(sink))


def test_openllmetry_indexed_prompt_attributes(ingestor: OtlpIngestor, sink: MemorySink) -> None:
    attrs = {
        "llm.request.type": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "Be exact.",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Invoice 7294",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "call_7",
        "gen_ai.completion.0.tool_calls.0.name": "get_order",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"order_id":"7294"}',
        "gen_ai.usage.prompt_tokens": 50,
        "gen_ai.usage.completion_tokens": 9,
        "gen_ai.usage.cache_read_input_tokens": 40,
        "traceloop.workflow.name": "invoice_flow",
    }
    send(ingestor, traces(span(LLM, None, "openai.chat", attrs, 0)))
    llm = next(e for e in decoded(sink) if e["event_type"] == "llm_call")
    assert json.loads(llm["messages_json"]) == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Invoice 7294"},
    ]
    assert (llm["input_tokens"], llm["output_tokens"], llm["cached_tokens"]) == (50, 9, 40)
    assert json.loads(llm["tool_calls_json"]) == [
        {"id": "call_7", "name": "get_order", "arguments": '{"order_id":"7294"}'}
    ]
    assert llm["task_type"] == "invoice_flow" and llm["finish_reason"] == "tool_calls"


def test_a_failed_root_span_fails_the_task(ingestor: OtlpIngestor, sink: MemorySink) -> None:
    send(ingestor, traces(span(ROOT, None, "agent", {}, 0, error="order 7294 not found")))
    last = decoded(sink)[-1]
    assert last["to_state"] == "failed" and last["error_detail"] == "order 7294 not found"


def test_http_answers_per_the_otlp_spec(sink: MemorySink, tmp_path: Path) -> None:
    auth = Authenticator.from_tokens({"tok": "acme"})
    server = OtlpHttpServer(OtlpIngestor(sink, ReceiverState(tmp_path / "h.db"), auth=auth), port=0)
    server.start()
    body = traces(*full_trace()).SerializeToString()

    def post(path: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(server.url + path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    try:
        ok = {"Content-Type": PB, "Authorization": "Bearer tok"}
        assert post("/v1/traces", body, {"Content-Type": PB})[0] == 401
        status, _, answer = post("/v1/traces", b"\xff\xff", ok)
        assert status == 400 and b"not a protobuf" in answer
        assert sink.records == []
        status, headers, answer = post("/v1/traces", body, ok)
        assert status == 200 and headers["Content-Type"] == PB
        assert not ExportTraceServiceResponse.FromString(answer).HasField("partial_success")
        assert len(sink.records) == 6
        sink.fail_next = 1
        other = traces(span(ROOT, None, "r", {}, 0, trace=b"\x11" * 16)).SerializeToString()
        status, headers, _ = post("/v1/traces", other, ok)
        assert status == 503 and headers["Retry-After"] == "2"
        assert post("/v1/nothing", body, ok)[0] == 404
    finally:
        server.stop()
