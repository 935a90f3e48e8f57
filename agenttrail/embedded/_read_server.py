"""Reads of the in-process store for other processes, while ``agenttrail up`` holds it.

chdb hosts a store directory in one process only, so while ``up`` ingests, a reading
command in another process cannot open the directory. ``up`` therefore serves reads
on a loopback HTTP endpoint that speaks the part of ClickHouse's HTTP interface that
clickhouse-connect uses for queries (query in the body or the ``query`` parameter,
``param_*`` bindings, ``database``, ``FORMAT`` at the end, ClickHouse's error text and
codes). The reading side is then an ordinary clickhouse-connect HTTP client, so every
reading command returns the same rows and errors as against the directory itself.

Guarantees:

* Read only: every query runs on its own engine handle with ``readonly = 2`` (settings
  may change; no INSERT, DDL or ``readonly`` change), so the endpoint cannot alter the
  record.
* Reads do not stall ingestion: each request runs on a handle of its own (not the
  ingest store's, whose lock serialises the consumer), chdb releases the GIL while a
  query runs, ``read_max_threads`` can cap a read's threads to leave cores to the
  consumer, and ``max_execution_time`` ends a runaway read.
* Loopback only, and a token: the token is in ``up.json`` (mode 0600) beside the store;
  a request without it gets ClickHouse's AUTHENTICATION_FAILED.
* ``GET /agenttrail/status`` (same token) answers the stack's status as JSON, for
  ``agenttrail status``.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import queue
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

READ_USER = "agenttrail"
"""User name the reading side sends; the token is the password."""

STATUS_PATH = "/agenttrail/status"

_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HANDLE_WAIT_S = 30.0
_UNSUPPORTED = (
    "DB::Exception: compressed or multipart requests are not supported by the read "
    "endpoint. (NOT_IMPLEMENTED)"
)
_BUSY = "TOO_MANY_SIMULTANEOUS_QUERIES"


class _HandlePool:
    """Read-only engine handles on the store, created on demand, at most ``size``."""

    def __init__(self, path: Path, size: int, settings: dict[str, int]) -> None:
        self._path = path
        self._settings = settings
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def handle(self) -> Iterator[Any]:
        """Borrow a handle; raises TimeoutError when all are busy for too long."""
        if not self._slots.acquire(timeout=_HANDLE_WAIT_S):
            raise TimeoutError("every read handle is busy")
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._open()
            try:
                yield conn
            finally:
                self._idle.put(conn)
        finally:
            self._slots.release()

    def _open(self) -> Any:
        import chdb

        with self._lock:
            if self._closed:
                raise TimeoutError("the read endpoint is stopping")
            conn = chdb.connect(str(self._path))  # type: ignore[no-untyped-call]
            self._all.append(conn)
        for name, value in self._settings.items():
            if value:
                conn.query(f"SET {name} = {int(value)}")
        conn.query("SET readonly = 2")  # last: it forbids changing readonly afterwards
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handles, self._all = self._all, []
        for conn in handles:
            with contextlib.suppress(Exception):
                conn.close()


class ReadServer:
    """The loopback read endpoint of a running stack.

    Args:
        store_path: the in-process store directory (already open in this process).
        token: the secret a client must send (as the password of user ``agenttrail``).
        status: returns the stack's status as a JSON-ready dict (for ``/agenttrail/status``).
        handles: at most this many queries run at once; more wait (up to 30 s).
        read_max_threads: ``max_threads`` of each read query; 0 is the engine's default
            (every core), the same as a read of the stopped store.
        max_execution_time_s: a read running longer is stopped by the engine.
    """

    def __init__(
        self,
        store_path: Path,
        token: str,
        status: Callable[[], dict[str, Any]],
        *,
        handles: int = 4,
        read_max_threads: int = 0,
        max_execution_time_s: int = 600,
    ) -> None:
        self._token = token
        self._status = status
        self._pool = _HandlePool(
            store_path,
            handles,
            {"max_threads": read_max_threads, "max_execution_time": max_execution_time_s},
        )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timezone = "UTC"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        assert self._server is not None, "start() first"
        port = int(self._server.server_address[1])
        return f"http://127.0.0.1:{port}"

    def start(self) -> ReadServer:
        """Bind a free loopback port and serve in a daemon thread. Returns at once."""
        with self._pool.handle() as conn:
            answer = bytes(conn.query("SELECT timezone()", "TabSeparated").bytes())
            self._timezone = answer.decode().strip() or "UTC"
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="agenttrail-read-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the read handles. Blocks until the loop has ended."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._pool.close()

    # -- request handling ----------------------------------------------------------

    def _authorised(self, headers: Any) -> bool:
        supplied = headers.get("X-ClickHouse-Key")
        auth = headers.get("Authorization", "")
        if supplied is None and auth.startswith("Basic "):
            with contextlib.suppress(ValueError):
                supplied = base64.b64decode(auth[6:]).decode().partition(":")[2]
        return supplied is not None and hmac.compare_digest(supplied, self._token)

    def _run(self, sql: str, params: dict[str, str]) -> tuple[bytes, str]:
        binds = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        fmt = "TabSeparated"
        match = _TRAILING_FORMAT.search(sql)
        if match:
            fmt, sql = match.group(1), sql[: match.start()]
        database = params.get("database")
        if database is not None and not _IDENT.match(database):
            raise ValueError(f"Code: 81. DB::Exception: Database {database!r} is not valid.")
        with self._pool.handle() as conn:
            if database:
                conn.query(f"USE {database}")
            result = conn.query(sql, fmt, params=binds) if binds else conn.query(sql, fmt)
            return bytes(result.bytes()), fmt

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                return  # the stack's status line is the log

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, code: int, message: str) -> None:
                text = message if message.startswith("Code:") else f"Code: {code}. {message}"
                self._reply(
                    status,
                    text.encode(),
                    {"X-ClickHouse-Exception-Code": str(code), "Content-Type": "text/plain"},
                )

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                params = dict(parse_qsl(parts.query, keep_blank_values=True))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not server._authorised(self.headers):
                    self._error(
                        403,
                        516,
                        "DB::Exception: agenttrail up's read endpoint: wrong or missing token "
                        "(the one in up.json beside the store). (AUTHENTICATION_FAILED)",
                    )
                    return
                if parts.path == STATUS_PATH:
                    data = json.dumps(server._status(), default=str).encode()
                    self._reply(200, data, {"Content-Type": "application/json"})
                    return
                if self.headers.get("Content-Encoding") or "multipart" in (
                    self.headers.get("Content-Type") or ""
                ):
                    self._error(400, 48, _UNSUPPORTED)
                    return
                sql = "\n".join(
                    p for p in (params.get("query", ""), body.decode("utf-8", "replace")) if p
                ).strip()
                try:
                    data, fmt = server._run(sql, params)
                except TimeoutError as exc:
                    self._error(
                        503, 202, f"DB::Exception: {exc}; retry. (TOO_MANY_SIMULTANEOUS_QUERIES)"
                    )
                    return
                except Exception as exc:  # the engine's error text carries its code
                    text = str(exc)
                    found = _ERROR_CODE.search(text)
                    start = text.find("Code:")
                    self._error(
                        500,
                        int(found.group(1)) if found else 1001,
                        text[start:] if start >= 0 else text,
                    )
                    return
                self._reply(
                    200,
                    data,
                    {
                        "X-ClickHouse-Format": fmt,
                        "X-ClickHouse-Timezone": server._timezone,
                        "Content-Type": "application/octet-stream",
                    },
                )

        return Handler
