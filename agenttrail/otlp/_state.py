"""The receiver's durable memory: per-trace task state, spans seen, logs awaiting their span.

OTLP has no notion of a task ending, and the spans of one trace arrive in any order and
across requests; to number a task's events gaplessly (``seq``), chain their hashes and
join log events to their span, the receiver remembers each trace. The memory is a
SQLite database (WAL, ``synchronous=FULL``) so that a restarted receiver continues
every chain where it stopped, with the same producer id and sequence.

Changes of one request are staged in a :class:`StateTxn` and committed only after the
broker acknowledged every event the request produced. A crash in between leaves the
state as it was: the client, which got no answer, sends the request again, and the
receiver produces the very same events (same ids, sequence numbers and hashes) — a
copy, never a gap.

Not thread-safe; the receiver calls it under its produce lock.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agenttrail.events import uuid7
from agenttrail.otlp._otel import OtelLog

_SCHEMA = """
CREATE TABLE IF NOT EXISTS producer (id TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS traces (
    tenant TEXT NOT NULL, trace_id TEXT NOT NULL,
    task_id TEXT NOT NULL, task_type TEXT NOT NULL,
    agent_name TEXT NOT NULL, agent_version TEXT NOT NULL,
    next_seq INTEGER NOT NULL, step INTEGER NOT NULL, prev_hash TEXT NOT NULL,
    terminal INTEGER NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, trace_id)
);
CREATE TABLE IF NOT EXISTS spans_seen (
    tenant TEXT NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    PRIMARY KEY (tenant, trace_id, span_id)
);
CREATE TABLE IF NOT EXISTS pending_logs (
    tenant TEXT NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    received_at REAL NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_by_span ON pending_logs (tenant, trace_id, span_id);
"""


@dataclass(frozen=True)
class TraceState:
    """What the receiver knows of one trace (= one task)."""

    task_id: str
    task_type: str
    agent_name: str
    agent_version: str
    next_seq: int = 0
    step: int = 0
    prev_hash: str = ""
    terminal: bool = False


@dataclass
class StateTxn:
    """The staged changes of one request; nothing is stored until :meth:`ReceiverState.commit`."""

    producer_seq: int
    traces: dict[tuple[str, str], TraceState] = field(default_factory=dict)
    new_traces: set[tuple[str, str]] = field(default_factory=set)
    spans: set[tuple[str, str, str]] = field(default_factory=set)
    seen: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    pending: dict[tuple[str, str], list[tuple[int, str, str]]] = field(default_factory=dict)
    add_logs: list[tuple[str, OtelLog]] = field(default_factory=list)
    take_logs: list[int] = field(default_factory=list)


def log_to_json(log: OtelLog) -> str:
    return json.dumps(
        {
            "trace_id": log.trace_id,
            "span_id": log.span_id,
            "time_ns": log.time_ns,
            "event_name": log.event_name,
            "body": log.body,
            "attributes": log.attributes,
            "resource": log.resource,
            "scope": log.scope,
            "severity": log.severity,
        },
        ensure_ascii=False,
    )


def log_from_json(text: str) -> OtelLog:
    d: dict[str, Any] = json.loads(text)
    return OtelLog(
        trace_id=d["trace_id"],
        span_id=d["span_id"],
        time_ns=d["time_ns"],
        event_name=d["event_name"],
        body=d["body"],
        attributes=d["attributes"],
        resource=d["resource"],
        scope=d["scope"],
        severity=d.get("severity", ""),
    )


class ReceiverState:
    """Opens (creating) the state database at ``path``; ``:memory:`` for throwaway use.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a database.
    """

    def __init__(self, path: Path | str):
        self.path = path
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT id, seq FROM producer").fetchone()
        if row is None:
            self.producer_id, self._producer_seq = uuid7(), 0
            self._db.execute("INSERT INTO producer VALUES (?, 0)", (self.producer_id,))
        else:
            self.producer_id, self._producer_seq = str(row[0]), int(row[1])

    def begin(self) -> StateTxn:
        """A new staging area starting at the committed producer sequence."""
        return StateTxn(producer_seq=self._producer_seq)

    def trace(self, txn: StateTxn, tenant: str, trace_id: str) -> TraceState | None:
        """The trace's state as staged in ``txn``, else as committed, else None."""
        key = (tenant, trace_id)
        if key in txn.traces:
            return txn.traces[key]
        row = self._db.execute(
            "SELECT task_id, task_type, agent_name, agent_version, next_seq, step, prev_hash,"
            " terminal FROM traces WHERE tenant = ? AND trace_id = ?",
            key,
        ).fetchone()
        if row is None:
            return None
        state = TraceState(
            str(row[0]), str(row[1]), str(row[2]), str(row[3]),
            int(row[4]), int(row[5]), str(row[6]), bool(row[7]),
        )  # fmt: skip
        txn.traces[key] = state
        return state

    def put_trace(self, txn: StateTxn, tenant: str, trace_id: str, state: TraceState) -> None:
        key = (tenant, trace_id)
        if key not in txn.traces and self.trace(txn, tenant, trace_id) is None:
            txn.new_traces.add(key)
        txn.traces[key] = state  # frozen: sharing it is safe

    def span_seen(self, txn: StateTxn, tenant: str, trace_id: str, span_id: str) -> bool:
        """True when the span was already turned into events (a resend, or a duplicate)."""
        if (tenant, trace_id, span_id) in txn.spans:
            return True
        key = (tenant, trace_id)
        seen = txn.seen.get(key)
        if seen is None:
            # One read per trace and request: every span id of the trace recorded so far.
            rows = self._db.execute(
                "SELECT span_id FROM spans_seen WHERE tenant = ? AND trace_id = ?", key
            ).fetchall()
            seen = txn.seen[key] = frozenset(str(r[0]) for r in rows)
        return span_id in seen

    def pending_logs(
        self, txn: StateTxn, tenant: str, trace_id: str, span_id: str
    ) -> list[OtelLog]:
        """Log records that arrived before their span; taken (deleted) on commit."""
        key = (tenant, trace_id)
        waiting = txn.pending.get(key)
        if waiting is None:
            # One read per trace and request: (rowid, span id, record) of its waiting logs.
            waiting = txn.pending[key] = [
                (int(r[0]), str(r[1]), str(r[2]))
                for r in self._db.execute(
                    "SELECT rowid, span_id, record FROM pending_logs WHERE tenant = ?"
                    " AND trace_id = ? ORDER BY rowid",
                    key,
                ).fetchall()
            ]
        mine = [w for w in waiting if w[1] == span_id]
        if mine:
            txn.pending[key] = [w for w in waiting if w[1] != span_id]
        out = [log_from_json(w[2]) for w in mine]
        txn.take_logs.extend(w[0] for w in mine)
        staged = [log for t, log in txn.add_logs if t == tenant and log.trace_id == trace_id]
        out.extend(log for log in staged if log.span_id == span_id)
        txn.add_logs = [
            (t, log)
            for t, log in txn.add_logs
            if not (t == tenant and log.trace_id == trace_id and log.span_id == span_id)
        ]
        return out

    def expired_logs(self, older_than_s: float) -> list[tuple[int, str, OtelLog]]:
        """Pending log records whose span has not come within ``older_than_s`` seconds."""
        cutoff = time.time() - older_than_s
        rows = self._db.execute(
            "SELECT rowid, tenant, record FROM pending_logs WHERE received_at < ?"
            " ORDER BY rowid LIMIT 5000",
            (cutoff,),
        ).fetchall()
        return [(int(r[0]), str(r[1]), log_from_json(str(r[2]))) for r in rows]

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM pending_logs").fetchone()[0])

    def commit(self, txn: StateTxn) -> None:
        """Store the staged changes atomically (one fsync'd SQLite transaction).

        Raises:
            sqlite3.Error: nothing was stored (the disk is full, the file is gone).
        """
        now = time.time()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for (tenant, trace_id), s in txn.traces.items():
                db.execute(
                    "INSERT INTO traces VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT"
                    " (tenant, trace_id) DO UPDATE SET next_seq = excluded.next_seq,"
                    " step = excluded.step, prev_hash = excluded.prev_hash,"
                    " terminal = excluded.terminal, updated_at = excluded.updated_at",
                    (
                        tenant, trace_id, s.task_id, s.task_type, s.agent_name,
                        s.agent_version, s.next_seq, s.step, s.prev_hash, int(s.terminal), now,
                    ),
                )  # fmt: skip
            db.executemany("INSERT OR IGNORE INTO spans_seen VALUES (?,?,?)", sorted(txn.spans))
            db.executemany(
                "INSERT INTO pending_logs VALUES (?,?,?,?,?)",
                [(t, g.trace_id, g.span_id, now, log_to_json(g)) for t, g in txn.add_logs],
            )
            db.executemany(
                "DELETE FROM pending_logs WHERE rowid = ?", [(i,) for i in txn.take_logs]
            )
            db.execute("UPDATE producer SET seq = ?", (txn.producer_seq,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._producer_seq = txn.producer_seq

    def forget_before(self, older_than_s: float) -> int:
        """Drop traces idle for ``older_than_s`` seconds (their spans' ids too); returns how many.

        A span of a forgotten trace that still arrives starts a new chain of the same
        task with ``seq`` numbering from 0 again; keep the horizon long (days).
        """
        cutoff = time.time() - older_than_s
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            old = db.execute(
                "SELECT tenant, trace_id FROM traces WHERE updated_at < ?", (cutoff,)
            ).fetchall()
            for tenant, trace_id in old:
                db.execute(
                    "DELETE FROM spans_seen WHERE tenant = ? AND trace_id = ?", (tenant, trace_id)
                )
            db.execute("DELETE FROM traces WHERE updated_at < ?", (cutoff,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(old)

    def close(self) -> None:
        self._db.close()
