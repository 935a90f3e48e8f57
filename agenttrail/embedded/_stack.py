"""The one-machine stack: embedded broker + ingest consumer + in-process ClickHouse.

``agenttrail up`` and ``agenttrail demo`` run it; tests start it through the same code.
The stack writes ``<data>/up.json`` (pid, bootstrap address, store) so that
``Recorder.from_env()`` in another process finds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from agenttrail.consumers import ConsumerConfig, IngestSnapshot, IngestStats, run_consumer
from agenttrail.embedded._broker import (
    EmbeddedBroker,
    _port_in_use_message,
    _port_is_free,
    embedded_consumer_config,
)
from agenttrail.embedded._kafka_admin import BrokerError, messages_in_topic
from agenttrail.embedded._read_server import ReadServer
from agenttrail.events import EVENTS_TOPIC
from agenttrail.store import DEAD_LETTERS_TABLE, FAMILY_TABLES, Store, migrate, open_store
from agenttrail.store._config import LOCAL_DATA_DIR

DEFAULT_DATA_DIR = LOCAL_DATA_DIR
"""Where ``up`` and ``demo`` keep their data unless told otherwise (and where
``Recorder.from_env()`` looks for ``up.json`` and the reading commands for the store)."""


_HOST = "127.0.0.1"


class StackError(RuntimeError):
    """The stack could not start or stop cleanly; the message says why and what to do."""


class LocalStack:
    """Broker, consumer and store in this process.

    Args:
        data: data directory: the store lives in ``data/clickhouse``, the broker log in
            ``data/broker.log``, the SDK spool in ``data/spool``.
        port: broker port; 0 picks a free one.
        partitions: partitions of the events topic.
        serve_reads: serve read-only queries of the store to other processes on a
            loopback endpoint announced in ``up.json`` (see :mod:`._read_server`), so
            that the reading commands work while the stack holds the store.
        schema_registry: a Schema Registry whose ids the producers frame with; the
            consumer resolves them through it, and up.json names it, so that a recorder
            that finds the stack there frames with the same ids.
    """

    def __init__(
        self,
        data: Path = DEFAULT_DATA_DIR,
        port: int = 0,
        partitions: int = 4,
        serve_reads: bool = True,
        schema_registry: str | None = None,
    ):
        self.data = data.resolve()
        self.schema_registry = schema_registry
        self.serve_reads = serve_reads
        self.reads: ReadServer | None = None
        self._read_token = secrets.token_urlsafe(24)
        self._started_at: float | None = None
        self.port = port
        self.partitions = partitions
        self.stats = IngestStats()
        self.broker: EmbeddedBroker | None = None
        self.store: Store | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def bootstrap(self) -> str:
        """Bootstrap address of the running broker."""
        if self.broker is None:
            raise StackError("The stack is not running; call start() first.")
        return self.broker.bootstrap

    @property
    def up_file(self) -> Path:
        return self.data / "up.json"

    def start(self, timeout: float = 60.0) -> LocalStack:
        """Open and migrate the store, start the broker and the consumer; write up.json.

        A fixed port that is taken is refused first, before anything is created or
        migrated.

        Raises:
            StackError: the data directory cannot be created.
            StoreLocked: another process (e.g. a running ``agenttrail up``) holds the store.
            BrokerError: the broker would not start (the port is taken, …).
        """
        if self.port and not _port_is_free(_HOST, self.port):
            raise BrokerError(_port_in_use_message(_HOST, self.port))
        try:
            self.data.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StackError(
                f"Cannot create the data directory {self.data}: {exc.strerror}. "
                "Choose a writable place with --data DIR."
            ) from exc
        self.store = open_store(data=self.data)
        try:
            migrate(self.store)
            if self.serve_reads:
                self.reads = ReadServer(
                    self.data / "clickhouse", self._read_token, self.status
                ).start()
            self.broker = EmbeddedBroker(
                port=self.port, partitions=self.partitions, log_path=self.data / "broker.log"
            ).start(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        config = ConsumerConfig(
            bootstrap=self.broker.bootstrap,
            schema_registry=self.schema_registry,
            migrate=False,
            kafka_options=embedded_consumer_config(),
        )
        self._thread = threading.Thread(
            target=self._consume, args=(config,), name="agenttrail-ingest", daemon=True
        )
        self._thread.start()
        info: dict[str, object] = {
            "pid": os.getpid(),
            "bootstrap": self.broker.bootstrap,
            "store": str(self.data / "clickhouse"),
            "started_at": time.time(),
        }
        if self.schema_registry:
            info["schema_registry"] = self.schema_registry  # Recorder.from_env frames with it
        if self.reads is not None:
            info["read_endpoint"] = self.reads.url
            info["read_token"] = self._read_token
        # The token lets any reader of this file query the store: owner-only.
        fd = os.open(self.up_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info, indent=2))
        os.chmod(self.up_file, 0o600)
        self._started_at = time.time()
        return self

    def status(self) -> dict[str, object]:
        """The stack's live status (served at ``/agenttrail/status`` for ``agenttrail status``)."""
        return {
            "pid": os.getpid(),
            "bootstrap": self.broker.bootstrap if self.broker is not None else None,
            "partitions": self.partitions,
            "store": str(self.data / "clickhouse"),
            "started_at": self._started_at,
            "ingest": self.stats.snapshot().to_dict(),
            "consumer_alive": self._thread is not None and self._thread.is_alive(),
            "consumer_error": str(self._error) if self._error is not None else None,
        }

    def _consume(self, config: ConsumerConfig) -> None:
        try:
            run_consumer(config, self._stop, store=self.store, stats=self.stats)
        except BaseException as exc:  # surfaced by check() and stop()
            self._error = exc

    def check(self) -> None:
        """Raise the consumer's error if it died."""
        if self._error is not None:
            raise StackError(f"The ingest consumer stopped: {self._error}") from self._error

    def snapshot(self) -> IngestSnapshot:
        return self.stats.snapshot()

    def wait_stored(
        self,
        messages: int,
        timeout: float = 120.0,
        *,
        progress: Callable[[int], None] | None = None,
        give_up: threading.Event | None = None,
    ) -> IngestSnapshot:
        """Block until ``messages`` messages are stored (as events or dead letters).

        Args:
            progress: called with the number stored so far whenever it changes.
            give_up: when set, return at once with what is stored so far.

        Raises:
            StackError: the consumer died, or the deadline passed (the message says how
                far it got).
        """
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            self.check()
            snap = self.stats.snapshot()
            stored = snap.events_total + snap.dead_letters
            if progress is not None and stored != last:
                progress(stored)
                last = stored
            if stored >= messages or (give_up is not None and give_up.is_set()):
                return snap
            if time.monotonic() > deadline:
                raise StackError(
                    f"Only {snap.events_total + snap.dead_letters} of {messages} messages were "
                    f"stored within {timeout:.0f}s (lag {snap.lag}); the data so far is in "
                    f"{self.data}."
                )
            time.sleep(0.05)

    def drain(
        self,
        quiet_s: float = 1.5,
        timeout: float = 60.0,
        *,
        progress: Callable[[int, int], None] | None = None,
        give_up: threading.Event | None = None,
    ) -> IngestSnapshot:
        """Wait until the consumer has stored every message the broker holds.

        ``progress`` is called with (stored, held by the broker) whenever the stored
        count changes; a set ``give_up`` returns at once with what is stored so far.

        The embedded broker keeps messages in memory and was started by this stack, so
        the topic holds exactly this session's messages: done when as many are stored
        (as events or dead letters) as the broker reports, the consumer's lag is 0 or
        unknown, and nothing new was stored for ``quiet_s`` seconds; or when ``timeout``
        passes.
        """
        deadline = time.monotonic() + timeout
        expected = self._messages_in_broker()
        last = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            self.check()
            snap = self.stats.snapshot()
            total = snap.events_total + snap.dead_letters
            if give_up is not None and give_up.is_set():
                return snap
            if total != last:
                last, quiet_since = total, time.monotonic()
                if progress is not None:
                    progress(total, expected)
            elif (
                total >= expected
                and snap.lag in (0, None)
                and time.monotonic() - quiet_since >= quiet_s
            ):
                return snap
            time.sleep(0.05)
        return self.stats.snapshot()

    def _messages_in_broker(self) -> int:
        """Sum of the events topic's end offsets: the messages produced this session."""
        if self.broker is None:
            return 0
        return messages_in_topic(self.broker.bootstrap, EVENTS_TOPIC)

    def stored_counts(self) -> dict[str, int]:
        """Rows per family table and in dead_letters, read from the store itself."""
        if self.store is None:
            raise StackError("The stack is not running.")
        db = self.store.database
        counts = {}
        for family, table in FAMILY_TABLES.items():
            counts[family] = int(self.store.query(f"SELECT count() FROM {db}.{table}")[0][0])
        counts["dead_letters"] = int(
            self.store.query(f"SELECT count() FROM {db}.{DEAD_LETTERS_TABLE}")[0][0]
        )
        return counts

    def stop(self) -> None:
        """Stop the consumer (it finishes and commits its batch), the broker, the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.reads is not None:
            self.reads.stop()
            self.reads = None
        if self.store is not None:
            self.store.close()
            self.store = None
        with contextlib.suppress(OSError):
            info = json.loads(self.up_file.read_text())
            if info.get("pid") == os.getpid():
                self.up_file.unlink()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
