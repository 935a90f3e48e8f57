"""Push the ClickHouse data source, a folder and every dashboard to a Grafana, idempotently.

What is pushed is what Grafana's file provisioning reads on start
(``dashboards/provisioning/datasources/clickhouse.yaml`` and ``dashboards/*.json``), so a
Grafana provisioned from files and one pushed to through the API show the same thing.
Each object is read first and written only when it is missing or differs; the result
lists what was created, updated or left unchanged. Uses ``grafana-client`` (the
``grafana`` extra).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agenttrail._contracts import dashboards_dir

FOLDER_UID = "agenttrail"
FOLDER_TITLE = "agenttrail"
_VOLATILE = ("id", "version")


class GrafanaPushError(RuntimeError):
    """Grafana refused or did not answer; the message says which object and what to do."""


@dataclass(frozen=True)
class PushChange:
    """One object and what the push did to it.

    Attributes:
        kind: ``datasource``, ``folder`` or ``dashboard``.
        uid: the object's uid.
        title: its name or title.
        action: ``created``, ``updated`` or ``unchanged``.
    """

    kind: str
    uid: str
    title: str
    action: str

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


def load_dashboards(root: Path | None = None) -> list[dict[str, Any]]:
    """Every dashboard JSON under ``root`` (the packaged ``dashboards/``), by file name.

    Raises:
        GrafanaPushError: a file is not a dashboard (no uid or title, or not JSON).
    """
    root = root or dashboards_dir()
    boards = []
    for path in sorted(root.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GrafanaPushError(f"Cannot read dashboard {path}: {exc}") from exc
        if not isinstance(doc, dict) or not doc.get("uid") or not doc.get("title"):
            raise GrafanaPushError(f"{path} is not a dashboard: it needs a uid and a title.")
        boards.append(doc)
    if not boards:
        raise GrafanaPushError(f"No dashboards (*.json) in {root}.")
    return boards


def desired_datasource(
    clickhouse_url: str | None = None, password: str | None = None, root: Path | None = None
) -> tuple[dict[str, Any], str | None]:
    """The data source of the provisioning file, optionally pointed elsewhere.

    Args:
        clickhouse_url: ``http(s)://user[:password]@host:port/database`` as Grafana's
            server reaches ClickHouse; the provisioning file's values by default.
        password: the ClickHouse password (wins over one in the URL).

    Returns:
        The data source body without secrets, and the password (None when not given).
    """
    root = root or dashboards_dir()
    provisioning = root / "provisioning" / "datasources" / "clickhouse.yaml"
    source = dict(yaml.safe_load(provisioning.read_text())["datasources"][0])
    source.pop("secureJsonData", None)
    source.pop("isDefault", None)
    json_data = dict(source.get("jsonData", {}))
    if clickhouse_url:
        parts = urllib.parse.urlsplit(clickhouse_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GrafanaPushError(
                f"ClickHouse URL for Grafana must be http(s)://user:password@host:port/db, "
                f"not {parts.scheme or 'no scheme'}://{parts.hostname or ''}."
            )
        json_data.update(
            host=parts.hostname,
            port=parts.port or (8443 if parts.scheme == "https" else 8123),
            protocol="http",
            secure=parts.scheme == "https",
        )
        if parts.username:
            json_data["username"] = urllib.parse.unquote(parts.username)
        if parts.path.strip("/"):
            json_data["defaultDatabase"] = parts.path.strip("/")
        if password is None and parts.password:
            password = urllib.parse.unquote(parts.password)
    source["jsonData"] = json_data
    source["access"] = "proxy"
    return source, password


class GrafanaPusher:
    """Creates or updates agenttrail's objects through a ``grafana_client.GrafanaApi``.

    Blocking; every call is one HTTP request. Raises :class:`GrafanaPushError` naming the
    object when Grafana refuses or does not answer; what was pushed before stays pushed.
    """

    def __init__(self, api: Any, url: str):
        self.api = api
        self.url = url

    def push(
        self,
        datasource: dict[str, Any],
        password: str | None,
        dashboards: list[dict[str, Any]],
    ) -> list[PushChange]:
        """Push the data source, the folder, then each dashboard (in the folder)."""
        changes = [self._datasource(datasource, password), self._folder()]
        changes += [self._dashboard(board) for board in dashboards]
        return changes

    def _datasource(self, desired: dict[str, Any], password: str | None) -> PushChange:
        uid = str(desired["uid"])
        existing = self._get("data source", uid, self.api.datasource.get_datasource_by_uid, uid)
        body = dict(desired)
        if existing is None:
            if password is not None:
                body["secureJsonData"] = {"password": password}
            self._call("data source", uid, self.api.datasource.create_datasource, body)
            return PushChange("datasource", uid, str(desired["name"]), "created")
        has_password = bool((existing.get("secureJsonFields") or {}).get("password"))
        same = all(existing.get(k) == v for k, v in desired.items() if k != "jsonData")
        same = same and all(
            (existing.get("jsonData") or {}).get(k) == v for k, v in desired["jsonData"].items()
        )
        needs_password = password is not None and not has_password
        if same and not needs_password:
            return PushChange("datasource", uid, str(desired["name"]), "unchanged")
        if password is not None:
            body["secureJsonData"] = {"password": password}
        self._call("data source", uid, self.api.datasource.update_datasource_by_uid, uid, body)
        return PushChange("datasource", uid, str(desired["name"]), "updated")

    def _folder(self) -> PushChange:
        existing = self._get("folder", FOLDER_UID, self.api.folder.get_folder, FOLDER_UID)
        if existing is None:
            self._call(
                "folder", FOLDER_UID, self.api.folder.create_folder, FOLDER_TITLE, uid=FOLDER_UID
            )
            return PushChange("folder", FOLDER_UID, FOLDER_TITLE, "created")
        return PushChange("folder", FOLDER_UID, str(existing.get("title")), "unchanged")

    def _dashboard(self, board: dict[str, Any]) -> PushChange:
        uid, title = str(board["uid"]), str(board["title"])
        existing = self._get("dashboard", uid, self.api.dashboard.get_dashboard, uid)
        if existing is not None:
            stored = {k: v for k, v in existing.get("dashboard", {}).items() if k not in _VOLATILE}
            ours = {k: v for k, v in board.items() if k not in _VOLATILE}
            folder = (existing.get("meta") or {}).get("folderUid")
            if stored == ours and folder == FOLDER_UID:
                return PushChange("dashboard", uid, title, "unchanged")
        payload = {
            "dashboard": {**board, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "agenttrail dashboards push",
        }
        self._call("dashboard", uid, self.api.dashboard.update_dashboard, payload)
        return PushChange("dashboard", uid, title, "created" if existing is None else "updated")

    def _get(self, what: str, uid: str, method: Any, *args: Any) -> dict[str, Any] | None:
        from grafana_client.client import GrafanaClientError

        try:
            found = self._call(what, uid, method, *args, passthrough=(GrafanaClientError,))
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise self._refused(what, uid, exc) from exc
        return found if isinstance(found, dict) else None

    def _call(
        self,
        what: str,
        uid: str,
        method: Any,
        /,
        *args: Any,
        passthrough: tuple[type[BaseException], ...] = (),
        **kwargs: Any,
    ) -> Any:
        from grafana_client.client import GrafanaException

        try:
            return method(*args, **kwargs)
        except passthrough:
            raise
        except GrafanaException as exc:
            raise self._refused(what, uid, exc) from exc
        except Exception as exc:  # niquests' connection errors are not GrafanaException
            raise GrafanaPushError(
                f"Grafana at {self.url} did not answer while pushing {what} {uid!r}: {exc}. "
                "Check the URL and that Grafana runs."
            ) from exc

    def _refused(self, what: str, uid: str, exc: Any) -> GrafanaPushError:
        status = getattr(exc, "status_code", 0)
        hint = ""
        if status in (401, 403):
            hint = (
                " Pass a service account token with the Editor role (--token) or an admin "
                "--user and password."
            )
        return GrafanaPushError(
            f"Grafana at {self.url} refused {what} {uid!r}: {getattr(exc, 'message', exc)}.{hint}"
        )
