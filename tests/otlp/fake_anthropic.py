"""A small Anthropic-compatible Messages API server on loopback, for the integration tests.

``POST /v1/messages``: when tools are offered and the last message is the user's text,
the answer is one ``tool_use`` block (id ``toolu_<n>``) of the first tool with input
``{"order_id": "7294"}``; otherwise a text answer. Usage: 10 input tokens per message,
7 output, 4 read from the cache. ``stream: true`` answers with the SSE event sequence
of the Messages API. Every request body is kept in :attr:`FakeAnthropic.requests`.
"""

from __future__ import annotations

import json
from typing import Any

from tests.otlp.loopback import LoopbackApi, sse


class FakeAnthropic(LoopbackApi):
    """``url`` is the base URL for ``anthropic.Anthropic``."""

    @property
    def url(self) -> str:
        return self.origin

    def answer(self, body: dict[str, Any], n: int) -> tuple[bytes, str]:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        user_text = last.get("role") == "user" and isinstance(last.get("content"), str)
        block: dict[str, Any]
        if body.get("tools") and user_text:
            tool = body["tools"][0]["name"]
            block = {"type": "tool_use", "id": f"toolu_{n}", "name": tool,
                     "input": {"order_id": "7294"}}  # fmt: skip
            stop = "tool_use"
        else:
            block, stop = {"type": "text", "text": f"answer {n}"}, "end_turn"
        usage = {
            "input_tokens": 10 * len(messages),
            "output_tokens": 7,
            "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 0,
        }
        model = body.get("model", "claude-test") + "-20250101"
        message = {
            "id": f"msg_{n}", "type": "message", "role": "assistant", "model": model,
            "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage,
        }  # fmt: skip
        if body.get("stream"):
            return _stream(message, block), "text/event-stream"
        return json.dumps(message).encode(), "application/json"


def _stream(message: dict[str, Any], block: dict[str, Any]) -> bytes:
    events: list[tuple[str | None, Any]] = []

    def ev(kind: str, **fields: Any) -> None:
        events.append((kind, {"type": kind, **fields}))

    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    ev("message_start", message=start)
    if block["type"] == "text":
        ev("content_block_start", index=0, content_block={"type": "text", "text": ""})
        text = block["text"]
        for i in range(0, len(text), 4):
            delta = {"type": "text_delta", "text": text[i : i + 4]}
            ev("content_block_delta", index=0, delta=delta)
    else:
        ev("content_block_start", index=0, content_block={**block, "input": {}})
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        ev("content_block_delta", index=0, delta=delta)
    ev("content_block_stop", index=0)
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    ev("message_delta", delta=stop, usage={"output_tokens": usage["output_tokens"]})
    ev("message_stop")
    return sse(events)
