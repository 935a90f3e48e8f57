"""An app instrumented with OpenTelemetry only (no agenttrail import), sending OTLP.

Point the standard exporter variables at agenttrail's receiver (`agenttrail up` serves
it on 127.0.0.1:4318) and name the task with resource attributes:

    pip install openai opentelemetry-sdk opentelemetry-exporter-otlp-proto-http \\
        opentelemetry-instrumentation-openai-v2
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
    OTEL_RESOURCE_ATTRIBUTES=service.name=invoicer,agenttrail.task.type=invoicing \\
    OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental \\
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_AND_EVENT \\
    python examples/otlp_app.py
    agenttrail runs --task-type invoicing
"""

from openai import OpenAI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider()  # resource from OTEL_RESOURCE_ATTRIBUTES
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint from the env
trace.set_tracer_provider(provider)
OpenAIInstrumentor().instrument()

client = OpenAI()
with trace.get_tracer("invoicer").start_as_current_span("invoice_generation"):
    reply = client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "Invoice order 7294."}]
    )
    print(reply.choices[0].message.content)
provider.shutdown()  # flushes the spans to the receiver
