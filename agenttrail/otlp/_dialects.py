"""What a GenAI span says, in each dialect that instrumentation libraries speak.

Four dialects are read, each into the same facts (:class:`LlmFacts`, :class:`ToolFacts`):

* ``semconv`` — the current OpenTelemetry GenAI semantic conventions:
  ``gen_ai.operation.name`` (chat, text_completion, generate_content, embeddings →
  an LLM call; execute_tool → a tool; invoke_agent, create_agent → an agent span),
  ``gen_ai.input.messages`` / ``gen_ai.output.messages`` / ``gen_ai.system_instructions``
  (kept verbatim), ``gen_ai.usage.*`` incl. cache and reasoning tokens,
  ``gen_ai.tool.call.id``, ``gen_ai.conversation.id``.
* ``semconv-events`` — the older convention with message content in log events
  (``gen_ai.system.message``, ``gen_ai.user.message``, ``gen_ai.assistant.message``,
  ``gen_ai.tool.message``, ``gen_ai.choice``): the span as above, the messages from
  the log records linked to it (see :func:`messages_from_log_events`).
* ``openinference`` — ``openinference.span.kind`` LLM / TOOL / …,
  ``llm.input_messages.N.message.*``, ``llm.output_messages.N.*``, ``llm.token_count.*``,
  ``llm.invocation_parameters``, ``input.value`` / ``output.value``.
* ``openllmetry`` — ``gen_ai.prompt.N.*``, ``gen_ai.completion.N.*``,
  ``gen_ai.usage.prompt_tokens`` …, ``traceloop.span.kind`` / ``traceloop.entity.*``.

A span none of them claims is ``other``: the receiver keeps it (see ``_mapper``).
Unknown attributes are never an error; they travel in the kept span's payload.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from agenttrail.otlp._otel import Attributes, OtelLog, OtelSpan

Kind = Literal["llm", "tool", "agent", "other"]

LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
INPUT_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CHOICE_EVENT = "gen_ai.choice"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"


@dataclass
class LlmFacts:
    """An LLM call as a dialect describes it. ``messages_json`` wins over ``messages``."""

    dialect: str
    provider: str
    model: str
    messages: list[Any] | None = None
    messages_json: str | None = None
    system_prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    response_text: str | None = None
    output: Any = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    response_id: str | None = None
    cost_usd: float | None = None
    ttft_ms: float | None = None


@dataclass
class ToolFacts:
    """A tool invocation as a dialect describes it."""

    dialect: str
    name: str
    call_id: str | None = None
    args_json: str = "{}"
    result: str | None = None


@dataclass
class Reading:
    """What one span is: its kind, the dialect that said so, and the facts."""

    kind: Kind
    dialect: str
    llm: LlmFacts | None = None
    tool: ToolFacts | None = None
    agent_name: str | None = None


def to_json(value: Any) -> str:
    """Compact JSON as the SDK writes it (non-ASCII kept, unknown objects as text)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else to_json(value)


_INDEXED = re.compile(r"^(\d+)\.(.+)$")


def indexed(attrs: Attributes, prefix: str) -> list[dict[str, Any]]:
    """``prefix.N.rest`` attributes as a list (by N) of ``{rest: value}`` dicts."""
    found: dict[int, dict[str, Any]] = {}
    start = len(prefix) + 1
    for key, value in attrs.items():
        if key.startswith(prefix + "."):
            m = _INDEXED.match(key[start:])
            if m:
                found.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return [found[i] for i in sorted(found)]


def read_span(span: OtelSpan) -> Reading:
    """Classify a span and read its facts in the dialect it speaks."""
    a = span.attributes
    oi_kind = a.get("openinference.span.kind")
    if isinstance(oi_kind, str):
        return _openinference(span, oi_kind.upper())
    if (
        "traceloop.span.kind" in a
        or "llm.request.type" in a
        or any(k.startswith(("gen_ai.prompt.", "gen_ai.completion.")) for k in a)
    ):
        reading = _openllmetry(span)
        if reading.kind != "other" or "gen_ai.operation.name" not in a:
            return reading
    op = a.get("gen_ai.operation.name")
    if isinstance(op, str):
        return _semconv(span, op)
    return Reading("other", "none")


# -- current GenAI semantic conventions ---------------------------------------------------


def _semconv(span: OtelSpan, op: str) -> Reading:
    a = span.attributes
    if op in LLM_OPERATIONS:
        return Reading("llm", "semconv", llm=semconv_llm(span, a))
    if op == "execute_tool":
        name = str(a.get("gen_ai.tool.name") or span.name)
        return Reading(
            "tool",
            "semconv",
            tool=ToolFacts(
                "semconv",
                name,
                call_id=_text(a.get("gen_ai.tool.call.id")),
                args_json=_text(a.get("gen_ai.tool.call.arguments")) or "{}",
                result=_text(a.get("gen_ai.tool.call.result")),
            ),
        )
    if op in AGENT_OPERATIONS:
        return Reading("agent", "semconv", agent_name=_text(a.get("gen_ai.agent.name")))
    return Reading("other", "semconv")


def semconv_llm(span: OtelSpan, a: Attributes) -> LlmFacts:
    """The LLM facts of a semconv span (or of a details log event's attributes)."""
    facts = LlmFacts(
        dialect="semconv",
        provider=str(a.get("gen_ai.provider.name") or a.get("gen_ai.system") or "unknown"),
        model=str(a.get("gen_ai.response.model") or a.get("gen_ai.request.model") or "unknown"),
    )
    apply_semconv_content(facts, a)
    for key, value in a.items():
        if key.startswith("gen_ai.request.") and key != "gen_ai.request.model":
            facts.params[key.removeprefix("gen_ai.request.")] = value
        elif key.startswith("gen_ai.usage."):
            facts.usage[key.removeprefix("gen_ai.usage.")] = value
    u = facts.usage
    facts.input_tokens = _int(u.get("input_tokens", u.get("prompt_tokens")))
    facts.output_tokens = _int(u.get("output_tokens", u.get("completion_tokens")))
    facts.cached_tokens = _int(
        u.get("cache_read.input_tokens", u.get("cache_read_input_tokens", u.get("cached_tokens")))
    )
    reasons = a.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and reasons:
        facts.finish_reason = str(reasons[0])
    facts.response_id = _text(a.get("gen_ai.response.id"))
    return facts


def apply_semconv_content(facts: LlmFacts, a: Attributes) -> None:
    """Messages, system instructions and output from ``gen_ai.*.messages`` attributes."""
    raw_in = a.get("gen_ai.input.messages")
    system = a.get("gen_ai.system_instructions")
    if raw_in is not None:
        if system is None and isinstance(raw_in, str):
            facts.messages_json = raw_in  # verbatim: what the instrumentation captured
            facts.messages = None
        else:
            parsed = _maybe_json(raw_in)
            messages = list(parsed) if isinstance(parsed, list) else [parsed]
            if system is not None:
                messages.insert(0, {"role": "system", "parts": _maybe_json(system)})
            facts.messages = messages
    if system is not None:
        parts = _maybe_json(system)
        facts.system_prompt = (
            "".join(str(p.get("content", "")) for p in parts if isinstance(p, dict))
            if isinstance(parts, list)
            else _text(parts)
        )
    raw_out = a.get("gen_ai.output.messages")
    if raw_out is not None:
        output = _maybe_json(raw_out)
        facts.output = output
        _read_semconv_output(facts, output)


def _read_semconv_output(facts: LlmFacts, output: Any) -> None:
    if not isinstance(output, list) or not output or not isinstance(output[0], dict):
        return
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in output[0].get("parts") or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            texts.append(str(part.get("content", "")))
        elif part.get("type") == "tool_call":
            calls.append(
                {"id": part.get("id"), "name": part.get("name"), "arguments": part.get("arguments")}
            )
    facts.response_text = "".join(texts) if texts else facts.response_text
    facts.tool_calls = calls or facts.tool_calls
    if output[0].get("finish_reason") and facts.finish_reason is None:
        facts.finish_reason = str(output[0]["finish_reason"])


# -- the older convention: content in log events ------------------------------------------


def messages_from_log_events(facts: LlmFacts, logs: list[OtelLog]) -> None:
    """Fill messages and output of ``facts`` from the log events linked to its span.

    Input events become chat messages in their order (``{"role", "content", …}`` as the
    event body carries them); ``gen_ai.choice`` events become the output. A
    ``gen_ai.client.inference.operation.details`` event carries the current
    convention's attributes and is read as such. Without content capture the bodies
    hold no ``content``; the messages then record roles (and tool call ids) only.
    """
    messages: list[Any] = []
    choices: list[dict[str, Any]] = []
    for log in sorted(logs, key=lambda r: r.time_ns):
        body = log.body if isinstance(log.body, dict) else {}
        if log.event_name == DETAILS_EVENT:
            apply_semconv_content(facts, log.attributes)
            facts.dialect = "semconv"
        elif log.event_name in INPUT_EVENT_ROLES:
            entry = {"role": body.get("role") or INPUT_EVENT_ROLES[log.event_name]}
            entry.update({k: v for k, v in body.items() if k != "role"})
            messages.append(entry)
        elif log.event_name == CHOICE_EVENT:
            choices.append(body)
    if messages and facts.messages is None and facts.messages_json is None:
        facts.messages = messages
        facts.dialect = "semconv-events"
    if choices and facts.output is None:
        facts.output = choices
        first = min(choices, key=lambda c: _int(c.get("index")))
        found = first.get("message")
        message: dict[str, Any] = found if isinstance(found, dict) else {}
        if message.get("content") is not None:
            facts.response_text = _text(message["content"])
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            facts.tool_calls = [_openai_tool_call(c) for c in calls if isinstance(c, dict)]
        if first.get("finish_reason") and facts.finish_reason is None:
            facts.finish_reason = str(first["finish_reason"])


def _openai_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    found = call.get("function")
    fn: dict[str, Any] = found if isinstance(found, dict) else {}
    return {"id": call.get("id"), "name": fn.get("name"), "arguments": fn.get("arguments")}


# -- OpenInference ------------------------------------------------------------------------


def _openinference(span: OtelSpan, kind: str) -> Reading:
    a = span.attributes
    if kind == "LLM" or kind == "EMBEDDING":
        return Reading("llm", "openinference", llm=_openinference_llm(a))
    if kind == "TOOL":
        name = str(a.get("tool.name") or span.name)
        return Reading(
            "tool",
            "openinference",
            tool=ToolFacts(
                "openinference",
                name,
                call_id=_text(a.get("tool_call.id") or a.get("tool.id")),
                args_json=_text(a.get("tool.parameters") or a.get("input.value")) or "{}",
                result=_text(a.get("output.value")),
            ),
        )
    if kind == "AGENT":
        return Reading("agent", "openinference", agent_name=_text(a.get("agent.name")))
    return Reading("other", "openinference")


def _oi_message(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.get("message.role")}
    if "message.content" in m:
        out["content"] = m["message.content"]
    else:
        contents = indexed(m, "message.contents")
        if contents:
            out["content"] = [
                {
                    "type": c.get("message_content.type", "text"),
                    "text": c.get("message_content.text"),
                }
                for c in contents
            ]
    calls = indexed(m, "message.tool_calls")
    if calls:
        out["tool_calls"] = [
            {
                "id": c.get("tool_call.id"),
                "name": c.get("tool_call.function.name"),
                "arguments": c.get("tool_call.function.arguments"),
            }
            for c in calls
        ]
    if "message.tool_call_id" in m:
        out["tool_call_id"] = m["message.tool_call_id"]
    if "message.name" in m:
        out["name"] = m["message.name"]
    return out


def _openinference_llm(a: Attributes) -> LlmFacts:
    facts = LlmFacts(
        dialect="openinference",
        provider=str(a.get("llm.provider") or a.get("llm.system") or "unknown"),
        model=str(a.get("llm.model_name") or a.get("embedding.model_name") or "unknown"),
    )
    inputs = indexed(a, "llm.input_messages")
    if inputs:
        facts.messages = [_oi_message(m) for m in inputs]
        system = [m.get("content") for m in facts.messages if m.get("role") == "system"]
        if system and isinstance(system[0], str):
            facts.system_prompt = system[0]
    outputs = [_oi_message(m) for m in indexed(a, "llm.output_messages")]
    if outputs:
        facts.output = outputs
        content = outputs[0].get("content")
        facts.response_text = content if isinstance(content, str) else _text(content)
        facts.tool_calls = outputs[0].get("tool_calls")
    params = _maybe_json(a.get("llm.invocation_parameters"))
    if isinstance(params, dict):
        facts.params = params
    for key, value in a.items():
        if key.startswith("llm.token_count."):
            facts.usage[key.removeprefix("llm.token_count.")] = value
    u = facts.usage
    facts.input_tokens = _int(u.get("prompt"))
    facts.output_tokens = _int(u.get("completion"))
    facts.cached_tokens = _int(u.get("prompt_details.cache_read"))
    raw = _maybe_json(a.get("output.value"))
    if isinstance(raw, dict):
        choices = raw.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            reason = choices[0].get("finish_reason")
            facts.finish_reason = str(reason) if reason else None
        facts.response_id = _text(raw.get("id"))
    cost = a.get("llm.cost.total")
    if isinstance(cost, int | float):
        facts.cost_usd = float(cost)
    return facts


# -- OpenLLMetry (traceloop) --------------------------------------------------------------


def _ol_message(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.get("role")}
    if "content" in m:
        out["content"] = _maybe_json(m["content"]) if m["content"][:1] == "[" else m["content"]
    calls = indexed(m, "tool_calls")
    if calls:
        out["tool_calls"] = [
            {"id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")}
            for c in calls
        ]
    if "tool_call_id" in m:
        out["tool_call_id"] = m["tool_call_id"]
    return out


def _openllmetry(span: OtelSpan) -> Reading:
    a = span.attributes
    kind = a.get("traceloop.span.kind")
    prompts = indexed(a, "gen_ai.prompt")
    completions = indexed(a, "gen_ai.completion")
    if kind == "tool":
        return Reading(
            "tool",
            "openllmetry",
            tool=ToolFacts(
                "openllmetry",
                str(a.get("traceloop.entity.name") or span.name),
                call_id=_text(a.get("gen_ai.tool.call.id")),
                args_json=_text(a.get("traceloop.entity.input")) or "{}",
                result=_text(a.get("traceloop.entity.output")),
            ),
        )
    if kind == "agent":
        return Reading("agent", "openllmetry", agent_name=_text(a.get("traceloop.entity.name")))
    if not (prompts or completions or "llm.request.type" in a):
        return Reading("other", "openllmetry")
    facts = LlmFacts(
        dialect="openllmetry",
        provider=str(a.get("gen_ai.system") or a.get("gen_ai.provider.name") or "unknown"),
        model=str(a.get("gen_ai.response.model") or a.get("gen_ai.request.model") or "unknown"),
    )
    if prompts:
        facts.messages = [_ol_message(m) for m in prompts]
        system = [m.get("content") for m in facts.messages if m.get("role") == "system"]
        if system and isinstance(system[0], str):
            facts.system_prompt = system[0]
    else:
        apply_semconv_content(facts, a)
    if completions:
        outputs = [_ol_message(m) for m in completions]
        facts.output = outputs
        content = outputs[0].get("content")
        facts.response_text = content if isinstance(content, str) else _text(content)
        facts.tool_calls = outputs[0].get("tool_calls")
        reason = completions[0].get("finish_reason")
        facts.finish_reason = str(reason) if reason else None
    for key, value in a.items():
        if key.startswith("gen_ai.request.") and key != "gen_ai.request.model":
            facts.params[key.removeprefix("gen_ai.request.")] = value
        elif key.startswith(("gen_ai.usage.", "llm.usage.")):
            facts.usage[key.split(".usage.", 1)[1]] = value
    u = facts.usage
    facts.input_tokens = _int(u.get("input_tokens", u.get("prompt_tokens")))
    facts.output_tokens = _int(u.get("output_tokens", u.get("completion_tokens")))
    facts.cached_tokens = _int(
        u.get("cache_read_input_tokens", u.get("cache_read.input_tokens", 0))
    )
    reasons = a.get("gen_ai.response.finish_reasons")
    if facts.finish_reason is None and isinstance(reasons, list) and reasons:
        facts.finish_reason = str(reasons[0])
    facts.response_id = _text(a.get("gen_ai.response.id"))
    return Reading("llm", "openllmetry", llm=facts)
