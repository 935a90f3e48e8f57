"""Numbered SQL migrations, applied once each and recorded in ``schema_migrations``.

Files are ``queries/migrations/NNNN_<name>.sql``. Statements inside a file end with a
semicolon at the end of a line and must be idempotent (``IF NOT EXISTS``): a crash
between a statement and the record of its file re-runs the file. The checksum (SHA-256
of the file) of every applied migration is kept; a file changed after it was applied is
an error, because the store no longer matches the SQL in the repository.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agenttrail._contracts import queries_dir
from agenttrail.store._cluster import local_tables, render_cluster
from agenttrail.store._errors import MigrationError, StoreError
from agenttrail.store._retention import RetentionConfig, apply_retention, load_retention
from agenttrail.store._store import Store
from agenttrail.store._tables import MIGRATIONS_TABLE

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


@dataclass(frozen=True)
class Migration:
    """One migration file.

    Attributes:
        version: the number in the file name.
        name: the rest of the file name, without ``.sql``.
        path: the file.
        sql: its text.
        checksum: SHA-256 (hex) of its bytes.
    """

    version: int
    name: str
    path: Path
    sql: str = field(repr=False)
    checksum: str

    @property
    def server_only(self) -> bool:
        """Marked ``-- agenttrail: server-only`` on its first line (roles, row policies):
        recorded as applied on the in-process engine, which has no access control,
        without running it."""
        return self.sql.startswith("-- agenttrail: server-only")

    def statements(self) -> list[str]:
        """The file's statements, comments dropped, in order."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        text = "\n".join(lines)
        return [s.strip() for s in _STATEMENT_END.split(text) if s.strip()]


@dataclass
class MigrationReport:
    """What :func:`migrate` did.

    Attributes:
        store: the store's masked location.
        database: the database migrated.
        applied: migrations applied by this run.
        already_applied: migrations found applied before this run.
        retention_changed: family tables whose TTL this run set to the retention policy.
    """

    store: str
    database: str
    applied: list[Migration] = field(default_factory=list)
    already_applied: list[Migration] = field(default_factory=list)
    retention_changed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""

        def rows(ms: list[Migration]) -> list[dict[str, object]]:
            return [{"version": m.version, "name": m.name, "checksum": m.checksum} for m in ms]

        return {
            "store": self.store,
            "database": self.database,
            "applied": rows(self.applied),
            "already_applied": rows(self.already_applied),
            "retention_changed": list(self.retention_changed),
        }


def discover(directory: Path | None = None) -> list[Migration]:
    """Read the migration files of ``directory`` (``queries/migrations`` by default).

    Raises:
        MigrationError: a ``.sql`` file is misnamed, or two files share a number.
    """
    directory = directory or queries_dir() / "migrations"
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(
                f"Migration file {path} is not named NNNN_<lowercase_name>.sql; rename it."
            )
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"Migrations {found[version].path.name} and {path.name} share number {version}; "
                "give the newer one the next free number."
            )
        data = path.read_bytes()
        found[version] = Migration(
            version=version,
            name=match.group(2),
            path=path,
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


def cluster_sql(cluster: str, migrations: list[Migration] | None = None) -> list[str]:
    """Every migration statement rendered for ``cluster``, in order (for ``--print``)."""
    migrations = discover() if migrations is None else migrations
    tables = local_tables([s for m in migrations for s in m.statements()])
    return [
        f"CREATE DATABASE IF NOT EXISTS {{database}} ON CLUSTER '{cluster}'",
        *render_cluster([s for m in migrations for s in m.statements()], cluster, tables),
    ]


def applied_checksums(store: Store) -> dict[int, tuple[str, str]]:
    """Version → (name, checksum) of the migrations recorded in the store.

    Raises:
        StoreUnavailable: the store failed the query.
    """
    exists = store.query(
        "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        {"d": store.database, "t": MIGRATIONS_TABLE},
    )[0][0]
    if not exists:
        return {}
    rows = store.query(
        f"SELECT version, any(name), any(checksum) FROM {store.database}.{MIGRATIONS_TABLE} "
        "GROUP BY version"
    )
    return {int(v): (str(n), str(c)) for v, n, c in rows}


def pending(store: Store, migrations: list[Migration] | None = None) -> list[Migration]:
    """Migrations not yet applied to ``store``; verifies the checksums of applied ones.

    Raises:
        MigrationError: an applied migration's file has changed since.
        StoreUnavailable: the store failed a query.
    """
    migrations = discover() if migrations is None else migrations
    done = applied_checksums(store)
    _check_unchanged(store, migrations, done)
    return [m for m in migrations if m.version not in done]


def migrate(
    store: Store,
    migrations: list[Migration] | None = None,
    *,
    retention: RetentionConfig | None = None,
    cluster: str | None = None,
) -> MigrationReport:
    """Create the database if needed, apply every pending migration in order, then set
    each family table's TTL to the retention policy (``retention``, else from settings).

    With ``cluster``, every statement is rendered for that cluster first (``ON CLUSTER``,
    Replicated engines, Distributed tables; see :mod:`agenttrail.store._cluster`).

    Blocks until done. Safe to run repeatedly and from several processes at once (the
    statements are idempotent; a double record of one version is harmless).

    Raises:
        MigrationError: a file changed after being applied, or a statement failed (the
            error names the file and statement; earlier files stay applied).
        RetentionError: the retention settings break a floor (nothing is changed).
        StoreUnavailable: the store cannot be reached.
    """
    if retention is None:
        retention = load_retention()
    migrations = discover() if migrations is None else migrations
    tables = local_tables([s for m in migrations for s in m.statements()])
    db = store.database
    on = "" if cluster is None else f" ON CLUSTER '{cluster}'"
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}{on}")
    store.use_database()
    store.command(
        f"CREATE TABLE IF NOT EXISTS {db}.{MIGRATIONS_TABLE} ("
        "version UInt32, name String, checksum String, "
        "applied_at DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY version"
    )
    done = applied_checksums(store)
    _check_unchanged(store, migrations, done)
    report = MigrationReport(store=store.location, database=db)
    for migration in migrations:
        if migration.version in done:
            report.already_applied.append(migration)
            continue
        statements = [] if (store.is_embedded and migration.server_only) else migration.statements()
        if cluster is not None:
            statements = render_cluster(statements, cluster, tables)
        for number, statement in enumerate(statements, start=1):
            try:
                store.command(statement)
            except StoreError as exc:  # unavailable, rejected or a missing object
                raise MigrationError(
                    f"Migration {migration.path.name} failed at statement {number} on "
                    f"{store.location}: {exc}. Fix the file (it is not recorded as applied) "
                    "and run `agenttrail migrate` again."
                ) from exc
        store.insert_columns(
            MIGRATIONS_TABLE,
            ["version", "name", "checksum", "applied_at"],
            [[migration.version], [migration.name], [migration.checksum], [datetime.now(UTC)]],
        )
        report.applied.append(migration)
    if any(m.name == "legal_holds" for m in migrations):  # the TTL reads legal_holds
        report.retention_changed = apply_retention(store, retention, cluster=cluster)
    return report


def _check_unchanged(
    store: Store, migrations: list[Migration], done: dict[int, tuple[str, str]]
) -> None:
    for m in migrations:
        recorded = done.get(m.version)
        if recorded is not None and recorded[1] != m.checksum:
            raise MigrationError(
                f"Migration {m.path.name} was changed after it was applied to "
                f"{store.location} (recorded checksum {recorded[1][:12]}…, file "
                f"{m.checksum[:12]}…). Applied migrations are immutable: restore the file "
                "and put the change in a new numbered migration."
            )
