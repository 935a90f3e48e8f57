"""A Grafana of the tests' own on loopback: the HTTP API endpoints ``dashboards push`` uses,
answering like Grafana (status codes, bodies, ids and versions it assigns), recording
every request. Accepts one bearer token or one basic-auth user; anything else is 401."""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "glsa_test_token"
USER = ("admin", "grafana-admin-pw")


@dataclass
class GrafanaState:
    """What the double holds; tests read it as ground truth."""

    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any, str]] = field(default_factory=list)
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.requests if m != "GET"]


class _Handler(BaseHTTPRequestHandler):
    state: GrafanaState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _authorized(self, header: str) -> bool:
        basic = base64.b64encode(f"{USER[0]}:{USER[1]}".encode()).decode()
        return header in (f"Bearer {TOKEN}", f"Basic {basic}")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("Authorization", "")
        state = self.state
        with state.lock:
            state.requests.append((method, self.path, copy.deepcopy(body), auth))
            if not self._authorized(auth):
                self._send(401, {"message": "Unauthorized"})
                return
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:1] != ["api"]:
                self._send(404, {"message": "Not found"})
                return
            self._route(method, parts[1:], body)

    def _route(self, method: str, parts: list[str], body: Any) -> None:
        s = self.state
        if parts[:2] == ["datasources", "uid"] and len(parts) == 3:
            uid = parts[2]
            if method == "GET":
                if uid not in s.datasources:
                    self._send(404, {"message": "Data source not found"})
                else:
                    shown = dict(s.datasources[uid])
                    shown["secureJsonFields"] = {k: True for k in s.secrets.get(uid, {})}
                    self._send(200, shown)
            elif method == "PUT":
                if uid not in s.datasources:
                    self._send(404, {"message": "Data source not found"})
                    return
                self._store_datasource(uid, body, s.datasources[uid]["id"])
                self._send(200, {"message": "Datasource updated", "id": s.datasources[uid]["id"]})
        elif parts == ["datasources"] and method == "POST":
            if any(d["name"] == body["name"] for d in s.datasources.values()):
                self._send(409, {"message": "data source with the same name already exists"})
                return
            uid = body.get("uid") or f"ds{s.next_id}"
            self._store_datasource(uid, body, s.next_id)
            s.next_id += 1
            self._send(200, {"message": "Datasource added", "datasource": s.datasources[uid]})
        elif parts[:1] == ["folders"] and len(parts) == 2 and method == "GET":
            folder = s.folders.get(parts[1])
            if folder is None:
                self._send(404, {"message": "folder not found", "status": "not-found"})
            else:
                self._send(200, folder)
        elif parts == ["folders"] and method == "POST":
            uid = body.get("uid") or f"f{s.next_id}"
            if uid in s.folders:
                self._send(409, {"message": "a folder with the same uid already exists"})
                return
            s.folders[uid] = {"id": s.next_id, "uid": uid, "title": body["title"], "version": 1}
            s.next_id += 1
            self._send(200, s.folders[uid])
        elif parts[:2] == ["dashboards", "uid"] and len(parts) == 3 and method == "GET":
            stored = s.dashboards.get(parts[2])
            if stored is None:
                self._send(404, {"message": "Dashboard not found"})
            else:
                self._send(200, copy.deepcopy(stored))
        elif parts == ["dashboards", "db"] and method == "POST":
            self._save_dashboard(body)
        else:
            self._send(404, {"message": "Not found"})

    def _store_datasource(self, uid: str, body: dict[str, Any], ds_id: int) -> None:
        s = self.state
        secrets = body.pop("secureJsonData", None)
        if secrets:
            s.secrets.setdefault(uid, {}).update(secrets)
        s.datasources[uid] = {
            "id": ds_id,
            "uid": uid,
            "orgId": 1,
            "isDefault": False,
            "basicAuth": False,
            "readOnly": False,
            **body,
        }

    def _save_dashboard(self, body: dict[str, Any]) -> None:
        s = self.state
        board = dict(body["dashboard"])
        folder = body.get("folderUid")
        if folder and folder not in s.folders:
            self._send(400, {"message": "folder not found"})
            return
        uid = board["uid"]
        existing = s.dashboards.get(uid)
        if existing is not None and not body.get("overwrite"):
            self._send(412, {"message": "The dashboard has been changed by someone else"})
            return
        version = (existing["dashboard"]["version"] + 1) if existing else 1
        board_id = existing["dashboard"]["id"] if existing else s.next_id
        if existing is None:
            s.next_id += 1
        board.update(id=board_id, version=version)
        s.dashboards[uid] = {
            "dashboard": board,
            "meta": {"folderUid": folder or "", "slug": uid, "version": version},
        }
        self._send(
            200,
            {
                "id": board_id,
                "uid": uid,
                "status": "success",
                "version": version,
                "url": f"/d/{uid}",
            },
        )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


@contextmanager
def grafana() -> Iterator[tuple[str, GrafanaState]]:
    """Run the double on a free loopback port; yield its URL and state."""
    state = GrafanaState()
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
