"""A small OpenAI-compatible chat completions server on loopback, for tests and the bench.

``POST /v1/chat/completions``: when tools are offered and the last message is from the
user, the answer is one tool call (id ``call_<n>``) of the first tool with arguments
``{"order_id": "7294"}``; otherwise a text answer quoting the last message. Usage is
``prompt_tokens`` = 10 × messages, ``completion_tokens`` = 7, 3 of the prompt cached,
2 reasoning tokens. Every request body is kept in :attr:`FakeOpenAI.requests`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        n = len(self.server.requests)
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        message: dict[str, Any]
        if body.get("tools") and last.get("role") == "user":
            tool = body["tools"][0]["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{n}",
                        "type": "function",
                        "function": {"name": tool, "arguments": '{"order_id": "7294"}'},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message = {
                "role": "assistant",
                "content": f"answer {n}: {str(last.get('content'))[:40]}",
            }
            finish = "stop"
        usage = {
            "prompt_tokens": 10 * len(messages),
            "completion_tokens": 7,
            "total_tokens": 10 * len(messages) + 7,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
        if body.get("stream"):
            self._stream(n, body, message, finish, usage)
            return
        answer = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model", "gpt-test") + "-2025-01-01",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(
        self, n: int, body: dict[str, Any], message: dict[str, Any], finish: str, usage: Any
    ) -> None:
        model = body.get("model", "gpt-test") + "-2025-01-01"
        chunks: list[dict[str, Any]] = []
        base = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
        }
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            delta: dict[str, Any] = {"role": "assistant", "tool_calls": [{"index": 0, **call}]}
            chunks.append(
                {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            )
        else:
            text = message["content"]
            for i in range(0, len(text), 8):
                delta = {"content": text[i : i + 8]}
                if i == 0:
                    delta["role"] = "assistant"
                chunks.append(
                    {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                )
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
        data += b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeOpenAI(ThreadingHTTPServer):
    """Serve on 127.0.0.1, a free port; ``url`` is the base URL for ``openai.OpenAI``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
