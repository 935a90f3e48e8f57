"""Fetcher child processes (``fetchers``): every event stored exactly once when a child
is SIGKILLed or hangs mid-stream, when the consumer itself is SIGKILLed and restarted,
and across rebalances between two consumers of one group. Real broker, real engine;
counted from what the test produced (event ids, partition and offset)."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agenttrail.consumers import IngestPipeline, _fetchers
from agenttrail.consumers._fetchers import FetcherFailed, FetcherPool
from agenttrail.consumers._framing import Chunk, FramingSpec
from agenttrail.consumers._librdkafka import librdkafka_settings
from agenttrail.embedded import EmbeddedBroker
from agenttrail.store import Store, open_store
from tests.deadline import wait_until
from tests.integration.conftest import BROKER_PARTITIONS, INGEST_KAFKA_OPTIONS
from tests.integration.test_consumer_crash import ConsumerProcess
from tests.integration.test_consumer_fencing import pipeline
from tests.integration.test_pipeline import (
    Produced,
    config,
    make_events,
    produce,
    stored_ids,
    stored_positions,
)
from tests.ports import restartable_port


def pool_of(p: IngestPipeline) -> FetcherPool:
    wait_until(lambda: isinstance(p._consumer, FetcherPool) and p._consumer.pids, timeout=30,
               what="the fetcher processes")  # fmt: skip
    assert isinstance(p._consumer, FetcherPool)
    if p.config.fetcher_client != "auto":
        assert p._consumer.client == p.config.fetcher_client
    return p._consumer


def assert_exactly_once(store: Store, produced: Produced) -> None:
    ids = stored_ids(store)
    missing = set(produced.hashes) - set(ids)
    twice = {k: n for k, n in ids.items() if n > 1}
    assert not missing and not twice, f"lost {len(missing)}, duplicated {len(twice)}"
    assert set(ids) == set(produced.hashes)
    positions = stored_positions(store)
    assert len(positions) == produced.messages and set(positions.values()) == {1}


def everything_stored(store: Store, produced: Produced) -> bool:
    return set(stored_ids(store)) >= set(produced.hashes)


def producing(bootstrap: str, topic: str, produced: Produced, rounds: int, prefix: str) -> Any:
    """Send ``rounds`` groups of events on a thread (the faults land mid-stream)."""

    def send() -> None:
        for r in range(rounds):
            produce(bootstrap, topic, make_events(6, 20, prefix=f"{prefix}{r}"), produced)
            time.sleep(0.2)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_fetchers_store_every_event_once(
    broker: EmbeddedBroker, topic: str, unique_group: str, fetcher_client: str, store: Store
) -> None:
    produced = produce(broker.bootstrap, topic, make_events(12, 20, prefix="a"))
    cfg = config(broker.bootstrap, topic, unique_group, fetchers=3, fetcher_client=fetcher_client)
    with pipeline(cfg, store) as p:
        assert len(pool_of(p).pids) == 3
        wait_until(lambda: everything_stored(store, produced) and p.stats.snapshot().lag == 0,
                   timeout=90, what="everything stored")  # fmt: skip
        assert set(p.stats.snapshot().partitions) == set(range(BROKER_PARTITIONS))
    assert_exactly_once(store, produced)


def test_a_fetcher_sigkilled_mid_stream_is_restarted_and_nothing_is_lost_or_stored_twice(
    broker: EmbeddedBroker, topic: str, unique_group: str, fetcher_client: str, store: Store
) -> None:
    produced = Produced()
    cfg = config(broker.bootstrap, topic, unique_group, fetchers=2, fetcher_client=fetcher_client)
    with pipeline(cfg, store) as p:
        pool = pool_of(p)
        sender = producing(broker.bootstrap, topic, produced, rounds=8, prefix="k")
        for kill in range(4):
            wait_until(lambda k=kill: p.stats.snapshot().events_total > 40 * (k + 1),
                       timeout=60, what="events flowing before the next kill")  # fmt: skip
            victim = pool.pids[kill % 2]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda v=victim: v not in pool.pids, timeout=30,
                       what="the killed fetcher replaced")  # fmt: skip
        sender.join(60)
        # Events only the replacements can fetch (their every partition gets some).
        produce(broker.bootstrap, topic, make_events(12, 20, prefix="after"), produced)
        wait_until(lambda: everything_stored(store, produced) and p.stats.snapshot().lag == 0,
                   timeout=120, what="everything stored after the kills")  # fmt: skip
        assert pool.restarts >= 4
    assert_exactly_once(store, produced)


def test_a_hung_fetcher_is_killed_and_replaced_instead_of_stalling_its_partitions(
    broker: EmbeddedBroker,
    topic: str,
    unique_group: str,
    fetcher_client: str,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fetchers, "STALL_S", 3.0)
    produced = produce(broker.bootstrap, topic, make_events(4, 20, prefix="h"))
    cfg = config(broker.bootstrap, topic, unique_group, fetchers=2, fetcher_client=fetcher_client)
    with pipeline(cfg, store) as p:
        pool = pool_of(p)
        wait_until(lambda: everything_stored(store, produced), timeout=60,
                   what="the first events stored")  # fmt: skip
        hung = pool.pids[0]
        os.kill(hung, signal.SIGSTOP)  # alive, but answers nothing
        try:
            produce(broker.bootstrap, topic, make_events(8, 20, prefix="i"), produced)
            wait_until(lambda: everything_stored(store, produced), timeout=90,
                       what="the hung fetcher's partitions stored by its replacement")  # fmt: skip
        finally:
            if hung in pool.pids:
                os.kill(hung, signal.SIGCONT)
        assert hung not in pool.pids and pool.restarts >= 1
    assert_exactly_once(store, produced)


def test_a_fetcher_that_keeps_dying_stops_the_consumer_with_a_clear_error(
    broker: EmbeddedBroker,
    topic: str,
    unique_group: str,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fetchers, "MAX_RESTARTS", 2)
    produce(broker.bootstrap, topic, make_events(2, 10, prefix="d"))
    cfg = config(broker.bootstrap, topic, unique_group, fetchers=1)
    with pytest.raises(FetcherFailed, match="--fetchers 0"):
        with pipeline(cfg, store) as p:
            pool = pool_of(p)
            for _ in range(3):
                pid = pool.pids[0] if pool.pids else None
                if pid is None:
                    break
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda v=pid: v not in pool.pids, timeout=30,
                           what="the fetcher replaced or the consumer stopped")  # fmt: skip
            wait_until(lambda: p._consumer is None, timeout=30, what="the consumer stopping")


def test_two_consumers_with_fetchers_rebalancing_mid_stream_store_everything_once(
    broker: EmbeddedBroker,
    topic: str,
    unique_group: str,
    fetcher_client: str,
    store: Store,
    store_dir: Path,
) -> None:
    produced = Produced()
    # Long batch age: records sit in the buffers when each rebalance comes.
    cfg = config(broker.bootstrap, topic, unique_group, batch_size=500, batch_ms=1500,
                 fetchers=2, fetcher_client=fetcher_client)  # fmt: skip
    with open_store(data=store_dir) as store_b, pipeline(cfg, store) as one:
        for round_ in range(3):
            produce(broker.bootstrap, topic, make_events(4, 20, prefix=f"r{round_}"), produced)
            with pipeline(cfg, store_b) as two:  # a member joins: rebalance
                wait_until(lambda t=two: t.stats.snapshot().partitions, timeout=60,
                           what="the joining consumer getting partitions")  # fmt: skip
                produce(broker.bootstrap, topic, make_events(4, 20, prefix=f"s{round_}"),
                        produced)  # fmt: skip
            # ... and leaves again: another rebalance, with the first one's buffers full.
        wait_until(lambda: everything_stored(store, produced) and one.stats.snapshot().lag == 0,
                   timeout=120, what="everything stored after the rebalances")  # fmt: skip
    assert_exactly_once(store, produced)


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out |= {int(c) for c in text}
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_consumer_with_fetchers_sigkilled_and_restarted_loses_nothing_and_leaves_no_fetcher(
    broker: EmbeddedBroker, topic: str, unique_group: str, store_dir: Path
) -> None:
    produced = produce(broker.bootstrap, topic, make_events(12, 25, prefix="a"))
    first = ConsumerProcess(broker.bootstrap, topic, unique_group, store_dir, "--fetchers", "2")
    try:
        wait_until(lambda: first.last().get("events_total", 0) >= 100, timeout=90,
                   what="the first consumer storing 100 events")  # fmt: skip
        fetchers = _children(first.proc.pid)
        assert len(fetchers) == 2, fetchers
        sender = threading.Thread(
            target=produce,
            args=(broker.bootstrap, topic, make_events(12, 25, prefix="b"), produced),
        )
        sender.start()  # the kill lands while events are still arriving
    finally:
        first.proc.kill()
    first.proc.wait(30)
    sender.join(60)
    wait_until(lambda: not any(_alive(c) for c in fetchers), timeout=30,
               what="the killed consumer's fetchers exiting")  # fmt: skip

    second = ConsumerProcess(broker.bootstrap, topic, unique_group, store_dir, "--fetchers", "2")
    try:
        caught_up_at: list[float] = []

        def settled() -> bool:
            # Lag 0 on every partition, and still 0 two seconds later (a partition's
            # lag counts only once its fetcher has reported the high-water mark).
            s = second.last()
            if s.get("lag") != 0 or len(s.get("partitions", [])) != BROKER_PARTITIONS:
                caught_up_at.clear()
                return False
            caught_up_at[:] = caught_up_at or [time.monotonic()]
            return time.monotonic() - caught_up_at[0] >= 2.0

        wait_until(settled, timeout=120, what="the restarted consumer catching up")
    finally:
        second.proc.send_signal(signal.SIGTERM)
        code = second.proc.wait(60)
    assert code == 0
    with open_store(data=store_dir) as store:
        assert_exactly_once(store, produced)


def _child_settings(bootstrap: str, client: str) -> dict[str, Any]:
    settings = {"bootstrap_servers": [bootstrap], "bootstrap_timeout_ms": 1000,
                "group_id": None, "enable_auto_commit": False}  # fmt: skip
    return librdkafka_settings(settings) if client == "confluent-kafka" else settings


def test_a_fetcher_started_while_the_broker_is_down_waits_for_it_instead_of_dying(
    fetcher_client: str,
) -> None:
    from agenttrail.consumers._fetchers import _Child

    settings = _child_settings(f"127.0.0.1:{restartable_port()}", fetcher_client)
    child = _Child(0, "events", settings, client=fetcher_client)
    try:
        heard = 0
        deadline = time.monotonic() + 60
        while heard < 3 and time.monotonic() < deadline:
            if child.data.poll(1.0):
                kind = pickle.loads(child.data.recv_bytes())[0]
                assert kind in ("alive", "log"), kind
                heard += kind == "alive"
            assert child.process.poll() is None, "the fetcher died while the broker was down"
        assert heard >= 3
    finally:
        child.stop()
    assert child.process.returncode is not None


def test_a_fetchers_log_lines_reach_the_consumers_logging_not_the_terminal(
    fetcher_client: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from agenttrail.consumers._fetchers import _Child, _relay

    settings = _child_settings(f"127.0.0.1:{restartable_port()}", fetcher_client)
    child = _Child(0, "events", settings, client=fetcher_client)
    logs: list[tuple[int, str, str]] = []
    try:
        child.send(("seek", 0, 0, 1))  # librdkafka connects once it has a partition
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if child.data.poll(0.5):
                message = pickle.loads(child.data.recv_bytes())
                if message[0] == "log":
                    logs.append(message[1:])
    finally:
        child.stop()
    # The client's complaint about the broker that is down, as a record of its level.
    refused = [m for m in logs if m[0] >= logging.WARNING and "refused" in m[2].lower()]
    assert refused, f"no connection error among the child's log records: {logs!r:.500}"
    # A broker retried many times a second is not a line per retry.
    assert max(Counter(logs).values()) == 1
    assert len(logs) < 60, f"{len(logs)} log records in 8 s"
    with caplog.at_level(logging.DEBUG, logger="agenttrail.consumers"):
        _relay(child, *refused[0])
    record = caplog.records[-1]
    assert record.name.startswith("agenttrail.consumers.fetcher.")
    assert record.levelno == refused[0][0]
    assert record.getMessage().startswith(f"fetcher 0 (pid {child.process.pid}): ")
    # Nothing the child or its client wrote went to the terminal directly.
    err = capfd.readouterr().err
    assert "refused" not in err.lower() and "ECONNREFUSED" not in err, err[:500]


def _chunks(child: Any, until: Callable[[list[tuple[int, list[int]]]], bool]) -> list[Any]:
    """(epoch, offsets) of the chunks a child ships, until ``until`` holds for them."""
    got: list[tuple[int, list[int]]] = []
    deadline = time.monotonic() + 60
    while not until(got):
        assert time.monotonic() < deadline, f"the fetcher shipped only {got!r:.300}"
        if child.data.poll(0.5):
            message = pickle.loads(child.data.recv_bytes())
            if message[0] == "chunk":
                _, partition, epoch, mark, wire = message
                assert partition == 0 and mark == 200
                chunk = Chunk(partition, wire, FramingSpec((), 0, 0))
                got.append((epoch, [int(o) for o in chunk.offsets]))
    return got


def test_a_seek_makes_the_fetcher_ship_from_that_offset_and_nothing_fetched_before_it(
    broker: EmbeddedBroker, topic: str, fetcher_client: str
) -> None:
    from kafka import KafkaProducer

    from agenttrail.consumers._fetchers import _Child

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for n in range(200):
        producer.send(topic, value=b"v%d" % n, partition=0)
    producer.flush()
    producer.close()
    settings = _child_settings(broker.bootstrap, fetcher_client)
    child = _Child(0, topic, settings, client=fetcher_client)
    try:
        child.send(("seek", 0, 0, 1))
        first = _chunks(child, lambda got: sum(len(o) for _, o in got) >= 200)
        assert [o for _, offsets in first for o in offsets] == list(range(200))
        assert {epoch for epoch, _ in first} == {1}
        # Back to 120: what follows under epoch 2 starts there and skips nothing.
        child.send(("seek", 0, 120, 2))
        again = _chunks(child, lambda got: any(e == 2 and o[-1] == 199 for e, o in got))
        after = [o for epoch, offsets in again if epoch == 2 for o in offsets]
        assert after == list(range(120, 200))
        # Dropped: what arrives after is not fetched, and no highwater mark is reported.
        child.send(("drop", 0))
        quiet_until = time.monotonic() + 1
        while time.monotonic() < quiet_until:  # what was in flight before the drop
            if child.data.poll(0.2):
                child.data.recv_bytes()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        producer.send(topic, value=b"late", partition=0)
        producer.flush()
        producer.close()
        quiet_until = time.monotonic() + 3
        while time.monotonic() < quiet_until:
            if child.data.poll(0.5):
                message = pickle.loads(child.data.recv_bytes())
                assert message[0] == "alive" and 0 not in message[1], message[:3]
    finally:
        child.stop()


def test_a_partition_held_by_backpressure_is_not_fetched_ahead_again_and_again(
    broker: EmbeddedBroker,
    topic: str,
    unique_group: str,
    fetcher_client: str,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agenttrail.consumers import BatchWriter

    produced = produce(broker.bootstrap, topic, make_events(30, 100, prefix="b"))
    # A slow store, small buffers and small fetches: every partition is held most of the
    # time, with more left to fetch than one fetch returns.
    options = {**INGEST_KAFKA_OPTIONS, "max_partition_fetch_bytes": 16 * 1024}
    cfg = config(broker.bootstrap, topic, unique_group, fetchers=1, batch_size=50,
                 max_buffered_batches=1, fetcher_client=fetcher_client,
                 kafka_options=options)  # fmt: skip
    delivered = [0]
    take, write_many = FetcherPool._take, BatchWriter.write_many

    def counted(self: FetcherPool, message: Any, out: Any) -> int:
        n = take(self, message, out)
        delivered[0] += n
        return n

    def slow(self: BatchWriter, batches: Any) -> Any:
        time.sleep(0.05)
        return write_many(self, batches)

    monkeypatch.setattr(FetcherPool, "_take", counted)
    monkeypatch.setattr(BatchWriter, "write_many", slow)
    with pipeline(cfg, store) as p:
        pool_of(p)
        wait_until(lambda: everything_stored(store, produced) and p.stats.snapshot().lag == 0,
                   timeout=120, what="everything stored through the slow store")  # fmt: skip
    assert_exactly_once(store, produced)
    # What a child ships between a release and the next hold is dropped and fetched
    # again, but a held partition is not streamed past the consumer over and over
    # (kafka-python children shipped about 5 times the topic before holds stopped them).
    assert delivered[0] <= 3 * produced.messages, (delivered[0], produced.messages)


def test_the_lag_of_a_held_partition_counts_what_was_produced_while_it_was_held(
    broker: EmbeddedBroker,
    topic: str,
    unique_group: str,
    fetcher_client: str,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agenttrail.consumers import BatchWriter

    # The store takes nothing until released: every partition fills its buffer and is
    # held, and no child fetches it any more.
    release = threading.Event()
    write_many = BatchWriter.write_many

    def blocked(self: BatchWriter, batches: Any) -> Any:
        release.wait(120)
        return write_many(self, batches)

    monkeypatch.setattr(BatchWriter, "write_many", blocked)
    produced = produce(broker.bootstrap, topic, make_events(12, 20, prefix="h"))
    cfg = config(broker.bootstrap, topic, unique_group, fetchers=1, batch_size=20,
                 max_buffered_batches=1, fetcher_client=fetcher_client)  # fmt: skip
    with pipeline(cfg, store) as p:
        try:
            pool = pool_of(p)
            wait_until(lambda: p.stats.snapshot().lag == produced.messages, timeout=60,
                       what="the first events fetched and buffered")  # fmt: skip
            # More than the buffers take: every partition is refused and held. One record
            # per produce request here too (see below): a partition held before its child
            # fetched these has its high watermark from ListOffsets alone.
            produce(broker.bootstrap, topic, make_events(12, 20, prefix="i"), produced,
                    one_by_one=True)  # fmt: skip
            wait_until(lambda: len(pool._held) == BROKER_PARTITIONS, timeout=60,
                       what="every partition held")  # fmt: skip
            wait_until(lambda: p.stats.snapshot().lag == produced.messages, timeout=30,
                       what="a lag of everything produced")  # fmt: skip
            # Produced while held: no child fetches these partitions now, yet nothing is
            # stored, so the lag must come to everything produced.
            # One record per produce request: the embedded broker answers ListOffsets
            # with the last batch's first offset + 1, so only single-record batches
            # give the end offset a Kafka broker gives for any batching.
            produce(broker.bootstrap, topic, make_events(12, 20, prefix="j"), produced,
                    one_by_one=True)  # fmt: skip
            wait_until(lambda: p.stats.snapshot().lag == produced.messages, timeout=30,
                       what="a lag counting what was produced while held")  # fmt: skip
            assert len(pool._held) == BROKER_PARTITIONS
        finally:
            release.set()
        wait_until(lambda: everything_stored(store, produced) and p.stats.snapshot().lag == 0,
                   timeout=120, what="everything stored once released")  # fmt: skip
    assert_exactly_once(store, produced)


def test_consume_asked_for_librdkafka_with_a_setting_it_cannot_carry_exits_2_naming_it(
    broker: EmbeddedBroker, topic: str, unique_group: str, store_dir: Path
) -> None:
    import json
    import subprocess

    options = {**INGEST_KAFKA_OPTIONS, "sasl_kerberos_service_name": "kafka"}
    env = dict(os.environ, AGENTTRAIL_KAFKA_OPTIONS=json.dumps(options))
    done = subprocess.run(
        [sys.executable, "-c", "from agenttrail.cli import main; main()", "consume",
         "--bootstrap", broker.bootstrap, "--topic", topic, "--group", unique_group,
         "--data", str(store_dir), "--fetchers", "1", "--fetcher-client", "confluent-kafka"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "sasl_kerberos_service_name" in done.stderr and "kafka-python" in done.stderr
