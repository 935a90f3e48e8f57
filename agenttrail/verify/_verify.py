"""``verify_store``: every check ``agenttrail verify`` runs, in one report."""

from __future__ import annotations

from datetime import datetime

from agenttrail.events import SchemaRegistry, default_registry
from agenttrail.store import Store
from agenttrail.verify._engine import DEFAULT_MAX_FINDINGS, check_chains
from agenttrail.verify._findings import VerifyReport
from agenttrail.verify._producers import reconcile_producers


def verify_store(
    store: Store,
    *,
    tenant: str | None = None,
    task_id: str | None = None,
    since: datetime | None = None,
    registry: SchemaRegistry | None = None,
    max_findings: int = DEFAULT_MAX_FINDINGS,
) -> VerifyReport:
    """Check the chains of the selected tasks and reconcile every producer's sequence.

    The producer reconciliation covers the tenant (or the whole store); with ``task_id``
    only that task's chains are checked. Read-only; blocks for a few scans.

    Raises:
        StoreUnavailable: the store failed a query (e.g. it is not migrated).
    """
    registry = registry or default_registry()
    report = check_chains(
        store, tenant=tenant, task_id=task_id, since=since, registry=registry,
        max_findings=max_findings,
    )  # fmt: skip
    if task_id is None:
        producers, findings = reconcile_producers(store, registry, tenant=tenant, since=since)
        report.producers = producers
        report.findings.extend(findings)
    return report


__all__ = ["verify_store"]
