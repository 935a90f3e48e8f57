"""Open a store: a ClickHouse server over HTTP, or ClickHouse's engine in-process (chdb).

Both sides are driven through one clickhouse-connect client, so the SQL is the same.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import SecretStr

from agenttrail.store import _lock
from agenttrail.store._classify import Failure, classify
from agenttrail.store._config import StoreConfig, StoreTarget
from agenttrail.store._dedup_logs import drop_orphan_records
from agenttrail.store._errors import (
    SchemaMissing,
    StoreError,
    StoreLocked,
    StoreNotFound,
    StoreRejected,
    StoreUnavailable,
)
from agenttrail.store._served import open_served_client, served_endpoint


def _short(exc: BaseException, limit: int = 400) -> str:
    # Engine errors carry multi-kilobyte stack traces; the first lines say what happened.
    text = " ".join(str(exc).split("Stack trace")[0].split())
    return text if len(text) <= limit else text[:limit] + " …"


class Store:
    """An open store. Use as a context manager or call :meth:`close`.

    Thread-safety: calls may come from several threads; they are serialised per store
    (the in-process engine requires it, and a server session must not run two queries).

    Attributes:
        target: where the store is (``str(target)`` masks the password).
        database: the database holding agenttrail's tables.
    """

    def __init__(self, target: StoreTarget, client: Client, served_by: str | None = None):
        self.target = target
        self.database = target.database
        self.served_by = served_by
        """The read endpoint of the ``agenttrail up`` that holds this in-process store,
        when it is read through it (read only); None when opened directly."""
        self._client = client
        self._lock = threading.RLock()
        self._types: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._settings_known: dict[str, bool] = {}
        self._closed = False

    @property
    def location(self) -> str:
        """The store's URL with the password masked."""
        return self.target.masked

    @property
    def is_embedded(self) -> bool:
        """Whether this is the in-process engine (one process per directory)."""
        return self.target.kind == "chdb"

    def command(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        """Run one statement that returns no rows. Blocks until done.

        Raises:
            StoreUnavailable: the store is unreachable or rejected the statement.
        """
        with self._lock:
            self._check_open()
            try:
                self._client.command(sql, settings=dict(settings or {}))
            except (ClickHouseError, OSError) as exc:
                raise self._failure("statement", exc) from exc

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query and return its rows. ``{name:Type}`` placeholders bind ``parameters``.

        Raises:
            StoreUnavailable: the store is unreachable or rejected the query.
        """
        with self._lock:
            self._check_open()
            try:
                # verify's generated SQL (every family's seal, every schema version)
                # outgrows the engine's default query size and AST limits; allow it room
                # rather than fail.
                settings = _long_query_settings(len(sql)) if len(sql) > _LONG_QUERY else {}
                result = self._client.query(
                    sql, parameters=dict(parameters or {}), settings=settings
                )
            except (ClickHouseError, OSError) as exc:
                raise self._failure("query", exc) from exc
            return [tuple(row) for row in result.result_rows]

    def insert_columns(
        self,
        table: str,
        column_names: Sequence[str],
        columns: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> None:
        """Insert column-oriented data into ``table`` as one block. Blocks until stored.

        Args:
            table: table in the store's database.
            column_names: the columns given, in the order of ``columns``.
            columns: one sequence of values per column, all of equal length.
            dedup_token: ``insert_deduplication_token``: a repeated insert with the same
                token (within the table's deduplication window) is stored once.

        The data travels as ONE block whatever its size: the store derives a block's
        deduplication id from the token and the block's place in the insert, so only a
        single-block insert is recognised as a repeat of the same rows inserted another
        way (a store-decoded insert with the same token, see ``insert_from_file``).
        clickhouse-connect would otherwise cut ~2 MiB blocks.

        Raises:
            StoreUnavailable: the store is unreachable or refused the insert; nothing
                was stored, so retry with the same token.
        """
        settings: dict[str, Any] = {}
        if dedup_token is not None:
            settings.update(_dedup_settings(dedup_token))
        with self._lock:
            self._check_open()
            try:
                types = self._column_types(table, tuple(column_names))
                context = self._client.create_insert_context(
                    table,
                    list(column_names),
                    column_type_names=types,
                    column_oriented=True,
                    settings=settings,
                )
                context.req_block_size = max(1, max((len(c) for c in columns), default=1))
                context.data = columns
                self._client.insert(context=context)
            except (TypeError, ValueError, OverflowError) as exc:
                # Raised by clickhouse-connect while encoding a value for its column
                # (e.g. None in a non-Nullable column): the data, not the store.
                raise self._failure(f"insert into {table}", exc, client=True) from exc
            except (ClickHouseError, OSError) as exc:
                raise self._failure(f"insert into {table}", exc) from exc

    def insert_from_file(
        self,
        table: str,
        sql: str,
        data: bytes,
        *,
        rows: int,
        dedup_token: str | None = None,
        fmt: str = "Avro",
        more: Mapping[str, bytes] | None = None,
    ) -> None:
        """Run ``sql``, an ``INSERT INTO {table} … SELECT … FROM {data}`` of ``rows`` rows,
        with ``{table}`` standing for ``table`` and ``{data}`` for ``data`` read in format
        ``fmt`` by the engine (in-process engine only, see :attr:`can_query_files`);
        each ``{name}`` of ``more`` stands for its bytes read the same way (e.g. a small
        table a check looks things up in).

        The rows are read as one chunk and inserted as ONE block, like
        :meth:`insert_columns`: the insert is all or nothing (an exception raised while
        the SELECT runs, e.g. by ``throwIf``, stores nothing), and its deduplication id
        is the one the other insert methods give the same rows under the same token.
        Blocks until stored.

        Raises:
            StoreError: the store is a server.
            StoreRejected / StoreUnavailable: the statement failed; nothing was stored.
        """
        if not self.can_query_files:
            raise StoreError(f"Store {self.location} is a server; it cannot read local files.")
        settings: dict[str, Any] = {
            # One chunk read, one block inserted (see above); the file's own schema, not
            # the table's, types what is read.
            "max_block_size": max(rows, 65_409),
            "max_insert_threads": 1,
            "use_structure_from_insertion_table_in_table_functions": 0,
        }
        if dedup_token is not None:
            settings.update(_dedup_settings(dedup_token))
            if self._knows_setting("deduplicate_insert_select"):
                # The token names the rows: deduplicate whatever the engine thinks of the
                # SELECT's stability (its default may turn deduplication off silently).
                settings["deduplicate_insert_select"] = "enable_even_for_bad_queries"
        names: list[str] = []
        try:
            statement = sql.replace("{table}", f"{self.database}.{table}")
            for placeholder, content in [("data", data), *(more or {}).items()]:
                fd, name = tempfile.mkstemp(prefix="agenttrail-", suffix=f".{fmt.lower()}")
                names.append(name)
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
                statement = statement.replace(f"{{{placeholder}}}", f"file('{name}', '{fmt}')")
            clause = ", ".join(f"{k} = {_setting_literal(v)}" for k, v in settings.items())
            self.command(f"{statement} SETTINGS {clause}")
        finally:
            for name in names:
                with contextlib.suppress(OSError):
                    os.unlink(name)

    def _knows_setting(self, name: str) -> bool:
        known = self._settings_known.get(name)
        if known is None:
            rows = self.query(
                "SELECT count() FROM system.settings WHERE name = {n:String}", {"n": name}
            )
            known = self._settings_known[name] = bool(rows[0][0])
        return known

    def table_columns(self, table: str) -> dict[str, str]:
        """Column name → ClickHouse type of ``table`` in the store's database. Blocks.

        Raises:
            SchemaMissing: the table does not exist.
            StoreUnavailable: the store failed the query.
        """
        rows = self.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String}",
            {"db": self.database, "t": table},
        )
        if not rows:
            raise SchemaMissing(
                f"Table {self.database}.{table} does not exist in {self.location}; run "
                "`agenttrail migrate` against this store.",
                self.location,
                None,
            )
        return {str(name): str(kind) for name, kind in rows}

    def stream_columns(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[list[str], list[Sequence[Any]]]]:
        """Run a query and yield its result block by block: (column names, columns).

        Memory stays bounded by one block (the engine's block size, ~65k rows) however
        large the result. The store is held by this stream until it is exhausted or
        closed; do not run other queries on the same store from inside the loop.

        Raises:
            StoreUnavailable: the store is unreachable or rejected the query.
        """
        with self._lock:
            self._check_open()
            try:
                with self._client.query_column_block_stream(
                    sql, parameters=dict(parameters or {})
                ) as stream:
                    names = list(stream.source.column_names)
                    for block in stream:
                        yield names, list(block)
            except (ClickHouseError, OSError) as exc:
                raise self._failure("query", exc) from exc

    @property
    def can_query_files(self) -> bool:
        """Whether :meth:`query_file` works: the in-process engine reads local files."""
        return self.is_embedded and self.served_by is None

    def query_file(self, sql: str, data: bytes, fmt: str = "Avro") -> list[tuple[Any, ...]]:
        """Run ``sql`` with ``{data}`` standing for ``data`` read in format ``fmt``.

        Only for the in-process engine (see :attr:`can_query_files`): the bytes go to a
        temporary file that the engine reads with ``file()``. Blocks.

        Raises:
            StoreError: the store is a server.
            StoreUnavailable: the query failed (including data the engine cannot parse).
        """
        if not self.can_query_files:
            raise StoreError(f"Store {self.location} is a server; it cannot read local files.")
        fd, name = tempfile.mkstemp(prefix="agenttrail-", suffix=f".{fmt.lower()}")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            source = f"file('{name}', '{fmt}')"
            return self.query(sql.replace("{data}", source))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def use_database(self) -> None:
        """Make the store's database the default for unqualified names (after it exists)."""
        with self._lock:
            self._client.database = self.database

    def close(self) -> None:
        """Close the client and, for the in-process engine, release the directory lock."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._client.close()
            finally:
                if self.target.path is not None and self.served_by is None:
                    _lock.release(self.target.path)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.location})"

    def _column_types(self, table: str, names: tuple[str, ...]) -> list[str]:
        key = (table, names)
        types = self._types.get(key)
        if types is None:
            result = self._client.query(
                "SELECT name, type FROM system.columns WHERE database = {db:String} "
                "AND table = {t:String}",
                parameters={"db": self.database, "t": table},
            )
            by_name = {str(r[0]): str(r[1]) for r in result.result_rows}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise SchemaMissing(
                    f"Table {self.database}.{table} in {self.location} has no column(s) "
                    f"{', '.join(missing)}; run `agenttrail migrate` against this store.",
                    self.location,
                    None,
                )
            types = [by_name[n] for n in names]
            self._types[key] = types
        return types

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"Store {self.location} is closed; open it again with open_store().")

    def _failure(self, what: str, exc: BaseException, client: bool = False) -> StoreError:
        """The error of a failed request, classified by the server's error code (never
        by its message text): unavailable, rejected or schema missing."""
        kind = Failure.REJECTED if client else classify(exc)
        reason = _short(exc)
        if kind is Failure.SCHEMA_MISSING:
            return SchemaMissing(
                f"Store {self.location} lacks what the {what} needs ({reason}); run "
                "`agenttrail migrate` against this store.",
                self.location,
                getattr(exc, "code", None),
            )
        if kind is Failure.REJECTED:
            code = getattr(exc, "code", None)
            name = getattr(exc, "name", None) or ("client_encoding" if code is None else None)
            return StoreRejected(
                f"Store {self.location} refused the {what} for good: {reason}",
                self.location,
                code,
                name,
                reason,
            )
        return StoreUnavailable(f"Store {self.location} failed the {what}: {reason}", self.location)


def open_store(
    clickhouse: str | None = None,
    data: Path | str | None = None,
    *,
    config: StoreConfig | None = None,
    create: bool = True,
) -> Store:
    """Open the store named by ``clickhouse`` (a URL) or ``data`` (a directory).

    With neither argument the location comes from ``config`` or the environment
    (``AGENTTRAIL_CLICKHOUSE`` / ``AGENTTRAIL_DATA``). Opening checks the connection
    with one query. Blocks up to the connect timeout for a server.

    Args:
        create: make an in-process store directory that does not exist yet. Reading
            commands pass False: they never create anything on disk, and when the
            directory is held by a running ``agenttrail up`` that serves reads, they
            are connected to its read endpoint (read only; ``Store.served_by``).

    Raises:
        StoreConfigError: no location, both, or an unsupported URL.
        StoreNotFound: ``create`` is False and the in-process store directory does not
            exist (nothing is created).
        StoreLocked: the in-process store is held by another process (the error names it).
        StoreUnavailable: the server cannot be reached or refused the login.
    """
    if isinstance(data, str):
        data = Path(data)
    if clickhouse is not None or data is not None:
        base = config or StoreConfig()
        config = base.model_copy(
            update={"clickhouse": SecretStr(clickhouse) if clickhouse else None, "data": data}
        )
    config = config or StoreConfig()
    target = config.target()
    if target.kind == "chdb":
        assert target.path is not None
        if not create and not target.path.is_dir():
            raise StoreNotFound(str(target.path))
        try:
            return _open_embedded(target)
        except StoreLocked as locked:
            if create:
                raise
            endpoint = served_endpoint(target.path, locked.pid)
            if endpoint is None:
                raise
            client = open_served_client(target, *endpoint, config.connect_timeout_s)
            return _ready(Store(target, client, served_by=endpoint[0]))
    return _open_server(target, config.connect_timeout_s)


def _open_server(target: StoreTarget, timeout_s: float) -> Store:
    try:
        client = clickhouse_connect.get_client(
            host=target.host,
            port=target.port,
            username=target.username,
            password=target.password.get_secret_value(),
            secure=target.secure,
            connect_timeout=timeout_s,
            autogenerate_session_id=False,
        )
        client.query("SELECT 1")
    except Exception as exc:  # connection, TLS, auth and HTTP errors come in many types
        raise StoreUnavailable(
            f"Cannot reach the ClickHouse server {target.masked}: {_connect_reason(exc)}. "
            "Check the URL and credentials, and that the server is running.",
            target.masked,
        ) from exc
    store = Store(target, client)
    if store.query(
        "SELECT count() FROM system.databases WHERE name = {d:String}", {"d": target.database}
    )[0][0]:
        store.use_database()
    return store


def _connect_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words: the root OS error when there is one.

    clickhouse-connect wraps urllib3's errors, whose text carries object reprs and
    retry bookkeeping; the innermost ``OSError`` (refused, no route, name unknown) is
    what the user needs. urllib3 keeps causes in ``reason`` as well as in the chain.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    root_os: str | None = None
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and (current.strerror or str(current)):
            root_os = str(current.strerror or current)
        for nxt in (getattr(current, "reason", None), current.__context__, current.__cause__):
            if isinstance(nxt, BaseException):
                pending.append(nxt)
    if root_os is not None:
        return root_os.rstrip(".").lower()
    return _short(exc)


_ENGINE_OPENED: set[Path] = set()
"""Store directories the engine opened in this process (it keeps them loaded)."""


def _open_embedded(target: StoreTarget) -> Store:
    path = target.path
    assert path is not None
    _lock.acquire(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if path not in _ENGINE_OPENED:
            # Before the engine reads the logs; never under an engine that has them.
            drop_orphan_records(path)
            _ENGINE_OPENED.add(path)
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    except Exception as exc:
        _lock.release(path)
        text = str(exc)
        if "EmbeddedServer" in text and "filesystem" not in text:
            # Held by a process that did not take our lock (e.g. a plain chdb user).
            raise StoreLocked(str(path), _lock.engine_holder_pid(path)) from None
        raise StoreUnavailable(
            f"Cannot open the in-process store {path}: {_short(exc)}", target.masked
        ) from exc
    store = Store(target, client)
    try:
        exists = store.query(
            "SELECT count() FROM system.databases WHERE name = {d:String}",
            {"d": target.database},
        )[0][0]
    except BaseException:
        store.close()
        raise
    if exists:
        store.use_database()
    return store


def _ready(store: Store) -> Store:
    """Make the store's database the default when it exists; close the store on failure."""
    try:
        exists = store.query(
            "SELECT count() FROM system.databases WHERE name = {d:String}",
            {"d": store.database},
        )[0][0]
    except BaseException:
        store.close()
        raise
    if exists:
        store.use_database()
    return store


_LONG_QUERY = 32 * 1024
"""Queries longer than this get larger size and AST limits than the engine's defaults."""


def _long_query_settings(length: int) -> dict[str, Any]:
    return {
        "max_query_size": max(262_144, 4 * length),
        "max_ast_elements": max(50_000, 10 * length),
        "max_expanded_ast_elements": max(500_000, 50 * length),
    }


def _setting_literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _dedup_settings(token: str) -> dict[str, Any]:
    """Settings of an insert that a retry with the same token must not repeat.

    The materialized views behind task_runs and the metrics must drop a retried block
    too; that is the server default, spelled out so a changed default or profile
    cannot double-count them.
    """
    return {
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }
