"""An OTel-instrumented app, run as its own process: real instrumentation, real openai client.

Usage: python -m tests.otlp.app DIALECT OTLP_URL OPENAI_URL TASK_TYPE [stream]

DIALECT is ``openai-v2`` (opentelemetry-instrumentation-openai-v2; content capture is
configured by the caller through the environment), ``openinference``
(openinference-instrumentation-openai) or ``openllmetry``
(opentelemetry-instrumentation-openai, the OpenLLMetry instrumentation that
traceloop-sdk wraps). The app runs one agent task under a root span: a chat call
offering a tool, the tool run as a span carrying the call id in the dialect's own
attributes, a second chat call with the tool result. It prints the trace id.
"""

from __future__ import annotations

import json
import sys

import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look an order up.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
USER_TEXT = 'Grüße — invoice order 7294, "quoted" \\ and 🧾'
SYSTEM_TEXT = "You are the invoicing agent. Stay exact."


def main() -> None:
    dialect, otlp_url, openai_url, task_type = sys.argv[1:5]
    stream = len(sys.argv) > 5 and sys.argv[5] == "stream"
    resource = Resource.create(
        {"service.name": "invoicer", "service.version": "1.4.0", "agenttrail.task.type": task_type}
    )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        # Exported only by the final flush, after the log records: the order a loaded
        # machine would otherwise deliver spans and logs in is left to chance.
        BatchSpanProcessor(OTLPSpanExporter(f"{otlp_url}/v1/traces"), schedule_delay_millis=600_000)
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(f"{otlp_url}/v1/logs"))
    )
    trace.set_tracer_provider(tracer_provider)
    if dialect == "openai-v2":
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        set_logger_provider(logger_provider)
        OpenAIInstrumentor().instrument(
            tracer_provider=tracer_provider, logger_provider=logger_provider
        )
    elif dialect == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OIInstrumentor

        OIInstrumentor().instrument(tracer_provider=tracer_provider)
    elif dialect == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OLInstrumentor

        OLInstrumentor().instrument(tracer_provider=tracer_provider)
    else:
        raise SystemExit(f"unknown dialect {dialect}")
    client = openai.OpenAI(base_url=openai_url, api_key="sk-test")
    tracer = trace.get_tracer("invoicer")
    messages: list[dict[str, object]] = [
        {"role": "system", "content": SYSTEM_TEXT},
        {"role": "user", "content": USER_TEXT},
    ]
    with tracer.start_as_current_span("invoice_generation") as root:
        first = client.chat.completions.create(
            model="gpt-test",
            messages=messages,
            tools=TOOLS,
            temperature=0,  # type: ignore[arg-type]
        )
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        with tracer.start_as_current_span(f"execute_tool {call.function.name}") as span:  # type: ignore[union-attr]
            result = json.dumps({"order_id": "7294", "status": "confirmed"})
            if dialect == "openinference":
                span.set_attribute("openinference.span.kind", "TOOL")
                span.set_attribute("tool.name", call.function.name)  # type: ignore[union-attr]
                span.set_attribute("tool_call.id", call.id)
                span.set_attribute("input.value", call.function.arguments)  # type: ignore[union-attr]
                span.set_attribute("output.value", result)
            elif dialect == "openllmetry":
                span.set_attribute("traceloop.span.kind", "tool")
                span.set_attribute("traceloop.entity.name", call.function.name)  # type: ignore[union-attr]
                span.set_attribute("gen_ai.tool.call.id", call.id)
                span.set_attribute("traceloop.entity.input", call.function.arguments)  # type: ignore[union-attr]
                span.set_attribute("traceloop.entity.output", result)
            else:
                span.set_attribute("gen_ai.operation.name", "execute_tool")
                span.set_attribute("gen_ai.tool.name", call.function.name)  # type: ignore[union-attr]
                span.set_attribute("gen_ai.tool.call.id", call.id)
                span.set_attribute("gen_ai.tool.call.arguments", call.function.arguments)  # type: ignore[union-attr]
                span.set_attribute("gen_ai.tool.call.result", result)
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        if stream:
            chunks = client.chat.completions.create(
                model="gpt-test",
                messages=messages,
                stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )
            for _ in chunks:
                pass
        else:
            client.chat.completions.create(model="gpt-test", messages=messages)  # type: ignore[arg-type]
        trace_id = f"{root.get_span_context().trace_id:032x}"
    logger_provider.force_flush()
    tracer_provider.force_flush()
    logger_provider.shutdown()
    tracer_provider.shutdown()
    print(trace_id)


if __name__ == "__main__":
    main()
