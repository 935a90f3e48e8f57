"""The OTLP/HTTP endpoint: ``POST /v1/traces`` and ``POST /v1/logs`` (stdlib HTTP server).

Status codes follow the OTLP/HTTP specification: 200 with an export response
(``partial_success`` naming what was rejected and why), 400 with a ``google.rpc.Status``
body naming the problem, 401/403 when authentication fails, 413 for an oversize body,
415 for a content type that is not OTLP, 429 and 503 with ``Retry-After`` when the
receiver cannot take the request now (the client retries; nothing was kept). Request
headers are never logged (they carry the bearer token).

With an SSL context the server speaks HTTPS; the TLS handshake runs on the
connection's own thread (a slow or hostile client never holds up the accept loop), and
a client certificate verified there is handed on as the request's identities.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agenttrail.otlp._auth import AuthError
from agenttrail.otlp._ingest import Busy, OtlpIngestor, Signal, Unavailable
from agenttrail.otlp._tls import cert_identities
from agenttrail.otlp._wire import BadRequest, UnsupportedMediaType

log = logging.getLogger("agenttrail.otlp")

ROUTES: dict[str, Signal] = {"/v1/traces": "traces", "/v1/logs": "logs"}
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 4318
HANDSHAKE_TIMEOUT_S = 30.0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def status_body(code: int, message: str, json_body: bool) -> tuple[bytes, str]:
    """A ``google.rpc.Status`` (gRPC ``code``, ``message``) in protobuf or JSON."""
    if json_body:
        return json.dumps({"code": code, "message": message}).encode(), "application/json"
    text = message.encode()
    body = b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return body, "application/x-protobuf"


class _Handler(BaseHTTPRequestHandler):
    server: OtlpHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, b'{"status":"ok"}', "application/json")
        else:
            self._reply(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        signal = ROUTES.get(self.path.split("?", 1)[0])
        wants_json = (self.headers.get("Content-Type") or "").startswith("application/json")
        if signal is None:
            self._status(
                404, 5, f"No OTLP endpoint at {self.path}; use /v1/traces or /v1/logs.", wants_json
            )
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._status(411, 3, "Content-Length is required.", wants_json)
            return
        size = int(length)
        ingestor = self.server.ingestor
        if size > ingestor.max_body_bytes:
            self._status(
                413,
                8,
                f"Body of {size} bytes is over the {ingestor.max_body_bytes}-byte limit; "
                "send smaller batches.",
                wants_json,
                close=True,
            )
            return
        body = self.rfile.read(size)
        try:
            outcome, encoding = ingestor.handle(
                signal,
                body,
                content_type=self.headers.get("Content-Type"),
                content_encoding=self.headers.get("Content-Encoding"),
                authorization=self.headers.get("Authorization"),
                peer_identities=self._peer_identities(),
            )
        except AuthError as exc:
            self._status(exc.status, 16 if exc.status == 401 else 7, str(exc), wants_json)
        except UnsupportedMediaType as exc:
            self._status(415, 3, str(exc), wants_json)
        except BadRequest as exc:
            self._status(400, 3, str(exc), wants_json)
        except Busy as exc:
            self._status(429, 8, str(exc), wants_json, retry_after=exc.retry_after_s)
        except Unavailable as exc:
            self._status(503, 14, str(exc), wants_json, retry_after=exc.retry_after_s)
        except Exception as exc:  # a bug must not kill the server thread silently
            log.exception("OTLP receiver failed on a %s request", signal)
            self._status(500, 13, f"internal error: {type(exc).__name__}", wants_json)
        else:
            ctype = "application/json" if encoding == "json" else "application/x-protobuf"
            self._reply(200, outcome.body, ctype)

    def _peer_identities(self) -> tuple[str, ...]:
        if not isinstance(self.connection, ssl.SSLSocket):
            return ()
        return cert_identities(self.connection.getpeercert())

    def _status(
        self,
        http: int,
        code: int,
        message: str,
        json_body: bool,
        *,
        retry_after: int | None = None,
        close: bool = False,
    ) -> None:
        body, ctype = status_body(code, message, json_body)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._reply(http, body, ctype, headers, close=close)

    def _reply(
        self,
        http: int,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.send_response(http)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


class OtlpHttpServer(ThreadingHTTPServer):
    """A threading HTTP server bound to ``host:port`` serving one :class:`OtlpIngestor`.

    ``port=0`` picks a free port (see :attr:`url`). :meth:`start` serves on a daemon
    thread and sweeps expired pending log records every ``sweep_every_s`` seconds.
    ``tls`` (see ``_tls.server_context``) makes it HTTPS, with client certificates when
    the context asks for them; a connection whose handshake fails is closed and logged
    at debug level, and never reaches the ingestor.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        ingestor: OtlpIngestor,
        host: str = LOOPBACK,
        port: int = DEFAULT_PORT,
        sweep_every_s: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ):
        super().__init__((host, port), _Handler)
        self.tls = tls
        self.ingestor = ingestor
        self.sweep_every_s = sweep_every_s
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Handshake (with TLS) on this connection's thread, then serve its requests."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        raw: socket.socket = request
        raw.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            secure = self.tls.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            raw.close()
            return
        # wrap_socket took over the descriptor: the socket socketserver closes after
        # this returns is an empty shell, so the TLS socket is closed here.
        try:
            secure.settimeout(None)
            super().finish_request(secure, client_address)
        finally:
            with contextlib.suppress(OSError):
                secure.shutdown(socket.SHUT_RDWR)
            secure.close()

    def start(self) -> OtlpHttpServer:
        serve = threading.Thread(target=self.serve_forever, name="agenttrail-otlp", daemon=True)
        sweep = threading.Thread(target=self._sweep, name="agenttrail-otlp-sweep", daemon=True)
        self._workers = [serve, sweep]
        for t in self._workers:
            t.start()
        return self

    def _sweep(self) -> None:
        while not self._stop.wait(self.sweep_every_s):
            try:
                self.ingestor.sweep()
            except Exception:
                log.exception("OTLP receiver: sweeping pending log records failed; retrying")

    def stop(self) -> None:
        """Stop serving (requests in progress finish), then close the socket."""
        self._stop.set()
        self.shutdown()
        self.server_close()
        for t in self._workers:
            t.join(timeout=5)
