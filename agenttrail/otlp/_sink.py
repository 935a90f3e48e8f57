"""Where the receiver's events go: Kafka, synchronously, or memory for tests.

:meth:`KafkaSink.produce` returns only when the broker acknowledged every record
(``acks=all``, idempotent producer); otherwise it raises :class:`SinkUnavailable` and
the receiver answers 503 without committing anything, so the client sends again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from agenttrail.events import EVENTS_TOPIC

log = logging.getLogger("agenttrail.otlp")


class SinkUnavailable(RuntimeError):
    """The destination did not take (or did not acknowledge) every event."""


class KafkaSink:
    """Produces (key, framed bytes) records to a topic and waits for their acknowledgement.

    Args:
        bootstrap: ``host:port[,host:port]``.
        topic: the events topic (the SDK's).
        timeout_s: how long :meth:`produce` waits for the broker before giving up.
        extra: further kafka-python producer settings (security, client id, ...).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str = EVENTS_TOPIC,
        *,
        timeout_s: float = 10.0,
        extra: dict[str, Any] | None = None,
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout_s = timeout_s
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 2,
            "batch_size": 512 * 1024,
            "max_request_size": 5 * 1024 * 1024,
            "max_block_ms": int(timeout_s * 1000),
            "request_timeout_ms": int(timeout_s * 1000),
            "delivery_timeout_ms": int(timeout_s * 1000) + 100,
            "reconnect_backoff_max_ms": 2000,
            "bootstrap_timeout_ms": 2000,
            "client_id": "agenttrail-otlp",
        }
        self._config.update(extra or {})
        self._producer: Any = None
        self._lock = threading.Lock()

    @property
    def destination(self) -> str:
        return f"kafka://{self.bootstrap}/{self.topic}"

    def _ensure(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            try:
                self._producer = KafkaProducer(**self._config)
            except KafkaError as exc:
                raise SinkUnavailable(f"Kafka at {self.bootstrap} is not reachable: {exc}") from exc
        return self._producer

    def produce(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Send every record in order and wait until each is acknowledged.

        Raises:
            SinkUnavailable: the broker is unreachable, refused a record or did not
                acknowledge all within ``timeout_s``. Some records may have been
                written; the caller's retry writes identical copies.
        """
        if not records:
            return
        from kafka.errors import KafkaError

        with self._lock:
            producer = self._ensure()
            futures = []
            try:
                for key, value in records:
                    futures.append(producer.send(self.topic, key=key.encode(), value=value))
                producer.flush(timeout=self.timeout_s)
            except KafkaError as exc:
                raise SinkUnavailable(
                    f"Kafka at {self.bootstrap} did not take events: {exc}"
                ) from exc
            pending = [f for f in futures if not f.is_done]
            failed = [f for f in futures if f.is_done and f.failed()]
            if pending or failed:
                cause = failed[0].exception if failed else "no acknowledgement in time"
                acked = len(futures) - len(pending) - len(failed)
                raise SinkUnavailable(
                    f"Kafka at {self.bootstrap} acknowledged {acked} of {len(futures)} events"
                    f" ({cause})"
                )

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


class MemorySink:
    """Keeps produced records in a list (for tests). ``fail_next`` makes the next call fail."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []
        self.fail_next = 0
        self.destination = "memory"

    def produce(self, records: Sequence[tuple[str, bytes]]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise SinkUnavailable("memory sink told to fail")
        self.records.extend(records)

    def close(self) -> None:
        return None
