"""Grafana: push agenttrail's data source, folder and dashboards through its HTTP API."""

from agenttrail.grafana._push import (
    FOLDER_UID,
    GrafanaPusher,
    GrafanaPushError,
    PushChange,
    desired_datasource,
    load_dashboards,
)

__all__ = [
    "FOLDER_UID",
    "GrafanaPushError",
    "GrafanaPusher",
    "PushChange",
    "desired_datasource",
    "load_dashboards",
]
