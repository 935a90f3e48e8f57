"""A small Anthropic-compatible Messages API server on loopback, for the integration tests.

``POST /v1/messages``: when tools are offered and the last message is the user's text,
the answer is one ``tool_use`` block (id ``toolu_<n>``) of the first tool with input
``{"order_id": "7294"}``; otherwise a text answer. Usage: 10 input tokens per message,
7 output, 4 read from the cache. ``stream: true`` answers with the SSE event sequence
of the Messages API. Every request body is kept in :attr:`FakeAnthropic.requests`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: FakeAnthropic
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        n = len(self.server.requests)
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        user_text = last.get("role") == "user" and isinstance(last.get("content"), str)
        block: dict[str, Any]
        if body.get("tools") and user_text:
            tool = body["tools"][0]["name"]
            block = {
                "type": "tool_use",
                "id": f"toolu_{n}",
                "name": tool,
                "input": {"order_id": "7294"},
            }
            stop = "tool_use"
        else:
            block = {"type": "text", "text": f"answer {n}"}
            stop = "end_turn"
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
            self._stream(message, block)
            return
        self._send(json.dumps(message).encode(), "application/json")

    def _stream(self, message: dict[str, Any], block: dict[str, Any]) -> None:
        def ev(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
            return kind, {"type": kind, **fields}

        usage = message["usage"]
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events = [ev("message_start", message=start)]
        if block["type"] == "text":
            events.append(
                ev("content_block_start", index=0, content_block={"type": "text", "text": ""})
            )
            text = block["text"]
            for i in range(0, len(text), 4):
                delta = {"type": "text_delta", "text": text[i : i + 4]}
                events.append(ev("content_block_delta", index=0, delta=delta))
        else:
            events.append(ev("content_block_start", index=0, content_block={**block, "input": {}}))
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            events.append(ev("content_block_delta", index=0, delta=delta))
        events.append(ev("content_block_stop", index=0))
        stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        events.append(
            ev("message_delta", delta=stop, usage={"output_tokens": usage["output_tokens"]})
        )
        events.append(ev("message_stop"))
        data = b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events)
        self._send(data, "text/event-stream")

    def _send(self, data: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeAnthropic(ThreadingHTTPServer):
    """Serve on 127.0.0.1, a free port; ``url`` is the base URL for ``anthropic.Anthropic``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
