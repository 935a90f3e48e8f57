"""A Schema Registry of the tests' own, on loopback, answering like Confluent's REST API.

It chooses its own ids (a global counter, one id per distinct schema across subjects, as
Confluent does), can start out holding other teams' subjects (so the packaged file ids
1-5 belong to someone else), records every request, and can be switched off (503).
Only the endpoints agenttrail uses are implemented; anything else answers 404.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import avro.schema
import fastavro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

FOREIGN_SCHEMAS = {
    "billing-com.acme.billing.Invoice": {
        "type": "record",
        "name": "Invoice",
        "namespace": "com.acme.billing",
        "fields": [{"name": "invoice_id", "type": "string"}, {"name": "cents", "type": "long"}],
    },
    "billing-com.acme.billing.Refund": {
        "type": "record",
        "name": "Refund",
        "namespace": "com.acme.billing",
        "fields": [{"name": "refund_id", "type": "string"}],
    },
    "crm-com.acme.crm.Lead": {
        "type": "record",
        "name": "Lead",
        "namespace": "com.acme.crm",
        "fields": [{"name": "email", "type": "string"}],
    },
    "crm-com.acme.crm.Call": {
        "type": "record",
        "name": "Call",
        "namespace": "com.acme.crm",
        "fields": [{"name": "minutes", "type": "int"}],
    },
    "crm-com.acme.crm.Note": {
        "type": "record",
        "name": "Note",
        "namespace": "com.acme.crm",
        "fields": [{"name": "text", "type": "string"}],
    },
}
"""Five records of other teams, registered first: they get ids 1-5."""


@dataclass
class RegistryState:
    """What the double holds; tests read it as ground truth."""

    next_id: int = 1
    schemas: dict[int, str] = field(default_factory=dict)
    canonical_ids: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, subject: str, schema: str) -> int:
        """Register like Confluent: the same schema gets the same id in any subject."""
        key = str(fastavro.schema.to_parsing_canonical_form(json.loads(schema)))
        schema_id = self.canonical_ids.get(key)
        if schema_id is None:
            schema_id = self.next_id
            self.next_id += 1
            self.canonical_ids[key] = schema_id
            self.schemas[schema_id] = schema
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def refuses(self, subject: str, schema: str) -> str | None:
        """Why the subject's compatibility level refuses ``schema`` (None: accepted).

        BACKWARD_TRANSITIVE and BACKWARD as Confluent defines them: the new schema must
        read data written with every earlier version (or the latest one), checked with
        the avro package's checker.
        """
        level = self.config.get(subject, "BACKWARD")
        versions = self.subjects.get(subject, [])
        if self.find(subject, schema) is not None or not versions:
            return None
        if level == "BACKWARD_TRANSITIVE":
            earlier = versions
        elif level == "BACKWARD":
            earlier = versions[-1:]
        else:
            return None
        reader = avro.schema.parse(schema)
        for schema_id in earlier:
            writer = avro.schema.parse(self.schemas[schema_id])
            result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                return (
                    f"Schema being registered is incompatible with an earlier schema for "
                    f'subject "{subject}", details: {sorted(result.messages)}'
                )
        return None

    def find(self, subject: str, schema: str) -> tuple[int, int] | None:
        key = str(fastavro.schema.to_parsing_canonical_form(json.loads(schema)))
        schema_id = self.canonical_ids.get(key)
        versions = self.subjects.get(subject, [])
        if schema_id is None or schema_id not in versions:
            return None
        return schema_id, versions.index(schema_id) + 1


class _Handler(BaseHTTPRequestHandler):
    state: RegistryState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, code: int, message: str) -> None:
        self._send(status, {"error_code": code, "message": message})

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        state = self.state
        with state.lock:
            state.requests.append((method, path, body))
            if state.down:
                self._error(503, 50003, "Error while forwarding the request to the leader")
                return
            parts = path.strip("/").split("/")
            if parts[:2] == ["schemas", "ids"] and len(parts) in (3, 4) and method == "GET":
                schema_id = int(parts[2])
                if schema_id not in state.schemas:
                    self._error(404, 40403, "Schema not found")
                elif len(parts) == 3:
                    self._send(200, {"schema": state.schemas[schema_id]})
                else:
                    self._send(
                        200,
                        [
                            {"subject": s, "version": ids.index(schema_id) + 1}
                            for s, ids in state.subjects.items()
                            if schema_id in ids
                        ],
                    )
            elif parts[0] == "subjects" and len(parts) == 3 and parts[2] == "versions":
                if method == "POST":
                    refusal = state.refuses(parts[1], body["schema"])
                    if refusal is not None:
                        self._error(409, 409, refusal)
                    else:
                        self._send(200, {"id": state.add(parts[1], body["schema"])})
                else:
                    ids = state.subjects.get(parts[1])
                    if ids is None:
                        self._error(404, 40401, f"Subject '{parts[1]}' not found.")
                    else:
                        self._send(200, list(range(1, len(ids) + 1)))
            elif parts[0] == "subjects" and len(parts) == 2 and method == "POST":
                if parts[1] not in state.subjects:
                    self._error(404, 40401, f"Subject '{parts[1]}' not found.")
                    return
                found = state.find(parts[1], body["schema"])
                if found is None:
                    self._error(404, 40403, "Schema not found")
                else:
                    self._send(
                        200,
                        {
                            "subject": parts[1],
                            "id": found[0],
                            "version": found[1],
                            "schema": state.schemas[found[0]],
                        },
                    )
            elif parts[0] == "config" and len(parts) == 2:
                if method == "PUT":
                    state.config[parts[1]] = body["compatibility"]
                    self._send(200, {"compatibility": body["compatibility"]})
                elif parts[1] in state.config:
                    self._send(200, {"compatibilityLevel": state.config[parts[1]]})
                else:
                    self._error(
                        404,
                        40408,
                        f"Subject '{parts[1]}' does not have subject-level "
                        "compatibility configured",
                    )
            else:
                self._error(404, 404, "HTTP 404 Not Found")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


@contextmanager
def schema_registry(foreign: bool = True) -> Iterator[tuple[str, RegistryState]]:
    """Run a registry double on a free loopback port; yield its URL and its state.

    Args:
        foreign: start out holding :data:`FOREIGN_SCHEMAS` (ids 1-5).
    """
    state = RegistryState()
    if foreign:
        for subject, schema in FOREIGN_SCHEMAS.items():
            state.add(subject, json.dumps(schema))
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
