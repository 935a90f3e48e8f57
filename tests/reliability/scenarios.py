"""The faults of the reliability suite, each a function that runs it and returns its row.

Every scenario starts its own broker, consumer(s) and emitters as processes in a work
directory of its own, injects its fault, lets everything drain, stops the consumer and
counts (:func:`tests.reliability.harness.tally`). Sizes are arguments: the pytest run
uses small ones, ``python -m tests.reliability --full`` the issue's.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from kafka import KafkaProducer

from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.events import EVENTS_TOPIC, EventType, default_registry, frame
from tests.deadline import wait_until
from tests.reliability.harness import (
    CLI,
    Broker,
    Consumer,
    Emitter,
    JsonLinesProcess,
    Tally,
    kill_all,
    read_truth_lines,
    tally,
    truth_keys,
)


@dataclass
class Row:
    """One line of RELIABILITY.md's table."""

    fault: str
    injected: int
    tally: Tally
    command: str
    notes: list[str] = field(default_factory=list)
    lost_after_restart: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.fault, "injected": self.injected, "command": self.command,
                "notes": self.notes, **self.tally.to_dict()}  # fmt: skip


def _pause(seconds: float) -> None:
    # Injection timing (when to strike), not a wait for a condition.
    threading.Event().wait(seconds)


def _group() -> str:
    return f"reliability-{uuid.uuid4().hex[:10]}"


def _drain_and_stop(
    consumer: Consumer, emitters: list[Emitter], partitions: int, timeout: float = 240
) -> None:
    for e in emitters:
        code = e.stop(signal.SIGCONT, timeout=600)  # wait for it to finish on its own
        assert code == 0, f"emitter exited {code}: {e.log_tail()}"
    expected = len(truth_keys([e.truth_path for e in emitters]))

    def caught_up() -> bool:
        s = consumer.last()
        return s.get("lag") == 0 and len(s.get("partitions", [])) == partitions

    try:
        wait_until(caught_up, timeout=timeout, interval=0.2, what=f"lag 0, {expected} produced")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; consumer status {consumer.last()}") from None
    assert consumer.stop(signal.SIGTERM) == 0, consumer.log_tail()


def consumer_sigkills(workdir: Path, *, tasks: int, spans: int, kills: int, emitters: int = 2,
                      seed: int = 1, partitions: int = 4, pace_ms: float = 50) -> Row:  # fmt: skip
    """The consumer SIGKILLed at random moments while emitters stream, then restarted."""
    rnd = random.Random(seed)
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    group = _group()
    try:
        consumer = Consumer(broker.bootstrap, store, group, workdir / "consumer.log", batch=40)
        consumer.wait_assigned(partitions)
        agents = [
            Emitter(broker.bootstrap, workdir / "agents", f"k{i}", tasks, spans, pace_ms=pace_ms)
            for i in range(emitters)
        ]
        done = 0
        while done < kills:
            wait_until(lambda c=consumer: c.stored() > 0, timeout=120, what="consumer storing")
            _pause(rnd.uniform(0.05, 1.5))
            consumer.stop(signal.SIGKILL)
            done += 1
            consumer = Consumer(broker.bootstrap, store, group, workdir / "consumer.log", batch=40)
        _drain_and_stop(consumer, agents, partitions)
        produced = truth_keys([a.truth_path for a in agents])
    finally:
        broker.close()
        kill_all()
    return Row("consumer SIGKILLed at random moments, restarted", kills, tally(store, produced),
               "")  # fmt: skip


def broker_crash(workdir: Path, *, tasks: int, spans: int, crashes: int = 1, partitions: int = 4,
                 pace_ms: float = 250, drain_timeout: float = 240) -> Row:  # fmt: skip
    """The embedded broker SIGKILLed and restarted (same port) while emitters keep going.

    The in-memory broker loses what it held: events it acknowledged that the consumer had
    not stored yet. The row reports that loss; :attr:`Row.notes` says how many of the lost
    events were acknowledged before the crash and how many tasks were entirely emitted
    after the restart (those must all be stored).
    """
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    group = _group()
    notes: list[str] = []
    try:
        consumer = Consumer(broker.bootstrap, store, group, workdir / "consumer.log")
        consumer.wait_assigned(partitions)
        agents = [
            Emitter(broker.bootstrap, workdir / "agents", f"b{i}", tasks, spans, pace_ms=pace_ms)
            for i in range(2)
        ]
        after_restart: set[str] = set()
        for _ in range(crashes):
            wait_until(lambda: consumer.stored() > 0, timeout=120, what="consumer storing")
            lag = consumer.last().get("lag")
            broker.crash()
            notes.append(f"lag reported just before the crash: {lag}")
            _pause(1.0)  # an outage: emitters keep going and must spool
            broker.restart()
            seen = {line["task_id"] for a in agents for line in read_truth_lines(a.truth_path)
                    if "task_id" in line}  # fmt: skip
            after_restart = {f"b{i}-{t}" for i in range(2) for t in range(tasks)} - seen
        _drain_and_stop(consumer, agents, partitions, drain_timeout)
        produced = truth_keys([a.truth_path for a in agents])
        reports = [a.close_report() for a in agents]
        notes.append(f"emitter close reports: {reports}")
    finally:
        broker.close()
        kill_all()
    t = tally(store, produced)
    later = {k for k in produced if k[0] in after_restart}
    row = Row("embedded broker SIGKILLed and restarted while emitters run", crashes, t, "", notes)
    row.lost_after_restart = len(later - t.stored_keys)
    notes.append(
        f"{len(later)} events of tasks begun after the last restart, "
        f"{row.lost_after_restart} of them lost"
    )
    return row


# -- bad input ---------------------------------------------------------------------------------

_INT_FIELDS = {
    EventType.LLM_CALL: ["step", "message_count", "schema_version"],
    EventType.TOOL_SPAN: ["step", "attempt", "schema_version"],
    EventType.STATE_TRANSITION: ["step", "schema_version"],
    EventType.AGENT_MESSAGE: ["step", "schema_version"],
    EventType.GUARD_EVENT: ["step", "schema_version"],
}
_OUT_OF_RANGE = {
    "step": 2**40,
    "message_count": 2**40,
    "attempt": -(2**40),
    "schema_version": 70000,
}


def _widened(event_type: str, name: str) -> Any:
    schema = copy.deepcopy(default_registry().latest(event_type).schema)
    for f in schema["fields"]:
        if f["name"] == name and f["type"] == "int":
            f["type"] = "long"
    return fastavro.parse_schema(schema)


def bad_messages(count: int, seed: int = 7) -> list[tuple[bytes, bytes, str]]:
    """(key, value, kind) of ``count`` messages that must each end in dead_letters.

    Kinds: random bytes, bad magic byte, unknown schema id, truncated body, trailing
    bytes, empty value, and out-of-range values of every integer field (an Avro int
    written as a long, as fastavro accepts on read) and of ``ts`` (before 1900, after
    2299: outside DateTime64(6)).
    """
    rnd = random.Random(seed)
    registry = default_registry()
    out: list[tuple[bytes, bytes, str]] = []
    families = [str(e) for e in EventType]
    for i in range(count):
        family = families[i % len(families)]
        key = f"bad-{i}".encode()
        record = sample_record(family, task_id=f"bad-{i}", seq=0)
        good = sealed(record)
        entry = registry.latest(family)
        kind = ["random", "magic", "schema_id", "truncated", "trailing", "empty",
                "int_range", "ts_range"][i % 8]  # fmt: skip
        if kind == "random":
            value = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
            if value[:1] == b"\x00":
                value = b"\x01" + value[1:]
        elif kind == "magic":
            value = b"\x07" + good[1:]
        elif kind == "schema_id":
            value = frame(9000 + i, good[5:])
        elif kind == "truncated":
            value = good[: rnd.randint(6, len(good) - 2)]
        elif kind == "trailing":
            value = good + b"\x02\x04"
        elif kind == "empty":
            value = b""
        elif kind == "int_range":
            fields = _INT_FIELDS[EventType(family)]
            name = fields[(i // 8) % len(fields)]
            record = sample_record(family, task_id=f"bad-{i}", seq=0)
            record[name] = _OUT_OF_RANGE[name]
            record["prev_hash"], record["hash"] = "", "0" * 64
            body = _encode(_widened(family, name), record)
            value = frame(entry.schema_id, body)
        else:
            record = sample_record(family, task_id=f"bad-{i}", seq=0)
            micros = rnd.choice([-(2**62), 2**62, 10**17])  # ~1900- / far future / year 5138
            record["ts"] = micros
            record["prev_hash"], record["hash"] = "", "0" * 64
            value = frame(entry.schema_id, _encode(entry.parsed, record))
        out.append((key, value, kind))
    return out


def _encode(parsed: Any, record: dict[str, Any]) -> bytes:
    import io

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    return buf.getvalue()


def poison_mix(workdir: Path, *, tasks: int, spans: int, bad: int, kinds: tuple[str, ...] = (),
               partitions: int = 4, drain_timeout: float = 240) -> Row:  # fmt: skip
    """Random and mutated messages, and out-of-range values, mixed into valid SDK traffic.

    ``kinds`` keeps only those kinds of :func:`bad_messages` (all when empty).
    """
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    try:
        agents = [Emitter(broker.bootstrap, workdir / "agents", "p0", tasks, spans, pace_ms=1)]
        consumer = Consumer(broker.bootstrap, store, _group(), workdir / "consumer.log")
        messages = [m for m in bad_messages(bad) if not kinds or m[2] in kinds]
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
        try:
            futures = [producer.send(EVENTS_TOPIC, key=k, value=v) for k, v, _ in messages]
            producer.flush(timeout=120)
            for f in futures:
                f.get(timeout=60)
        finally:
            producer.close(timeout=30)
        _drain_and_stop(consumer, agents, partitions, drain_timeout)
        produced = truth_keys([a.truth_path for a in agents])
    finally:
        broker.close()
        kill_all()
    sent: dict[str, int] = {}
    for _, _, k in messages:
        sent[k] = sent.get(k, 0) + 1
    return Row("bad messages mixed into valid traffic: " + ", ".join(sorted(sent)),
               len(messages), tally(store, produced, bad_sent=len(messages)), "",
               [f"bad kinds sent: {sent}"])  # fmt: skip


# -- agenttrail up --------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of nobody's is gone for our purpose; read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def up_sigkill(workdir: Path, *, tasks: int, spans: int, kills: int = 1,
               drain_timeout: float = 180) -> Row:  # fmt: skip
    """``agenttrail up`` SIGKILLed after its events were stored, then started again."""
    try:
        return _up_sigkill(workdir, tasks=tasks, spans=spans, kills=kills, timeout=drain_timeout)
    finally:
        kill_all()


def _up_sigkill(workdir: Path, *, tasks: int, spans: int, kills: int, timeout: float) -> Row:
    data = workdir / "data"
    agents: list[Emitter] = []
    notes: list[str] = []
    orphans = 0
    for k in range(kills + 1):
        up = JsonLinesProcess([*CLI, "up", "--data", str(data), "--port", "0", "--json"],
                              workdir / f"up-{k}.log")  # fmt: skip
        ready = wait_until(lambda u=up: next((x for x in u.lines if x.get("status") == "ready"),
                                             None), timeout=120, what="up ready")  # fmt: skip
        agent = Emitter(ready["bootstrap"], workdir / "agents", f"u{k}", tasks, spans)
        assert agent.stop(signal.SIGCONT, timeout=600) == 0, agent.log_tail()
        agents.append(agent)
        expected = len(truth_keys([agent.truth_path]))
        try:
            wait_until(lambda u=up, n=expected: u.last().get("lag") == 0
                       and int(u.last().get("events_total", 0)) >= n, timeout=timeout,
                       what=f"up #{k} storing the emitter's {expected} events")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}; up status {up.last()}") from None
        if k < kills:
            pid_file = data / "broker.pid"
            broker_pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
            up.stop(signal.SIGKILL)
            if broker_pid is not None:
                try:
                    wait_until(lambda p=broker_pid: not _pid_alive(p), timeout=30,
                               what=f"broker {broker_pid} of the killed up exiting")  # fmt: skip
                except AssertionError:
                    orphans += 1
                    notes.append(f"orphan broker pid {broker_pid} after SIGKILL of up")
                    os.kill(broker_pid, signal.SIGKILL)
            else:
                notes.append("no broker.pid beside the store: orphan check not possible")
        else:
            assert up.stop(signal.SIGINT, timeout=120) == 0, up.log_tail()
    t = tally(data, truth_keys([a.truth_path for a in agents]))
    notes.append(f"orphan brokers: {orphans}")
    return Row("`agenttrail up` SIGKILLed, started again on the same store", kills, t, "", notes)


def to_json(rows: list[Row]) -> str:
    return json.dumps([r.to_dict() for r in rows], indent=2)
