"""Errors of the store. Each names the store (password masked) and what to do."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by ``agenttrail.store``."""


class StoreConfigError(StoreError):
    """The store location is missing, ambiguous or not a URL agenttrail understands."""


class StoreNotFound(StoreConfigError):
    """A reading command named an in-process store directory that does not exist.

    Reading never creates a store: a mistyped ``--data`` must not leave an empty store
    behind, and the message must say that nothing is there (not that a migration is
    missing).

    Attributes:
        path: the store directory that was looked for.
    """

    def __init__(self, path: str):
        super().__init__(
            f"There is no store at {path}: the directory does not exist. Check --data (or "
            "AGENTTRAIL_DATA); a store is made by `agenttrail demo`, `agenttrail up` or "
            "`agenttrail migrate --data DIR`."
        )
        self.path = path


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused the request (connection, auth, I/O).

    Attributes:
        location: the store's URL with the password masked.
    """

    def __init__(self, message: str, location: str):
        super().__init__(message)
        self.location = location


class StoreRejected(StoreError):
    """The store refuses this data for good (a type, range, size or constraint problem):
    retrying the same data can never succeed. Isolate the offending rows and keep them
    elsewhere (the consumer dead-letters them with :attr:`reason`).

    Attributes:
        location: the store's URL with the password masked.
        code: the server's numeric error code (None when the client refused to encode).
        name: the server's symbolic error name, or ``client_encoding``.
        reason: the server's (or client's) message, short.
    """

    def __init__(
        self, message: str, location: str, code: int | None, name: str | None, reason: str
    ):
        super().__init__(message)
        self.location = location
        self.code = code
        self.name = name
        self.reason = reason


class SchemaMissing(StoreError):
    """A table, column or database the request needs does not exist in the store: it is
    not migrated (or migrated by an older agenttrail). Run ``agenttrail migrate``.

    Attributes:
        location: the store's URL with the password masked.
        code: the server's numeric error code.
    """

    def __init__(self, message: str, location: str, code: int | None):
        super().__init__(message)
        self.location = location
        self.code = code


class StoreLocked(StoreError):
    """An in-process store directory is already open in another process.

    chdb hosts one store directory per process and refuses a second opener, so
    agenttrail keeps a pid lock file beside the directory to name the holder.

    Attributes:
        path: the store directory.
        pid: the process holding it, when known.
        holder: that process's command line, when known.
    """

    def __init__(self, path: str, pid: int | None, holder: str | None = None):
        who = f"process {pid}" if pid else "another process"
        if holder:
            who += f" ({holder})"
        super().__init__(
            f"Store {path} is in use by {who}. Stop it, or point --clickhouse at a server."
        )
        self.path = path
        self.pid = pid
        self.holder = holder


class MigrationError(StoreError):
    """A migration file is invalid, was changed after being applied, or failed to apply."""
