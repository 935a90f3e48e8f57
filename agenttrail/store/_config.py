"""Where the store is: a ClickHouse server URL or an in-process (chdb) directory.

``--clickhouse`` takes ``http(s)://user:password@host:8123/database`` or
``chdb:///path``; ``--data DIR`` is shorthand for ``chdb://DIR/clickhouse``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agenttrail.store._errors import StoreConfigError
from agenttrail.store._tables import DEFAULT_DATABASE

LOCAL_DATA_DIR = Path(".agenttrail")
"""The default data directory of ``agenttrail demo`` and ``up``, relative to the working
directory; used when no store is named."""


class StoreConfig(BaseSettings):
    """Store settings; constructor argument > environment (``AGENTTRAIL_*``) > default.

    At most one of ``clickhouse`` and ``data`` may be set; with neither, the store of
    ``./.agenttrail`` (where ``agenttrail demo`` and ``up`` keep it) is used if present.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTTRAIL_", extra="ignore")

    clickhouse: SecretStr | None = Field(
        default=None,
        description="AGENTTRAIL_CLICKHOUSE: http(s)://user:password@host:8123/database or "
        "chdb:///path. Secret because the URL may carry a password.",
    )
    data: Path | None = Field(
        default=None,
        description="AGENTTRAIL_DATA: data directory; the in-process store is DIR/clickhouse.",
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="AGENTTRAIL_CONNECT_TIMEOUT_S: server connect timeout."
    )

    def target(self) -> StoreTarget:
        """Parse the configured location.

        Raises:
            StoreConfigError: neither or both locations given, or an unsupported URL.
        """
        url = self.clickhouse.get_secret_value() if self.clickhouse else None
        if url and self.data is not None:
            raise StoreConfigError(
                "Both --clickhouse and --data are set; choose one store "
                "(--data DIR is shorthand for --clickhouse chdb://DIR/clickhouse)."
            )
        if self.data is not None:
            return StoreTarget.embedded(self.data / "clickhouse")
        if not url:
            # `agenttrail demo` and `up` keep their store in ./.agenttrail by default; the
            # commands that read the record find it there too.
            local = LOCAL_DATA_DIR / "clickhouse"
            if local.is_dir():
                return StoreTarget.embedded(local)
            raise StoreConfigError(
                "No store given: pass --data DIR (in-process store) or --clickhouse URL "
                "(http://user:password@host:8123/agenttrail), or set AGENTTRAIL_DATA / "
                f"AGENTTRAIL_CLICKHOUSE; there is no {LOCAL_DATA_DIR}/ store here either."
            )
        return StoreTarget.parse(url)


@dataclass(frozen=True, repr=False)
class StoreTarget:
    """A parsed store location. ``repr`` and ``masked`` never show the password.

    Attributes:
        kind: ``server`` (ClickHouse over HTTP) or ``chdb`` (in-process engine).
        path: the store directory for ``chdb``.
        host, port, username, secure: the server for ``server``.
        password: the server password.
        database: database holding agenttrail's tables.
    """

    kind: Literal["server", "chdb"]
    path: Path | None = None
    host: str = ""
    port: int = 8123
    username: str = "default"
    password: SecretStr = field(default_factory=lambda: SecretStr(""))
    secure: bool = False
    database: str = DEFAULT_DATABASE

    @classmethod
    def embedded(cls, path: Path) -> StoreTarget:
        """An in-process store in directory ``path`` (made absolute)."""
        return cls(kind="chdb", path=Path(path).expanduser().absolute())

    @classmethod
    def parse(cls, url: str) -> StoreTarget:
        """Parse ``http(s)://user:password@host:port/database`` or ``chdb:///path``.

        Raises:
            StoreConfigError: the scheme is not http, https or chdb, or a part is missing.
        """
        if url.startswith("chdb://"):
            rest = url[len("chdb://") :]
            if not rest:
                raise StoreConfigError(
                    "chdb:// URL has no path; write chdb:///absolute/path/to/store."
                )
            return cls.embedded(Path(unquote(rest)))
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise StoreConfigError(
                f"Store URL scheme {parts.scheme or '(none)'!r} is not supported; use "
                "http(s)://user:password@host:8123/database or chdb:///path."
            )
        if not parts.hostname:
            raise StoreConfigError(f"Store URL {_mask(url)} has no host.")
        try:
            port = parts.port or (8443 if parts.scheme == "https" else 8123)
        except ValueError as exc:
            raise StoreConfigError(f"Store URL {_mask(url)} has an invalid port: {exc}") from None
        database = parts.path.strip("/") or DEFAULT_DATABASE
        return cls(
            kind="server",
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else "default",
            password=SecretStr(unquote(parts.password) if parts.password else ""),
            secure=parts.scheme == "https",
            database=database,
        )

    @property
    def masked(self) -> str:
        """The location as a URL with the password replaced by ``***``."""
        if self.kind == "chdb":
            return f"chdb://{self.path}"
        scheme = "https" if self.secure else "http"
        secret = ":***" if self.password.get_secret_value() else ""
        return f"{scheme}://{self.username}{secret}@{self.host}:{self.port}/{self.database}"

    def __repr__(self) -> str:
        return f"StoreTarget({self.masked})"

    __str__ = __repr__


def _mask(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
