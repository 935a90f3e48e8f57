"""The one place that maps event families to ClickHouse tables.

SQL in ``queries/migrations`` creates these tables; code reads the names from here.
"""

from __future__ import annotations

from types import MappingProxyType

from agenttrail.events import EventType

DEFAULT_DATABASE = "agenttrail"
"""Database that holds every agenttrail table unless the store URL names another."""

FAMILY_TABLES: MappingProxyType[str, str] = MappingProxyType(
    {
        EventType.LLM_CALL: "llm_calls",
        EventType.TOOL_SPAN: "tool_spans",
        EventType.STATE_TRANSITION: "state_transitions",
        EventType.AGENT_MESSAGE: "agent_messages",
        EventType.GUARD_EVENT: "guard_events",
        EventType.CHECKPOINT: "checkpoints",
    }
)
"""Event family (``EventType`` value) → table holding its events."""

DEAD_LETTERS_TABLE = "dead_letters"
"""Messages that could not be decoded or validated, with their raw bytes and reason."""

LEDGER_TABLE = "ingest_ledger"
"""Exactly-once state: the offset range of each batch, before and after its insert."""

MIGRATIONS_TABLE = "schema_migrations"
"""Applied migrations: version, name, checksum, applied_at."""

KAFKA_COLUMNS: tuple[str, str] = ("kafka_partition", "kafka_offset")
"""Columns every family row carries to locate its message in Kafka."""


def table_for(event_type: str) -> str:
    """The table of a family.

    Raises:
        KeyError: the family has no table (a new family needs a migration and an entry here).
    """
    return FAMILY_TABLES[event_type]
