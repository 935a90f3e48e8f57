"""Kafka administration that works against any Kafka-compatible broker: wait until
one answers, create agenttrail's topics. Used by the embedded broker and by commands
that prepare a production Kafka."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from agenttrail.events._names import CONTROL_TOPIC, EVENTS_TOPIC

CONTROL_TOPIC_PARTITIONS = 1
"""The control topic has one partition so that kill commands keep their order."""

_PROBE_INTERVAL = 0.05


class BrokerError(Exception):
    """The broker could not be started, reached or prepared. The message says what to do."""


def wait_for_broker(bootstrap: str, timeout: float) -> None:
    """Block until a Kafka broker at ``bootstrap`` answers a metadata request.

    Works against any Kafka-compatible broker, embedded or not.

    Args:
        bootstrap: ``host:port`` (or a comma-separated list of them).
        timeout: seconds to keep trying.

    Raises:
        BrokerError: no broker answered within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while _probe_cluster_id(bootstrap, _remaining(deadline, cap=2.0)) is None:
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"No Kafka broker answered at {bootstrap} within {timeout:.1f}s. "
                "Start one (agenttrail broker) or check the bootstrap address."
            )
        time.sleep(min(_PROBE_INTERVAL, _remaining(deadline)))


def ensure_topics(
    bootstrap: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create agenttrail's topics where missing and block until they are usable.

    ``agenttrail.events`` gets ``partitions`` partitions and ``agenttrail.control`` one.
    Topics that already exist are left as they are (their partition count is not
    changed), so the call is idempotent and safe against a production Kafka.

    Args:
        bootstrap: ``host:port`` of a reachable broker.
        partitions: partition count for the events topic, at least 1.
        replication_factor: replication of new topics; 1 for a single broker.
        timeout: seconds allowed for connecting, creating and waiting for leaders.

    Raises:
        ValueError: ``partitions`` or ``replication_factor`` is below 1.
        BrokerError: the broker is unreachable, refused a topic, or the topics did not
            get partition leaders in time.
    """
    if partitions < 1 or replication_factor < 1:
        raise ValueError(
            f"partitions ({partitions}) and replication_factor ({replication_factor}) must be >= 1"
        )
    wanted = {EVENTS_TOPIC: partitions, CONTROL_TOPIC: CONTROL_TOPIC_PARTITIONS}
    deadline = time.monotonic() + timeout
    admin = _connect_admin(bootstrap, _remaining(deadline))
    if admin is None:
        raise BrokerError(
            f"Cannot create topics: no Kafka broker answered at {bootstrap} within "
            f"{timeout:.1f}s. Start it first, or check the bootstrap address."
        )
    try:
        existing = set(admin.list_topics())
        missing = {
            name: {"num_partitions": count, "replication_factor": replication_factor}
            for name, count in wanted.items()
            if name not in existing
        }
        if missing:
            response = admin.create_topics(
                missing, timeout_ms=_ms(_remaining(deadline)), raise_errors=False
            )
            for result in response["topics"]:
                # 36 = TOPIC_ALREADY_EXISTS: another process created it meanwhile; fine.
                if result["error_code"] not in (0, 36):
                    raise BrokerError(
                        f"Broker {bootstrap} refused to create topic {result['name']!r}: "
                        f"error {result['error_code']} {result.get('error_message') or ''}. "
                        "Create it by hand or check the broker's limits and permissions."
                    )
        admin.wait_for_topics(list(wanted), timeout_ms=_ms(_remaining(deadline)))
    except KafkaError as exc:
        raise BrokerError(
            f"Preparing topics {', '.join(wanted)} on {bootstrap} failed: {exc}"
        ) from exc
    finally:
        admin.close()


def messages_in_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> int:
    """The sum of ``topic``'s end offsets (:func:`topic_end_offsets`): on a topic nothing
    was ever deleted from, the messages it holds. 0 when the broker or the topic is not
    there."""
    return sum(topic_end_offsets(bootstrap, topic, timeout).values())


def topic_end_offsets(bootstrap: str, topic: str, timeout: float = 5.0) -> dict[int, int]:
    """Each partition's end offset (the offset after its last message); empty when the
    broker or the topic is not there.

    Asked twice: with ListOffsets, then with one fetch per partition from just below
    that answer, whose response carries the partition's high watermark. The embedded
    broker answers ListOffsets with its last record batch's first offset + 1, short of
    the end by the rest of that batch; the fetch gives the end on any broker. The
    larger of the two counts (within ``timeout``; a partition not answered keeps the
    first).
    """
    from kafka import KafkaConsumer, TopicPartition

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=1024,  # the first batch from there says enough
        )
    except KafkaError:
        return {}
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = {tp: int(end) for tp, end in consumer.end_offsets(tps).items()}
        asked = [tp for tp in tps if ends.get(tp, 0) > 0]
        consumer.assign(asked)
        for tp in asked:
            consumer.seek(tp, ends[tp] - 1)
        deadline = time.monotonic() + timeout
        while asked and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
            for tp in list(asked):
                mark = consumer.highwater(tp)
                if mark is not None:
                    ends[tp] = max(ends[tp], int(mark))
                    asked.remove(tp)
        return {tp.partition: end for tp, end in ends.items()}
    except KafkaError:
        return {}
    finally:
        consumer.close()


def _probe_cluster_id(bootstrap: str, timeout: float) -> str | None:
    """Ask for cluster metadata; return the cluster id, or None if nobody answered."""
    admin = _connect_admin(bootstrap, timeout)
    if admin is None:
        return None
    try:
        return str(admin.describe_cluster()["cluster_id"])
    except (KafkaError, OSError):
        return None
    finally:
        admin.close()


def _connect_admin(bootstrap: str, timeout: float) -> Any:
    """A connected ``KafkaAdminClient``, or None if the bootstrap did not answer in time."""
    ms = _ms(timeout)
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="agenttrail-admin",
            bootstrap_timeout_ms=ms,
            request_timeout_ms=max(ms, 1000),
        )
    except (KafkaError, OSError):
        return None


def _remaining(deadline: float, cap: float | None = None) -> float:
    left = max(deadline - time.monotonic(), 0.0)
    return left if cap is None else min(left, cap)


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 100)
