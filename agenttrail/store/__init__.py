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
from agenttrail.store._retention import (
    LEGAL_HOLDS_TABLE,
    MIN_LOG_DAYS,
    Hold,
    RetentionConfig,
    RetentionError,
    TablePolicy,
    apply_retention,
    holds_in_force,
    load_retention,
    place_hold,
    policy_in_force,
    release_hold,
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
    "LEGAL_HOLDS_TABLE",
    "MIGRATIONS_TABLE",
    "MIN_LOG_DAYS",
    "Hold",
    "Migration",
    "MigrationError",
    "MigrationReport",
    "RetentionConfig",
    "RetentionError",
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
    "TablePolicy",
    "applied_checksums",
    "apply_retention",
    "discover",
    "holds_in_force",
    "load_retention",
    "migrate",
    "open_store",
    "pending",
    "place_hold",
    "policy_in_force",
    "release_hold",
    "table_for",
]
