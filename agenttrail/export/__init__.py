"""Compliance exports: the selected tasks' events as JSON Lines, CSV or Parquet, with a
manifest that lets an auditor re-check the export without access to the database.

Example:
    >>> manifest = export_store(store, Path("./audit"), fmt="parquet")   # doctest: +SKIP
    >>> check_export(Path("./audit")).ok                                 # doctest: +SKIP
    True
"""

from agenttrail.export._check import check_export, load_manifest
from agenttrail.export._export import MANIFEST, ExportError, ExportFilters, export_store
from agenttrail.export._formats import FORMATS

__all__ = [
    "FORMATS",
    "MANIFEST",
    "ExportError",
    "ExportFilters",
    "check_export",
    "export_store",
    "load_manifest",
]
