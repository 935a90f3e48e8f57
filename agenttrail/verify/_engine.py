"""Verify the chains in the store, inside the engine.

One query reads every event of the selected tasks from every family table, recomputes
each event's hash in SQL (:mod:`agenttrail.verify._avro_sql`), and with window functions
compares each event with its predecessor — in emission order (``producer_seq``) for the
hash chain, in ``seq`` order for gaps, duplicates and reordering. Only the events that
show a problem leave the engine, so verifying millions of events moves almost nothing
to Python and needs no memory in Python beyond the findings.

The rules (the same in :mod:`agenttrail.verify._chains` for exports):

- ``hash`` must equal the recomputed hash of the event's fields (else *modified*);
- within one task and emitter, ordered by ``producer_seq``, the first event's
  ``prev_hash`` is empty and every other's is the previous event's ``hash`` — or empty
  right after a terminal transition, where the SDK starts a new chain (else *broken link*);
- ordered by ``seq``, seqs run 0, 1, 2… (else *seq gap*); a repeated seq is a
  *duplicate* (same event id and hash) or a *conflicting seq* (different events);
- ``producer_seq`` grows with ``seq`` (else *reordered*).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agenttrail.events import TERMINAL_STATES, SchemaEntry, SchemaRegistry, default_registry
from agenttrail.store import FAMILY_TABLES, Store
from agenttrail.verify._avro_sql import hash_select
from agenttrail.verify._findings import Finding, FindingKind, VerifyReport

DEFAULT_MAX_FINDINGS = 10_000
"""Findings kept by default; a store with more is reported as truncated."""

DEFAULT_BUCKET_EVENTS = 1_000_000
"""Events checked per engine query: the window sort of about this many rows is in memory."""


def family_columns(store: Store, table: str) -> frozenset[str]:
    """The columns of one table of the store's database."""
    rows = store.query(
        "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String}",
        {"d": store.database, "t": table},
    )
    return frozenset(str(r[0]) for r in rows)


def _entries(registry: SchemaRegistry, family: str) -> list[SchemaEntry]:
    return [e for e in registry.entries if e.event_type == family]


def filters(
    tenant: str | None,
    task_id: str | None,
    since: datetime | None,
    until: datetime | None = None,
    task_type: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """SQL ``WHERE`` (or ``''``) and its parameters selecting whole tasks.

    ``since``/``until`` select the tasks with any event in ``[since, until)``; each such
    task is taken whole, so its chain can be checked from its first event.
    """
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if tenant is not None:
        clauses.append("tenant = {tenant:String}")
        params["tenant"] = tenant
    if task_id is not None:
        clauses.append("task_id = {task_id:String}")
        params["task_id"] = task_id
    if task_type is not None:
        clauses.append("task_type = {task_type:String}")
        params["task_type"] = task_type
    having: list[str] = []
    if since is not None:
        having.append("max(last_ts) >= {since:DateTime64(6, 'UTC')}")
        params["since"] = since
    if until is not None:
        having.append("min(first_ts) < {until:DateTime64(6, 'UTC')}")
        params["until"] = until
    if having:
        clauses.append(
            "(task_id, tenant) IN (SELECT task_id, tenant FROM task_index "
            f"GROUP BY task_id, tenant HAVING {' AND '.join(having)})"
        )
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def events_union(
    store: Store,
    registry: SchemaRegistry,
    where: str,
    *,
    with_hash: bool,
    tables: Mapping[str, str] = FAMILY_TABLES,
) -> str:
    """SQL: one row per stored event of every family (optionally with its recomputed hash)."""
    terminal = ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATES))
    parts: list[str] = []
    for family, table in tables.items():
        columns = family_columns(store, table)
        if not columns:
            continue
        is_terminal = f"to_state IN ({terminal})" if "to_state" in columns else "0"
        base = (
            f"SELECT '{family}' AS family, tenant, task_id, producer_id, seq, producer_seq, "
            "toString(event_id) AS event_id, prev_hash, hash"
        )
        if with_hash:
            source = hash_select(_entries(registry, family), columns, f"{table}{where}")
            parts.append(
                f"{base}, expected_hash, toUInt8({is_terminal}) AS terminal FROM ({source})"
            )
        else:
            parts.append(f"{base} FROM {table}{where}")
    return "\nUNION ALL\n".join(parts)


_WINDOWS = """
WINDOW
  chain AS (PARTITION BY tenant, task_id, producer_id ORDER BY producer_seq, seq
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
  byseq AS (PARTITION BY tenant, task_id, producer_id ORDER BY seq, producer_seq
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""

_PROBLEMS = """
SELECT family, tenant, task_id, producer_id, seq, producer_seq, event_id, prev_hash, hash,
       expected_hash, chain_pos, chain_prev_hash, chain_prev_terminal,
       prev_seq, prev_producer_seq, prev_event_id, prev_seq_hash
FROM (
  SELECT *,
    row_number() OVER chain AS chain_pos,
    lagInFrame(hash, 1, '') OVER chain AS chain_prev_hash,
    lagInFrame(terminal, 1, 0) OVER chain AS chain_prev_terminal,
    lagInFrame(seq, 1, -1) OVER byseq AS prev_seq,
    lagInFrame(producer_seq, 1, -1) OVER byseq AS prev_producer_seq,
    lagInFrame(event_id, 1, '') OVER byseq AS prev_event_id,
    lagInFrame(hash, 1, '') OVER byseq AS prev_seq_hash,
    row_number() OVER byseq AS seq_pos
  FROM ({union})
  {windows}
)
WHERE expected_hash != hash
   OR (chain_pos = 1 AND prev_hash != '')
   OR (chain_pos > 1 AND prev_hash != chain_prev_hash
       AND NOT (prev_hash = '' AND chain_prev_terminal = 1))
   OR (seq_pos = 1 AND seq != 0)
   OR (seq_pos > 1 AND seq != prev_seq + 1)
   OR (seq_pos > 1 AND producer_seq < prev_producer_seq)
ORDER BY tenant, task_id, producer_id, seq, producer_seq
LIMIT {limit}
"""


def classify(row: Sequence[Any]) -> list[Finding]:
    (family, tenant, task_id, producer, seq, pseq, event_id, prev_hash, hash_, expected,
     chain_pos, chain_prev, chain_prev_terminal, prev_seq, prev_pseq, prev_event_id,
     prev_seq_hash) = row  # fmt: skip
    out: list[Finding] = []

    def add(kind: FindingKind, detail: str, at_seq: int | None = None) -> None:
        out.append(
            Finding(
                kind=kind, tenant=str(tenant), task_id=str(task_id), producer_id=str(producer),
                detail=detail, event_id=str(event_id), event_type=str(family),
                seq=int(seq if at_seq is None else at_seq),
            )
        )  # fmt: skip

    duplicate = prev_seq == seq and prev_event_id == event_id and prev_seq_hash == hash_
    if expected != hash_:
        add(
            FindingKind.MODIFIED,
            f"stored fields hash to {str(expected)[:16] or '(cannot recompute)'}…, "
            f"the event carries {str(hash_)[:16]}…: altered or forged after it was sealed",
        )
    if duplicate:
        add(FindingKind.DUPLICATE, "stored twice (same event id and hash)")
        return out
    if prev_seq == seq:
        add(
            FindingKind.CONFLICTING_SEQ,
            f"another event ({prev_event_id}) claims the same seq {seq}",
        )
    if chain_pos == 1 and prev_hash != "":
        add(
            FindingKind.BROKEN_LINK,
            f"first stored event of its chain, yet prev_hash is {str(prev_hash)[:16]}…: "
            "the events before it are missing",
        )
    elif (
        chain_pos > 1 and prev_hash != chain_prev and not (prev_hash == "" and chain_prev_terminal)
    ):
        add(
            FindingKind.BROKEN_LINK,
            f"prev_hash {str(prev_hash)[:16] or '(empty)'}… is not the hash of the "
            f"previous stored event ({str(chain_prev)[:16]}…)",
        )
    if prev_seq == -1 and seq != 0:
        add(FindingKind.SEQ_GAP, f"seq 0…{seq - 1} missing before the first stored event", 0)
    elif prev_seq >= 0 and seq > prev_seq + 1:
        first, last = prev_seq + 1, seq - 1
        span = f"seq {first}" if first == last else f"seq {first}…{last}"
        add(FindingKind.SEQ_GAP, f"{span} missing (between {prev_seq} and {seq})", first)
    if prev_seq >= 0 and prev_seq != seq and pseq < prev_pseq:
        add(
            FindingKind.REORDERED,
            f"producer_seq {pseq} is lower than {prev_pseq} of the event before it in seq order",
        )
    return out


def check_chains(
    store: Store,
    *,
    tenant: str | None = None,
    task_id: str | None = None,
    since: datetime | None = None,
    registry: SchemaRegistry | None = None,
    max_findings: int = DEFAULT_MAX_FINDINGS,
    tables: Mapping[str, str] = FAMILY_TABLES,
    bucket_events: int = DEFAULT_BUCKET_EVENTS,
) -> VerifyReport:
    """Recompute every chain of the selected tasks in the engine and report what is wrong.

    Blocks for two counting scans, then one scan per bucket of about ``bucket_events``
    events (whole tasks, by a hash of the task id), which bounds the engine's memory.
    Findings come in task order within each bucket. Read-only.

    Raises:
        StoreUnavailable: the store failed a query (e.g. it is not migrated).
    """
    registry = registry or default_registry()
    where, params = filters(tenant, task_id, since)
    report = VerifyReport()
    counts_sql = (
        "SELECT family, count(), uniqExact(tenant, task_id) FROM ("
        + events_union(store, registry, where, with_hash=False, tables=tables)
        + ") GROUP BY family"
    )
    tasks_sql = (
        "SELECT uniqExact(tenant, task_id) FROM ("
        + events_union(store, registry, where, with_hash=False, tables=tables)
        + ")"
    )
    for family, events, _tasks in store.query(counts_sql, params):
        report.per_family[str(family)] = int(events)
        report.events += int(events)
    report.tasks = int(store.query(tasks_sql, params)[0][0]) if report.events else 0
    if not report.events:
        return report
    # Tasks are checked in buckets of about bucket_events events (by a hash of the task
    # id, so each task is whole in one bucket): the window sort of one bucket is what
    # the engine holds in memory at a time.
    buckets = max(1, -(-report.events // bucket_events))
    rows: list[tuple[Any, ...]] = []
    for bucket in range(buckets):
        scoped = where
        if buckets > 1:
            cond = f"cityHash64(task_id) % {buckets} = {bucket}"
            scoped = f"{where} AND {cond}" if where else f" WHERE {cond}"
        sql = _PROBLEMS.format(
            union=events_union(store, registry, scoped, with_hash=True, tables=tables),
            windows=_WINDOWS,
            limit=max_findings + 1 - len(rows),
        )
        rows.extend(store.query(sql, params))
        if len(rows) > max_findings:
            break
    for row in rows[:max_findings]:
        report.findings.extend(classify(row))
    report.truncated = len(rows) > max_findings
    return report


__all__ = [
    "DEFAULT_MAX_FINDINGS",
    "check_chains",
    "classify",
    "events_union",
    "family_columns",
    "filters",
]
