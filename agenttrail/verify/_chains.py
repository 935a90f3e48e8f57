"""The chain rules of :mod:`agenttrail.verify._engine`, in Python, for rows read from files.

``export verify`` has no engine: it streams the exported rows, groups them by task and
emitter (the files are sorted that way), recomputes each row's hash with the sealing
code itself, and applies exactly the rules the engine applies, through the same
classification, so both verdicts mean the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from agenttrail.verify._engine import classify
from agenttrail.verify._findings import Finding


@dataclass(frozen=True)
class ChainRow:
    """What the chain rules need of one event."""

    family: str
    tenant: str
    task_id: str
    producer_id: str
    seq: int
    producer_seq: int
    event_id: str
    prev_hash: str
    hash: str
    expected_hash: str
    terminal: bool


def check_group(rows: list[ChainRow]) -> list[Finding]:
    """Findings of one task and emitter's events (any order)."""
    chain = sorted(rows, key=lambda r: (r.producer_seq, r.seq))
    chain_info: dict[int, tuple[int, str, bool]] = {}
    prev: ChainRow | None = None
    for pos, r in enumerate(chain, start=1):
        chain_info[id(r)] = (pos, prev.hash if prev else "", bool(prev.terminal) if prev else False)
        prev = r
    out: list[Finding] = []
    by_seq = sorted(rows, key=lambda r: (r.seq, r.producer_seq))
    before: ChainRow | None = None
    for pos, r in enumerate(by_seq, start=1):
        chain_pos, chain_prev, chain_prev_terminal = chain_info[id(r)]
        prev_seq = before.seq if before else -1
        prev_pseq = before.producer_seq if before else -1
        problem = (
            r.expected_hash != r.hash
            or (chain_pos == 1 and r.prev_hash != "")
            or (
                chain_pos > 1
                and r.prev_hash != chain_prev
                and not (r.prev_hash == "" and chain_prev_terminal)
            )
            or (pos == 1 and r.seq != 0)
            or (pos > 1 and r.seq != prev_seq + 1)
            or (pos > 1 and r.producer_seq < prev_pseq)
        )
        if problem:
            out.extend(
                classify(
                    (
                        r.family, r.tenant, r.task_id, r.producer_id, r.seq, r.producer_seq,
                        r.event_id, r.prev_hash, r.hash, r.expected_hash, chain_pos, chain_prev,
                        int(chain_prev_terminal), prev_seq, prev_pseq,
                        before.event_id if before else "", before.hash if before else "",
                    )
                )
            )  # fmt: skip
        before = r
    return out


def grouped(rows: Iterable[ChainRow]) -> Iterator[list[ChainRow]]:
    """Consecutive rows of one (tenant, task, emitter) as lists; input sorted by that key."""
    group: list[ChainRow] = []
    key: tuple[str, str, str] | None = None
    for r in rows:
        k = (r.tenant, r.task_id, r.producer_id)
        if k != key and group:
            yield group
            group = []
        key = k
        group.append(r)
    if group:
        yield group


__all__ = ["ChainRow", "check_group", "grouped"]
