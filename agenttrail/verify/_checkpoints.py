"""Reconcile the store against the producers' checkpoints, in the engine.

The checkpoints table is small (one row per producer per interval); its heads are
unnested in the engine and compared with the event tables there, so only the heads
that are *not* stored as named — a deleted tail, a deleted task, a rewritten event —
reach Python. Signatures are checked in Python (``cryptography``), one per checkpoint,
only when a public key is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agenttrail.events import ChainHead, EventType, PublicKeys, SchemaRegistry, to_micros
from agenttrail.store import FAMILY_TABLES, Store
from agenttrail.verify._engine import events_union, family_columns
from agenttrail.verify._findings import Finding
from agenttrail.verify._heads import ProducerCheckpoints, fold_checkpoints, head_finding

CHECKPOINTS_TABLE = FAMILY_TABLES[EventType.CHECKPOINT]

_STATEMENT_COLUMNS = (
    "event_id", "tenant", "task_id", "agent_name", "agent_version", "producer_id",
    "producer_seq", "seq", "toUnixTimestamp64Micro(ts) AS ts", "final", "interval_s",
    "prev_hash", "key_id", "signature",
)  # fmt: skip
_HEAD_COLUMNS = (
    "head_tenants", "head_task_ids", "head_task_types", "head_seqs", "head_hashes", "head_ts",
    "head_closed",
)  # fmt: skip

_UNMATCHED = """
WITH heads AS (
  SELECT producer_id, seq AS cp, h.1 AS tenant, h.2 AS task_id, h.3 AS task_type,
         h.4 AS hseq, h.5 AS hhash, h.6 AS hts, h.7 AS hclosed
  FROM {checkpoints}
  ARRAY JOIN arrayZip(head_tenants, head_task_ids, head_task_types, head_seqs, head_hashes,
                      head_ts, head_closed) AS h
  {scope}
),
missing AS (
  SELECT * FROM heads
  WHERE (tenant, task_id, hseq, hhash) NOT IN (
    SELECT tenant, task_id, seq, hash FROM ({union})
    WHERE (tenant, task_id, seq, hash) IN (SELECT tenant, task_id, hseq, hhash FROM heads))
)
SELECT m.producer_id, m.cp, m.tenant, m.task_id, m.task_type, m.hseq, m.hhash, m.hts,
       m.hclosed, t.events, t.max_seq, s.hash
FROM missing AS m
LEFT JOIN (
  SELECT tenant, task_id, count() AS events, max(seq) AS max_seq FROM ({union})
  WHERE (tenant, task_id) IN (SELECT tenant, task_id FROM missing)
  GROUP BY tenant, task_id
) AS t ON m.tenant = t.tenant AND m.task_id = t.task_id
LEFT JOIN (
  SELECT tenant, task_id, seq, any(hash) AS hash FROM ({union})
  WHERE (tenant, task_id, seq) IN (SELECT tenant, task_id, hseq FROM missing)
  GROUP BY tenant, task_id, seq
) AS s ON m.tenant = s.tenant AND m.task_id = s.task_id AND m.hseq = s.seq
ORDER BY m.tenant, m.task_id, m.hseq, m.producer_id, m.cp
LIMIT {limit}
"""


def _scope(
    tenant: str | None, task_id: str | None, since: datetime | None
) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if tenant is not None:
        clauses.append("h.1 = {head_tenant:String}")
        params["head_tenant"] = tenant
    if task_id is not None:
        clauses.append("h.2 = {head_task:String}")
        params["head_task"] = task_id
    if since is not None:
        # A head sealed in the window proves its task had an event in it.
        clauses.append("h.6 >= {head_since:Int64}")
        params["head_since"] = to_micros(since)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def checkpoint_rows(store: Store, *, with_heads: bool) -> list[dict[str, Any]]:
    """Every stored checkpoint as a dict of its statement fields (heads when asked)."""
    columns = [*_STATEMENT_COLUMNS, *(_HEAD_COLUMNS if with_heads else ())]
    names = [c.rsplit(" AS ", 1)[-1] for c in columns]
    rows = store.query(f"SELECT {', '.join(columns)} FROM {CHECKPOINTS_TABLE}")
    return [dict(zip(names, row, strict=True)) for row in rows]


def check_checkpoints(
    store: Store,
    registry: SchemaRegistry,
    *,
    tenant: str | None = None,
    task_id: str | None = None,
    since: datetime | None = None,
    public_keys: PublicKeys | None = None,
    max_findings: int = 10_000,
) -> tuple[dict[str, ProducerCheckpoints], list[Finding]]:
    """Per producer, what its checkpoints say; findings for every head not stored as named.

    Heads are checked for the selected tasks (a head sealed since ``since`` counts as
    selected); signatures, with ``public_keys``, for every checkpoint. Read-only.

    Raises:
        StoreUnavailable: the store failed a query.
    """
    if not family_columns(store, CHECKPOINTS_TABLE):
        return {}, []  # a store migrated before checkpoints existed
    rows = checkpoint_rows(store, with_heads=public_keys is not None)
    producers, findings = fold_checkpoints(rows, public_keys)
    if not rows:
        return producers, findings
    event_tables: Mapping[str, str] = {
        f: t for f, t in FAMILY_TABLES.items() if t != CHECKPOINTS_TABLE
    }
    union = events_union(store, registry, "", with_hash=False, tables=event_tables)
    scope, params = _scope(tenant, task_id, since)
    sql = _UNMATCHED.format(
        checkpoints=CHECKPOINTS_TABLE, scope=scope, union=union, limit=max_findings + 1
    )
    for row in store.query(sql, params):
        producer, cp, h_tenant, h_task, h_type, hseq, hhash, hts, hclosed = row[:9]
        events, max_seq, stored_hash = row[9:]
        head = ChainHead(
            str(h_tenant), str(h_task), str(h_type), int(hseq), str(hhash), int(hts),
            bool(hclosed),
        )  # fmt: skip
        finding = head_finding(
            str(producer), int(cp), head, str(stored_hash or ""), int(events or 0),
            int(max_seq or 0),
        )  # fmt: skip
        if finding is not None:
            findings.append(finding)
    return producers, findings


__all__ = ["CHECKPOINTS_TABLE", "check_checkpoints", "checkpoint_rows"]
