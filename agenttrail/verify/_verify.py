"""``verify_store``: every check ``agenttrail verify`` runs, in one report."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from agenttrail.events import PublicKeys, SchemaRegistry, default_registry
from agenttrail.store import Store
from agenttrail.verify._checkpoints import check_checkpoints
from agenttrail.verify._engine import DEFAULT_MAX_FINDINGS, check_chains
from agenttrail.verify._findings import Finding, FindingKind, VerifyReport
from agenttrail.verify._producers import reconcile_producers


def verify_store(
    store: Store,
    *,
    tenant: str | None = None,
    task_id: str | None = None,
    since: datetime | None = None,
    registry: SchemaRegistry | None = None,
    max_findings: int = DEFAULT_MAX_FINDINGS,
    public_keys: Iterable[str] | None = None,
    require_closed: bool = False,
) -> VerifyReport:
    """Check the chains of the selected tasks, reconcile every producer against its
    checkpoints, and check that every chain head a checkpoint names is still stored.

    The producer reconciliation covers the tenant (or the whole store); with ``task_id``
    only that task's chains and heads are checked. With ``public_keys`` (base64 Ed25519
    keys) every checkpoint must carry a valid signature by one of them, and every
    producer with stored events at least one checkpoint. With ``require_closed`` (an
    archive of finished runs) every producer's newest checkpoint must be its final one:
    a stream whose end was cut off, final checkpoint included, is then reported too.
    Read-only; blocks for a few scans.

    Raises:
        StoreUnavailable: the store failed a query (e.g. it is not migrated).
        ValueError: a public key is not 32 bytes of base64.
    """
    registry = registry or default_registry()
    keys = PublicKeys(public_keys) if public_keys is not None else None
    report = check_chains(
        store, tenant=tenant, task_id=task_id, since=since, registry=registry,
        max_findings=max_findings,
    )  # fmt: skip
    checkpoints, findings = check_checkpoints(
        store, registry, tenant=tenant, task_id=task_id, since=since, public_keys=keys,
        max_findings=max_findings,
    )  # fmt: skip
    report.findings.extend(findings)
    if task_id is not None:
        return report
    producers, findings = reconcile_producers(store, registry, tenant=tenant, since=since)
    report.producers = producers
    report.findings.extend(findings)
    for rec in producers:
        cp = checkpoints.get(rec.producer_id)
        if require_closed and (cp is None or not cp.closed):
            newest = "no checkpoint" if cp is None else f"checkpoint {cp.newest} is not final"
            report.findings.append(
                Finding(
                    kind=FindingKind.STREAM_OPEN, tenant="", task_id="",
                    producer_id=rec.producer_id, seq=rec.produced,
                    detail=f"{newest}: the producer never closed, or its stream was cut; "
                    f"whatever it sealed from producer_seq {rec.produced} on is unaccounted "
                    "for",
                )
            )  # fmt: skip
        if cp is None:
            if keys:
                report.findings.append(
                    Finding(
                        kind=FindingKind.UNSIGNED_CHECKPOINT, tenant="", task_id="",
                        producer_id=rec.producer_id,
                        detail=f"{rec.stored} events stored, but no checkpoint of this "
                        "producer: nothing signed vouches for them",
                    )
                )  # fmt: skip
            continue
        rec.checkpoints, rec.signed, rec.closed = cp.checkpoints, cp.signed, cp.closed
        rec.produced = max(rec.produced, cp.produced)
    return report


__all__ = ["verify_store"]
