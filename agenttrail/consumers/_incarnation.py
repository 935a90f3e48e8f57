"""Which incarnation of a topic a position belongs to.

An offset means something only on the broker and topic that assigned it. The embedded
broker keeps its messages in memory and numbers them from 0 again after every start,
and a topic deleted and created again on Apache Kafka does the same; the store, where
the ledger lives, outlives both. So every ledger row, every deduplication token and
every committed offset's metadata carries the incarnation it belongs to, and a consumer
resumes only from positions of the incarnation it is reading now.

The incarnation is the topic's id (a UUID the broker gives a topic when it creates it,
in Metadata responses since Kafka 2.8, KIP-516; Tansu sends one too). A broker that
sends no topic id is identified by its cluster id, which the embedded broker draws anew
at every start. A broker that sends neither gives ``""``: positions are then trusted as
they were before incarnations existed.

It is read with an admin client of its own, not through the consumer: kafka-python's
consumer waits without a deadline for a metadata answer that a restarting broker never
sends, while the admin client's requests fail fast.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

LEGACY_INCARNATION = ""
"""The incarnation of ledger rows written before incarnations were recorded, and of a
broker that names neither topic ids nor a cluster id."""

_NIL_TOPIC_ID = str(uuid.UUID(int=0))


class IncarnationProbe:
    """Asks the broker which incarnation a topic is. Not thread-safe; one per pipeline.

    Args:
        bootstrap: Kafka bootstrap servers, ``HOST:PORT[,HOST:PORT]``.
        topic: the topic.
        kafka_options: consumer settings; those an admin client understands (security,
            timeouts) are applied to it too.
    """

    def __init__(self, bootstrap: str, topic: str, kafka_options: dict[str, Any] | None = None):
        self.topic = topic
        allowed = set(KafkaAdminClient.DEFAULT_CONFIG)
        options = {k: v for k, v in (kafka_options or {}).items() if k in allowed}
        options.pop("client_id", None)
        options.setdefault("request_timeout_ms", 5000)
        self._settings: dict[str, Any] = {
            **options,
            "bootstrap_servers": bootstrap.split(","),
            "client_id": "agenttrail-incarnation",
        }
        self._admin: Any = None

    def read(self) -> str:
        """The topic's incarnation now. Blocks on one metadata request (bounded by the
        admin client's request timeout).

        Returns:
            ``"topic-id:<uuid>"``, else ``"cluster:<id>"``, else :data:`LEGACY_INCARNATION`.

        Raises:
            kafka.errors.KafkaError: the broker did not answer or does not know the topic;
                the next call connects afresh.
        """
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(**self._settings)
            topics = self._admin.describe_topics([self.topic])
            topic_id = _topic_id(topics, self.topic)
            cluster = {} if topic_id else self._admin.describe_cluster()
        except (KafkaError, OSError) as exc:
            self.close()
            if isinstance(exc, KafkaError):
                raise
            raise KafkaError(f"cannot ask {self._settings['bootstrap_servers']}: {exc}") from exc
        if topic_id:
            return f"topic-id:{topic_id}"
        cluster_id = cluster.get("cluster_id")
        if cluster_id:
            return f"cluster:{cluster_id}"
        return LEGACY_INCARNATION

    def close(self) -> None:
        """Close the admin client (a later :meth:`read` opens a new one)."""
        admin, self._admin = self._admin, None
        if admin is not None:
            # Closing a broken client must not hide why it broke.
            with contextlib.suppress(Exception):
                admin.close()


def _topic_id(topics: list[dict[str, Any]], topic: str) -> str | None:
    """The topic's id from a describe_topics answer, or None when it has none.

    Raises:
        KafkaError: the broker answered with an error for the topic.
    """
    for t in topics:
        if t.get("name") == topic:
            if t.get("error_code"):
                raise KafkaError(f"topic {topic}: metadata error {t['error_code']}")
            topic_id = str(t.get("topic_id") or "")
            if topic_id and topic_id != _NIL_TOPIC_ID:
                return topic_id
    return None


def topic_incarnation(bootstrap: str, topic: str, **kafka_options: Any) -> str:
    """The incarnation of ``topic`` on the broker at ``bootstrap`` (for tools and tests).

    Raises:
        kafka.errors.KafkaError: the broker could not be reached.
    """
    probe = IncarnationProbe(bootstrap, topic, kafka_options)
    try:
        return probe.read()
    finally:
        probe.close()
