"""Open an in-process store that ``agenttrail up`` holds, through its read endpoint.

chdb lets one process host a store directory. While ``up`` (or ``demo``) holds it, it
serves read-only queries on a loopback endpoint that it announces in ``up.json`` beside
the store (see ``agenttrail.embedded._read_server``); a reading command that finds the
directory locked by that very process connects there instead, with an ordinary
clickhouse-connect HTTP client, and gets the same rows and errors.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect

from agenttrail.store._config import StoreTarget
from agenttrail.store._errors import StoreUnavailable

READ_USER = "agenttrail"
"""User name sent to the read endpoint; the token from ``up.json`` is the password."""

log = logging.getLogger("agenttrail.store")


def served_endpoint(store_dir: Path, holder_pid: int | None) -> tuple[str, str] | None:
    """The (url, token) that the holder of ``store_dir`` announced, if it serves reads.

    Only an ``up.json`` beside the store, written by the process that holds the lock,
    counts: a stale file of a stopped stack is ignored.
    """
    try:
        info = json.loads((store_dir.parent / "up.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    url, token = info.get("read_endpoint"), info.get("read_token")
    if not isinstance(url, str) or not isinstance(token, str):
        return None
    if holder_pid is not None and info.get("pid") != holder_pid:
        return None
    if Path(str(info.get("store", ""))).resolve() != store_dir.resolve():
        return None
    return url, token


def open_served_client(
    target: StoreTarget, url: str, token: str, timeout_s: float
) -> clickhouse_connect.driver.client.Client:
    """A clickhouse-connect client of the read endpoint, checked with one query.

    Raises:
        StoreUnavailable: the endpoint does not answer or refuses the token.
    """
    parts = urlsplit(url)
    try:
        client = clickhouse_connect.get_client(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 80,
            username=READ_USER,
            password=token,
            compress=False,
            connect_timeout=timeout_s,
            autogenerate_session_id=False,
        )
        client.query("SELECT 1")
    except Exception as exc:  # connection and HTTP errors come in many types
        raise StoreUnavailable(
            f"Store {target.masked} is held by a running `agenttrail up`, whose read "
            f"endpoint {url} did not answer ({type(exc).__name__}). Retry, or stop it.",
            target.masked,
        ) from exc
    return client
