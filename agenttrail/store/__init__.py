"""ClickHouse access: open a store (a server or the in-process engine) and migrate it.

Example:
    >>> with open_store(data=Path("./data")) as store:   # doctest: +SKIP
    ...     migrate(store)
"""

from agenttrail.store._config import StoreConfig, StoreTarget
from agenttrail.store._errors import (
    MigrationError,
    SchemaMissing,
    StoreConfigError,
    StoreError,
    StoreLocked,
    StoreNotFound,
    StoreRejected,
    StoreUnavailable,
)
from agenttrail.store._migrations import (
    Migration,
    MigrationReport,
    applied_checksums,
    discover,
    migrate,
    pending,
)
from agenttrail.store._store import Store, open_store
from agenttrail.store._tables import (
    DEAD_LETTERS_TABLE,
    DEFAULT_DATABASE,
    FAMILY_TABLES,
    KAFKA_COLUMNS,
    LEDGER_TABLE,
    MIGRATIONS_TABLE,
    table_for,
)

__all__ = [
    "DEAD_LETTERS_TABLE",
    "DEFAULT_DATABASE",
    "FAMILY_TABLES",
    "KAFKA_COLUMNS",
    "LEDGER_TABLE",
    "MIGRATIONS_TABLE",
    "Migration",
    "MigrationError",
    "MigrationReport",
    "SchemaMissing",
    "Store",
    "StoreConfig",
    "StoreConfigError",
    "StoreError",
    "StoreLocked",
    "StoreNotFound",
    "StoreRejected",
    "StoreTarget",
    "StoreUnavailable",
    "applied_checksums",
    "discover",
    "migrate",
    "open_store",
    "pending",
    "table_for",
]
