"""Where control messages travel: the Kafka control topic, or memory in tests.

:class:`KafkaControlChannel` listens with ``assign()`` on every partition of the control
topic — no consumer group, so a recorder hears a command within one fetch (about
``poll_ms``), never after a group rebalance. It reads the topic from the beginning, so
a recorder that starts after a kill knows it (see :class:`KillState`), then follows
its tail. It runs in one daemon thread, reconnects with backoff when the broker is
away, and never raises into the agent. Replies (receipts, acknowledgements) go out
through a small producer of its own, off the agent's thread.

:class:`InMemoryControlBus` delivers messages between channels of one process, for
tests of agents and of agenttrail itself.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from agenttrail.events import CONTROL_TOPIC
from agenttrail.producer._control import ControlMessage, ControlMessageError

log = logging.getLogger("agenttrail.producer")

OnMessage = Callable[[ControlMessage], None]


class ControlChannel(Protocol):
    """Delivers control messages to one recorder and carries its replies."""

    def start(self, on_message: OnMessage) -> None:
        """Begin delivering every message (old ones first) to ``on_message``, on a thread
        of the channel. Returns at once."""

    def wait_caught_up(self, timeout: float) -> bool:
        """Block until every message that existed at start was delivered; True if so."""

    def publish(self, message: ControlMessage) -> None:
        """Send a reply; returns at once and never raises (failures are logged)."""

    def close(self) -> None:
        """Stop delivering; idempotent."""


class KafkaControlChannel:
    """The control topic on Kafka.

    Args:
        bootstrap: Kafka bootstrap servers.
        topic: the control topic.
        poll_ms: longest wait of one fetch; bounds how late a command is heard.
    """

    def __init__(self, bootstrap: str, topic: str = CONTROL_TOPIC, poll_ms: int = 100):
        self.bootstrap = bootstrap
        self.topic = topic
        self.poll_ms = poll_ms
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None
        self._replies: queue.Queue[ControlMessage | None] = queue.Queue(maxsize=100_000)
        self._reply_thread: threading.Thread | None = None

    def start(self, on_message: OnMessage) -> None:
        self._thread = threading.Thread(
            target=self._listen, args=(on_message,), name="agenttrail-control", daemon=True
        )
        self._thread.start()
        self._reply_thread = threading.Thread(
            target=self._send_replies, name="agenttrail-control-replies", daemon=True
        )
        self._reply_thread.start()

    def wait_caught_up(self, timeout: float) -> bool:
        return self._caught_up.wait(timeout)

    def publish(self, message: ControlMessage) -> None:
        try:
            self._replies.put_nowait(message)
        except queue.Full:
            log.warning("agenttrail: control reply queue is full; dropped %s", message.type)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._replies.put(None)
        for t in (self._thread, self._reply_thread):
            if t is not None:
                t.join(timeout=5.0)

    # -- threads -------------------------------------------------------------------------

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.poll_ms,
            request_timeout_ms=10_000,
        )
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            consumer.close()
            raise ConnectionError(f"control topic {self.topic} has no partitions (yet)")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return consumer, tps, consumer.end_offsets(tps)

    def _listen(self, on_message: OnMessage) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                consumer, tps, ends = self._consumer()
            except Exception as exc:  # broker away, topic missing: retry, never raise
                log.info("agenttrail: control topic not reachable yet (%s); retrying", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            try:
                self._follow(consumer, tps, ends, on_message)
            except Exception as exc:
                log.warning("agenttrail: control listener lost the broker (%s); reconnecting", exc)
            finally:
                with contextlib.suppress(Exception):  # closing a broken consumer may fail
                    consumer.close()

    def _follow(
        self, consumer: Any, tps: list[Any], ends: dict[Any, int], on_message: OnMessage
    ) -> None:
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=self.poll_ms)
            for records in batches.values():
                for record in records:
                    _deliver(record.value, on_message)
            if not self._caught_up.is_set() and all(
                consumer.position(tp) >= ends.get(tp, 0) for tp in tps
            ):
                self._caught_up.set()

    def _send_replies(self) -> None:
        producer = None
        while True:
            message = self._replies.get()
            if message is None:
                break
            try:
                if producer is None:
                    from kafka import KafkaProducer

                    producer = KafkaProducer(
                        bootstrap_servers=self.bootstrap, acks="all", linger_ms=5
                    )
                producer.send(self.topic, key=message.command_id.encode(), value=message.encode())
                if self._replies.empty():
                    producer.flush(timeout=5.0)
            except Exception as exc:  # replies are informative; the trail holds the record
                log.warning("agenttrail: could not send control %s (%s)", message.type, exc)
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close(timeout=5.0)


def _deliver(value: bytes | None, on_message: OnMessage) -> None:
    try:
        message = ControlMessage.decode(value)
    except ControlMessageError as exc:
        log.warning("agenttrail: ignored a message on the control topic: %s", exc)
        return
    try:
        on_message(message)
    except Exception:  # a bug in handling must not stop the listener
        log.exception("agenttrail: handling control %s failed", message.type)


class InMemoryControlBus:
    """A control topic in memory: every channel sees every message, in order."""

    def __init__(self) -> None:
        self.messages: list[ControlMessage] = []
        self._listeners: list[OnMessage] = []
        self._lock = threading.RLock()

    def channel(self) -> InMemoryControlChannel:
        """A channel of this bus for one recorder."""
        return InMemoryControlChannel(self)

    def send(self, message: ControlMessage) -> None:
        """Publish ``message`` (as ``agenttrail kill`` would) and deliver it to every channel."""
        with self._lock:
            self.messages.append(message)
            listeners = list(self._listeners)
        for listener in listeners:
            _deliver(message.encode(), listener)

    def subscribe(self, on_message: OnMessage) -> None:
        with self._lock:
            backlog = list(self.messages)
            self._listeners.append(on_message)
        for message in backlog:
            _deliver(message.encode(), on_message)

    def unsubscribe(self, on_message: OnMessage) -> None:
        with self._lock:
            if on_message in self._listeners:
                self._listeners.remove(on_message)

    def of_type(self, kind: str) -> list[ControlMessage]:
        with self._lock:
            return [m for m in self.messages if m.type == kind]


class InMemoryControlChannel:
    """One recorder's end of an :class:`InMemoryControlBus`."""

    def __init__(self, bus: InMemoryControlBus):
        self.bus = bus
        self._on_message: OnMessage | None = None

    def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self.bus.subscribe(on_message)

    def wait_caught_up(self, timeout: float) -> bool:
        return True

    def publish(self, message: ControlMessage) -> None:
        with self.bus._lock:
            self.bus.messages.append(message)

    def close(self) -> None:
        if self._on_message is not None:
            self.bus.unsubscribe(self._on_message)
            self._on_message = None
