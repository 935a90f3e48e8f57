"""Follow events as they are stored: the record's ``tail -f``.

Reads the view ``event_timeline`` (migration 0050: task_replay's rows and summaries for
every task) by ``ingested_at``. Guarantees, for events stored while following:

* each event is returned once (events are remembered by id for the overlap window);
* a task's events come in ``seq`` order: an event whose predecessor is not stored yet
  is held back until it is, or for at most ``hold_s`` seconds (then it is returned
  with ``gap_before`` saying how many were skipped);
* rows stored by an insert that started before a later one but committed after it
  are still found: every poll re-reads the last ``overlap_s`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agenttrail.events import TERMINAL_STATES
from agenttrail.store import Store

_COLUMNS = (
    "tenant, task_id, task_type, agent_name, toString(event_id), seq, step, ts, "
    "ingested_at, family, ok, new_state, summary"
)


@dataclass(frozen=True)
class TailFilter:
    """Which events to follow; None matches every value."""

    task_id: str | None = None
    task_type: str | None = None
    agent: str | None = None
    tenant: str | None = None

    def sql(self) -> tuple[str, dict[str, Any]]:
        """The WHERE conditions and their bound values."""
        clauses, params = [], {}
        for column, value in (
            ("task_id", self.task_id),
            ("task_type", self.task_type),
            ("agent_name", self.agent),
            ("tenant", self.tenant),
        ):
            if value is not None:
                clauses.append(f"{column} = {{{column}:String}}")
                params[column] = value
        return " AND ".join(clauses) or "1", params


@dataclass(frozen=True)
class TailEvent:
    """One stored event, as the replay timeline shows it.

    Attributes:
        gap_before: events of the task before this one that were not stored within
            the hold time (0 normally).
        terminal: the task's terminal state, when this is its terminal transition.
    """

    tenant: str
    task_id: str
    task_type: str
    agent_name: str
    event_id: str
    seq: int
    step: int
    ts: datetime
    ingested_at: datetime
    family: str
    ok: bool
    summary: str
    terminal: str | None = None
    gap_before: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["ts"] = self.ts.isoformat()
        out["ingested_at"] = self.ingested_at.isoformat()
        return out


@dataclass
class _TaskOrder:
    next_seq: int
    held: dict[int, tuple[float, TailEvent]] = field(default_factory=dict)


class TailFollower:
    """Polls the store for events stored since ``since`` that match ``filters``.

    Args:
        store: an open store (directly, or through a running ``up``'s read endpoint).
        filters: which events.
        since: follow events stored after this time (UTC); None: from now.
        hold_s: how long an event waits for a missing predecessor of its task.
        overlap_s: how far back each poll re-reads (late-committing inserts).
    """

    def __init__(
        self,
        store: Store,
        filters: TailFilter,
        since: datetime | None = None,
        *,
        hold_s: float = 5.0,
        overlap_s: float = 3.0,
    ) -> None:
        self._store = store
        self._filters = filters
        start = since if since is not None else self._store_now()
        self._watermark = start.astimezone(UTC).replace(tzinfo=None)
        self._start = self._watermark
        self._hold_s = hold_s
        self._overlap = timedelta(seconds=overlap_s)
        self._seen: dict[str, datetime] = {}
        self._tasks: dict[tuple[str, str], _TaskOrder] = {}

    def _store_now(self) -> datetime:
        value = self._store.query("SELECT now64(6)")[0][0]
        assert isinstance(value, datetime)
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def poll(self) -> list[TailEvent]:
        """Events newly stored since the last poll, in seq order per task. Blocks on one query.

        Raises:
            StoreUnavailable: the store failed the query (e.g. not migrated to 0050).
        """
        where, params = self._filters.sql()
        lower = max(self._start, self._watermark - self._overlap)
        params["since"] = lower
        rows = self._store.query(
            f"SELECT {_COLUMNS} FROM {self._store.database}.event_timeline "
            f"WHERE {where} AND ingested_at > {{since:DateTime64(6, 'UTC')}} "
            "ORDER BY ingested_at, tenant, task_id, seq",
            params,
        )
        fresh: list[TailEvent] = []
        for r in rows:
            event_id = str(r[4])
            if event_id in self._seen:
                continue
            stored_at = _naive(r[8])
            self._seen[event_id] = stored_at
            self._watermark = max(self._watermark, stored_at)
            state = str(r[11]) if r[11] is not None else None
            fresh.append(
                TailEvent(
                    tenant=str(r[0]),
                    task_id=str(r[1]),
                    task_type=str(r[2]),
                    agent_name=str(r[3]),
                    event_id=event_id,
                    seq=int(r[5]),
                    step=int(r[6]),
                    ts=_utc(r[7]),
                    ingested_at=_utc(r[8]),
                    family=str(r[9]),
                    ok=bool(r[10]),
                    summary=str(r[12]),
                    terminal=state if state in TERMINAL_STATES else None,
                )
            )
        self._forget_before(lower)
        return self._in_order(fresh)

    def _in_order(self, fresh: list[TailEvent]) -> list[TailEvent]:
        now = time.monotonic()
        out: list[TailEvent] = []
        for event in sorted(fresh, key=lambda e: (e.tenant, e.task_id, e.seq)):
            key = (event.tenant, event.task_id)
            order = self._tasks.get(key)
            if order is None:
                # First sight of the task: start at its first event when we follow from
                # before it began, else at whatever arrived first.
                order = self._tasks[key] = _TaskOrder(next_seq=event.seq)
            if event.seq < order.next_seq:
                out.append(event)  # late and out of order: show it rather than lose it
                continue
            order.held[event.seq] = (now, event)
        for order in self._tasks.values():
            out += self._release(order, now)
        return out

    def _release(self, order: _TaskOrder, now: float) -> list[TailEvent]:
        out: list[TailEvent] = []
        while order.held:
            if order.next_seq in order.held:
                _, event = order.held.pop(order.next_seq)
                out.append(event)
                order.next_seq += 1
                continue
            first = min(order.held)
            arrived, event = order.held[first]
            if now - arrived < self._hold_s:
                break
            del order.held[first]
            out.append(_with_gap(event, first - order.next_seq))
            order.next_seq = first + 1
        return out

    def _forget_before(self, lower: datetime) -> None:
        if len(self._seen) < 50_000:
            return
        self._seen = {k: v for k, v in self._seen.items() if v >= lower}


def _with_gap(event: TailEvent, gap: int) -> TailEvent:
    values = {name: getattr(event, name) for name in event.__dataclass_fields__}
    values["gap_before"] = gap
    return TailEvent(**values)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
