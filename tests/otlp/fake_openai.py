"""A small OpenAI-compatible chat completions server on loopback, for tests and the bench.

``POST /v1/chat/completions``: when tools are offered and the last message is from the
user, the answer is one tool call (id ``call_<n>``) of the first tool with arguments
``{"order_id": "7294"}``; otherwise a text answer quoting the last message. Usage is
``prompt_tokens`` = 10 × messages, ``completion_tokens`` = 7, 3 of the prompt cached,
2 reasoning tokens. Every request body is kept in :attr:`FakeOpenAI.requests`.
"""

from __future__ import annotations

import json
from typing import Any

from tests.otlp.loopback import LoopbackApi, sse


class FakeOpenAI(LoopbackApi):
    """``url`` is the base URL for ``openai.OpenAI``."""

    @property
    def url(self) -> str:
        return self.origin + "/v1"

    def answer(self, body: dict[str, Any], n: int) -> tuple[bytes, str]:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        message: dict[str, Any]
        if body.get("tools") and last.get("role") == "user":
            tool = body["tools"][0]["function"]["name"]
            call = {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": tool, "arguments": '{"order_id": "7294"}'},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            text = f"answer {n}: {str(last.get('content'))[:40]}"
            message, finish = {"role": "assistant", "content": text}, "stop"
        usage = {
            "prompt_tokens": 10 * len(messages),
            "completion_tokens": 7,
            "total_tokens": 10 * len(messages) + 7,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
        model = body.get("model", "gpt-test") + "-2025-01-01"
        if body.get("stream"):
            return _stream(n, body, model, message, finish, usage), "text/event-stream"
        answer = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        return json.dumps(answer).encode(), "application/json"


def _stream(
    n: int, body: dict[str, Any], model: str, message: dict[str, Any], finish: str, usage: Any
) -> bytes:
    base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1, "model": model}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    chunks: list[dict[str, Any]] = []
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        chunks.append(chunk({"role": "assistant", "tool_calls": [{"index": 0, **call}]}))
    else:
        text = message["content"]
        for i in range(0, len(text), 8):
            delta = {"content": text[i : i + 8]}
            chunks.append(chunk({"role": "assistant", **delta} if i == 0 else delta))
    chunks.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage})
    return sse([(None, c) for c in chunks] + [(None, b"[DONE]")])
