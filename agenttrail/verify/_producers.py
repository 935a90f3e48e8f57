"""Per producer: which ``producer_seq`` values it produced are neither stored nor dead-lettered.

Every SDK instance numbers its events 0, 1, 2… (``producer_seq``, gapless). Whatever is
missing below a producer's highest known value was produced and lost — or deleted,
which is how a whole deleted task shows even though each remaining chain is intact.
The gaps are found in the engine (one window pass over ``producer_seq``); only the
gap ranges, and the dead letters (few, decoded in Python to learn their producer),
reach Python.

What this cannot see on its own: events after a producer's highest stored one (a
deleted tail of the whole stream). Only a record of how far the producer got — a
checkpoint it emits — closes that.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from agenttrail.events import DecodeError, EventCodec, SchemaRegistry
from agenttrail.store import DEAD_LETTERS_TABLE, Store
from agenttrail.verify._engine import events_union, filters
from agenttrail.verify._findings import Finding, FindingKind, ProducerReconciliation

_GAPS = """
SELECT producer_id, prev + 1 AS first_missing, producer_seq - 1 AS last_missing
FROM (
  SELECT producer_id, producer_seq,
         lagInFrame(producer_seq, 1, -1) OVER (PARTITION BY producer_id ORDER BY producer_seq
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS prev
  FROM (SELECT DISTINCT producer_id, producer_seq FROM ({union}))
)
WHERE producer_seq > prev + 1
ORDER BY producer_id, first_missing
"""

_TOTALS = """
SELECT producer_id, max(producer_seq) + 1, uniqExact(producer_seq)
FROM ({union}) GROUP BY producer_id ORDER BY producer_id
"""


def dead_lettered_seqs(store: Store, codec: EventCodec) -> dict[str, set[int]]:
    """``producer_seq`` values per producer of the dead letters that still decode."""
    out: dict[str, set[int]] = defaultdict(set)
    for (raw_hex,) in store.query(f"SELECT hex(raw) FROM {DEAD_LETTERS_TABLE}"):
        payload = bytes.fromhex(str(raw_hex))
        try:
            record = codec.decode(payload)
        except DecodeError:
            continue
        except Exception:  # a dead letter is by definition input that may break a decoder
            continue
        try:
            out[str(record["producer_id"])].add(int(record["producer_seq"]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _subtract(first: int, last: int, known: set[int]) -> list[list[int]]:
    """The sub-ranges of ``first…last`` not in ``known`` (cost: the known values inside)."""
    ranges: list[list[int]] = []
    start = first
    for value in sorted(v for v in known if first <= v <= last):
        if value > start:
            ranges.append([start, value - 1])
        start = value + 1
    if start <= last:
        ranges.append([start, last])
    return ranges


def reconcile_producers(
    store: Store,
    registry: SchemaRegistry,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
) -> tuple[list[ProducerReconciliation], list[Finding]]:
    """Produced (as far as known), stored, dead-lettered and missing, per producer.

    Blocks for two scans of the envelope columns. Read-only.

    Raises:
        StoreUnavailable: the store failed a query.
    """
    where, params = filters(tenant, None, since)
    union = events_union(store, registry, where, with_hash=False)
    if not union:
        return [], []
    dead = dead_lettered_seqs(store, EventCodec(registry))
    gaps: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for producer, first, last in store.query(_GAPS.format(union=union), params):
        gaps[str(producer)].append((int(first), int(last)))
    producers: list[ProducerReconciliation] = []
    findings: list[Finding] = []
    for producer, produced, stored in store.query(_TOTALS.format(union=union), params):
        name = str(producer)
        rec = ProducerReconciliation(producer_id=name, produced=int(produced), stored=int(stored))
        lettered = dead.get(name, set())
        rec.dead_lettered = sum(1 for s in lettered if s < rec.produced)
        for first, last in gaps.get(name, []):
            rec.missing.extend(_subtract(first, last, lettered))
        producers.append(rec)
        for first, last in rec.missing:
            span = str(first) if first == last else f"{first}…{last}"
            findings.append(_missing(name, first, last, span))
    return producers, findings


def _missing(producer: str, first: int, last: int, span: str) -> Finding:
    count = last - first + 1
    detail: Any = (
        f"producer_seq {span} ({count} events) produced but neither stored nor dead-lettered"
    )
    return Finding(
        kind=FindingKind.MISSING_EVENTS, tenant="", task_id="", producer_id=producer,
        detail=detail, seq=first,
    )  # fmt: skip


__all__ = ["dead_lettered_seqs", "reconcile_producers"]
