"""The part the loopback API doubles share: a threading HTTP server on 127.0.0.1.

A double subclasses :class:`LoopbackApi` and implements :meth:`LoopbackApi.answer`:
given the parsed JSON body of a POST and its number (1 for the first request), it
returns the bytes and content type to send. Every request body is kept in
:attr:`LoopbackApi.requests`, in the order they arrived.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append(body)
            n = len(self.server.requests)
        data, ctype = self.server.answer(body, n)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def sse(events: list[tuple[str | None, Any]]) -> bytes:
    """Server-sent events: ``event: NAME`` (when named) and ``data: JSON`` each."""
    out = b""
    for name, data in events:
        if name is not None:
            out += f"event: {name}\n".encode()
        out += b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode())
        out += b"\n\n"
    return out


class LoopbackApi(ThreadingHTTPServer):
    """Serves on 127.0.0.1, a free port, from ``with`` until its end."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, body: dict[str, Any], n: int) -> tuple[bytes, str]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
