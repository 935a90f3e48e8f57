"""Retention per family, applied as each table's TTL, and legal holds that override it.

The policy comes from settings (``AGENTTRAIL_RETENTION_<TABLE>_DAYS``); ``agenttrail
migrate`` renders it into every family table's TTL. Guarantees:

- LLM calls and guard events are never configured below 30 days (the field note's
  checklist); the default for both is 184 days, at least six months, the EU AI Act's
  minimum for the logs of high-risk systems (Art. 19 and 26(6)). A lower value is
  refused before anything is changed.
- Retention counts from when an event was stored or when it happened, whichever is
  later (``greatest(ts, ingested_at)``): an event that arrives already older than its
  table's retention is kept for the full period after arrival, never stored and then
  removed by the next merge, so ``runs`` and ``replay`` agree about it.
- Rows of a tenant or task under a legal hold (``legal_holds``, newest row per hold not
  released) are skipped by the TTL until the hold is released.

TTL only ever removes whole expired rows; nothing is updated in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agenttrail.store._errors import StoreConfigError
from agenttrail.store._store import Store
from agenttrail.store._tables import FAMILY_TABLES

LEGAL_HOLDS_TABLE = "legal_holds"
"""Placed and released holds (append-only); the newest row of a hold decides."""

MIN_LOG_DAYS = 30
"""Floor for LLM calls and guard events: the field note's "at least 30 days"."""

PROTECTED_TABLES = ("llm_calls", "guard_events")
"""Tables whose retention can never be set below :data:`MIN_LOG_DAYS`."""

DEFAULT_LOG_DAYS = 184
"""LLM calls and guard events: at least six months (EU AI Act Art. 19, 26(6))."""

DEFAULT_OTHER_DAYS = 400
"""The other families."""


class RetentionError(StoreConfigError):
    """A retention setting is not allowed (e.g. LLM calls below 30 days)."""


class RetentionConfig(BaseSettings):
    """Days each family table keeps its events; constructor > environment > default."""

    model_config = SettingsConfigDict(env_prefix="AGENTTRAIL_RETENTION_", extra="ignore")

    llm_calls_days: int = Field(
        default=DEFAULT_LOG_DAYS,
        description="AGENTTRAIL_RETENTION_LLM_CALLS_DAYS: at least 30; default 184.",
    )
    guard_events_days: int = Field(
        default=DEFAULT_LOG_DAYS,
        description="AGENTTRAIL_RETENTION_GUARD_EVENTS_DAYS: at least 30; default 184.",
    )
    tool_spans_days: int = Field(
        default=DEFAULT_OTHER_DAYS, description="AGENTTRAIL_RETENTION_TOOL_SPANS_DAYS."
    )
    state_transitions_days: int = Field(
        default=DEFAULT_OTHER_DAYS, description="AGENTTRAIL_RETENTION_STATE_TRANSITIONS_DAYS."
    )
    agent_messages_days: int = Field(
        default=DEFAULT_OTHER_DAYS, description="AGENTTRAIL_RETENTION_AGENT_MESSAGES_DAYS."
    )
    checkpoints_days: int = Field(
        default=DEFAULT_OTHER_DAYS,
        description="AGENTTRAIL_RETENTION_CHECKPOINTS_DAYS: keep at least as long as the events "
        "they vouch for, or verify reports the gap an expired checkpoint leaves.",
    )

    @field_validator("*")
    @classmethod
    def _at_least_one_day(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"{value} days; retention must be at least 1 day")
        return value

    def days(self) -> dict[str, int]:
        """Table → days, every family table."""
        return {table: int(getattr(self, f"{table}_days")) for table in FAMILY_TABLES.values()}


def load_retention(**overrides: int) -> RetentionConfig:
    """The policy from ``overrides`` and the environment, checked.

    Raises:
        RetentionError: a value is not an integer, below one day, or (LLM calls, guard
            events) below 30 days; the message names the setting and what is allowed.
    """
    try:
        config = RetentionConfig(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        raise RetentionError(
            f"Retention setting {name} (AGENTTRAIL_RETENTION_{name.upper()}) is invalid: "
            f"{first['msg']}. Give a whole number of days."
        ) from None
    for table in PROTECTED_TABLES:
        days = config.days()[table]
        if days < MIN_LOG_DAYS:
            raise RetentionError(
                f"Retention of {table} set to {days} days (AGENTTRAIL_RETENTION_"
                f"{table.upper()}_DAYS); {table} must be kept at least {MIN_LOG_DAYS} days "
                f"(full LLM call logs and guard decisions). Set {MIN_LOG_DAYS} or more; the "
                f"default is {DEFAULT_LOG_DAYS} (six months, EU AI Act Art. 19)."
            )
    return config


def holds_in_force_sql(database: str) -> str:
    """SQL condition: the row's tenant or task is under a hold not yet released."""
    holds = f"{database}.{LEGAL_HOLDS_TABLE}"
    in_force = (
        f"SELECT tenant, task_id FROM {holds} GROUP BY tenant, task_id "
        "HAVING argMax(released, at) = 0"
    )
    return (
        f"(tenant IN (SELECT tenant FROM ({in_force}) WHERE task_id = '') "
        f"OR (tenant, task_id) IN ({in_force}))"
    )


def ttl_clause(database: str, days: int) -> str:
    """The TTL of a family table keeping rows ``days`` after arrival, holds excepted."""
    return (
        f"toDateTime(greatest(ts, ingested_at)) + toIntervalDay({int(days)}) "
        f"WHERE NOT {holds_in_force_sql(database)}"
    )


@dataclass(frozen=True)
class TablePolicy:
    """The retention in force on one table, read back from the engine.

    Attributes:
        table: the family table.
        days: days its TTL keeps a row after arrival (None: no TTL found).
        counts_from: what the days count from, as the TTL says.
        honours_holds: whether the TTL skips held tenants and tasks.
        minimum_days: the floor for this table (None: only at least one day).
    """

    table: str
    days: int | None
    counts_from: str
    honours_holds: bool
    minimum_days: int | None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "table": self.table,
            "days": self.days,
            "counts_from": self.counts_from,
            "honours_holds": self.honours_holds,
            "minimum_days": self.minimum_days,
        }


_DAYS = re.compile(r"toIntervalDay\((\d+)\)|INTERVAL (\d+) DAY")


def policy_in_force(store: Store, *, cluster: bool = False) -> list[TablePolicy]:
    """Each family table's TTL as the engine holds it (on a cluster: its ``_local`` table).

    Raises:
        StoreUnavailable: the store failed the query.
    """
    rows = store.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {d:String}",
        {"d": store.database},
    )
    engines = {str(n): str(e) for n, e in rows}
    out: list[TablePolicy] = []
    for table in FAMILY_TABLES.values():
        engine = engines.get(f"{table}_local" if cluster else table, "")
        ttl = engine.partition(" TTL ")[2].split(" SETTINGS ")[0]
        match = _DAYS.search(ttl)
        days = int(match.group(1) or match.group(2)) if match else None
        counts_from = "later of ts and arrival" if "greatest(ts, ingested_at)" in ttl else "ts"
        out.append(
            TablePolicy(
                table=table, days=days, counts_from=counts_from if ttl else "-",
                honours_holds=LEGAL_HOLDS_TABLE in ttl,
                minimum_days=MIN_LOG_DAYS if table in PROTECTED_TABLES else None,
            )
        )  # fmt: skip
    return out


def apply_retention(
    store: Store, config: RetentionConfig | None = None, *, cluster: str | None = None
) -> list[str]:
    """Set every family table's TTL to the policy; tables already on it are left alone.

    Blocks until the engine accepted each change (existing parts are re-checked by the
    engine in the background). Returns the tables changed.

    Raises:
        RetentionError: the policy breaks a floor (checked before any change).
        StoreUnavailable: the store refused a change.
    """
    config = config or load_retention()
    wanted = config.days()
    for table in PROTECTED_TABLES:
        if wanted[table] < MIN_LOG_DAYS:
            raise RetentionError(
                f"Retention of {table} must be at least {MIN_LOG_DAYS} days, not {wanted[table]}."
            )
    current = {p.table: p for p in policy_in_force(store, cluster=cluster is not None)}
    changed: list[str] = []
    for table, days in wanted.items():
        now = current.get(table)
        if (
            now is not None
            and now.days == days
            and now.honours_holds
            and now.counts_from == "later of ts and arrival"
        ):
            continue
        store.command(
            f"ALTER TABLE {store.database}.{table} MODIFY TTL {ttl_clause(store.database, days)}"
        )
        changed.append(table)
    return changed


@dataclass(frozen=True)
class Hold:
    """A legal hold in force: ``task_id`` empty means every task of the tenant."""

    tenant: str
    task_id: str
    reason: str
    placed_by: str
    placed_at: datetime

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "tenant": self.tenant,
            "task_id": self.task_id,
            "reason": self.reason,
            "placed_by": self.placed_by,
            "placed_at": self.placed_at.isoformat(),
        }


def place_hold(store: Store, tenant: str, task_id: str = "", *, reason: str, by: str) -> None:
    """Keep the events of ``tenant`` (or one task of it) past the TTL until released.

    Takes effect at the engine's next TTL check of each part; events already removed
    before the hold cannot be brought back.
    """
    _record_hold(store, tenant, task_id, released=False, reason=reason, by=by)


def release_hold(store: Store, tenant: str, task_id: str = "", *, reason: str, by: str) -> None:
    """Release a hold: its events expire again under the table's TTL.

    The engine notes, per part, when its rows expire as of the part's writing; a part
    whose rows were all held has no expiry noted. Releasing therefore asks the engine to
    recompute those notes (``MATERIALIZE TTL``, a background rewrite of expiry metadata,
    never of event values), so the released rows expire at the next TTL merge.
    """
    _record_hold(store, tenant, task_id, released=True, reason=reason, by=by)
    for table in FAMILY_TABLES.values():
        store.command(
            f"ALTER TABLE {store.database}.{table} MATERIALIZE TTL",
            settings={"mutations_sync": 2},
        )


def _record_hold(
    store: Store, tenant: str, task_id: str, *, released: bool, reason: str, by: str
) -> None:
    if not tenant:
        raise StoreConfigError("A legal hold needs a tenant (--tenant); give the task with --task.")
    store.insert_columns(
        LEGAL_HOLDS_TABLE,
        ["tenant", "task_id", "released", "reason", "placed_by", "at"],
        [[tenant], [task_id], [released], [reason], [by], [datetime.now(UTC)]],
    )


def holds_in_force(store: Store) -> list[Hold]:
    """Every hold whose newest row is not a release."""
    rows = store.query(
        f"SELECT tenant, task_id, argMax(reason, at), argMax(placed_by, at), max(at) "
        f"FROM {store.database}.{LEGAL_HOLDS_TABLE} GROUP BY tenant, task_id "
        "HAVING argMax(released, at) = 0 ORDER BY tenant, task_id"
    )
    return [Hold(str(t), str(k), str(r), str(b), a) for t, k, r, b, a in rows]


__all__ = [
    "DEFAULT_LOG_DAYS",
    "DEFAULT_OTHER_DAYS",
    "LEGAL_HOLDS_TABLE",
    "MIN_LOG_DAYS",
    "PROTECTED_TABLES",
    "Hold",
    "RetentionConfig",
    "RetentionError",
    "TablePolicy",
    "apply_retention",
    "holds_in_force",
    "load_retention",
    "place_hold",
    "policy_in_force",
    "release_hold",
    "ttl_clause",
]
