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
import shutil
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from kafka import KafkaProducer

from agenttrail.consumers.testing import sample_record, sealed
from agenttrail.embedded._kafka_admin import topic_end_offsets
from agenttrail.events import EVENTS_TOPIC, EventType, default_registry, frame
from tests.deadline import wait_until
from tests.ports import restartable_port
from tests.reliability.harness import (
    CLI,
    KAFKA_OPTIONS,
    Broker,
    Consumer,
    Emitter,
    JsonLinesProcess,
    Tally,
    kill_all,
    tally,
    topic_keys,
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
    versions: dict[int, int] = field(default_factory=dict)
    store_failures: int = 0
    undrained: str | None = None
    must_arrive_ranges: dict[str, Any] = field(default_factory=dict)
    spool_error: str | None = None
    rss_kb: dict[str, int] = field(default_factory=dict)
    version_pair: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if _UNDRAINED:
            self.undrained = _UNDRAINED[-1]
            self.notes.append(f"never caught up: {self.undrained[:400]}")
            _UNDRAINED.clear()

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.fault, "injected": self.injected, "command": self.command,
                "notes": self.notes, **self.tally.to_dict()}  # fmt: skip


def _pause(seconds: float) -> None:
    # Injection timing (when to strike), not a wait for a condition.
    threading.Event().wait(seconds)


def _group() -> str:
    _UNDRAINED.clear()  # every consumer scenario starts here
    return f"reliability-{uuid.uuid4().hex[:10]}"


_UNDRAINED: list[str] = []
"""Why the last scenario's consumer never caught up (read and cleared by :func:`_row`)."""


def _drain_and_stop(
    consumer: Consumer, emitters: list[Emitter], partitions: int, timeout: float = 240
) -> None:
    for e in emitters:
        code = e.stop(signal.SIGCONT, timeout=600)  # wait for it to finish on its own
        assert code == 0, f"emitter exited {code}: {e.log_tail()}"
    expected = len(truth_keys([e.truth_path for e in emitters]))
    ends = topic_end_offsets(consumer.bootstrap, EVENTS_TOPIC)
    assert len(ends) == partitions, f"the broker named end offsets {ends}, not {partitions}"

    def caught_up() -> bool:
        owned = len(consumer.last().get("partitions", [])) == partitions
        return owned and consumer.caught_up_with(ends)

    try:
        wait_until(caught_up, timeout=timeout, interval=0.2,
                   what=f"lag 0 up to end offsets {ends}, {expected} produced")  # fmt: skip
    except AssertionError as exc:
        # Count what got stored anyway: the row shows the loss instead of hiding it.
        _UNDRAINED.append(f"{exc}; consumer status {consumer.last()}")
        consumer.stop(signal.SIGTERM, timeout=30)
        return
    assert consumer.stop(signal.SIGTERM) == 0, consumer.log_tail()


def consumer_sigkills(workdir: Path, *, tasks: int, spans: int, kills: int, emitters: int = 2,
                      seed: int = 1, partitions: int = 4, pace_ms: float = 50,
                      freezes: int = 0, batch: int = 40,
                      drain_timeout: float = 240) -> Row:  # fmt: skip
    """The consumer SIGKILLed at random moments while emitters stream, then restarted;
    then (``freezes``) SIGSTOPped past its session timeout and resumed with SIGCONT.

    ``batch`` is the consumer's batch size: small ones put many batch boundaries (and so
    many dangerous moments) in a short stream; the full-size run uses realistic ones."""
    rnd = random.Random(seed)
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    group = _group()
    try:
        consumer = Consumer(broker.bootstrap, store, group, workdir / "consumer.log", batch=batch)
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
            consumer = Consumer(
                broker.bootstrap, store, group, workdir / "consumer.log", batch=batch
            )
        frozen_s = KAFKA_OPTIONS["session_timeout_ms"] / 1000 + 4
        for _ in range(freezes):
            wait_until(lambda c=consumer: c.stored() > 0, timeout=120, what="consumer storing")
            _pause(rnd.uniform(0.05, 0.5))
            consumer.send(signal.SIGSTOP)
            _pause(frozen_s)  # past the session timeout: the group drops the member
            consumer.send(signal.SIGCONT)
        _drain_and_stop(consumer, agents, partitions, drain_timeout)
        produced = truth_keys([a.truth_path for a in agents])
    finally:
        broker.close()
        kill_all()
    fault = "consumer SIGKILLed at random moments, restarted"
    if freezes:
        fault += f"; then SIGSTOPped {frozen_s:.0f} s (past its session timeout) and resumed"
    return Row(fault, kills + freezes, tally(store, produced), "")


def dangerous_points(workdir: Path, *, tasks: int, spans: int, rounds: int = 1,
                     points: tuple[str, ...] = ("after_range", "mid_insert", "before_commit"),
                     partitions: int = 4, pace_ms: float = 20, outage: bool = True,
                     batch: int = 20, drain_timeout: float = 240) -> Row:  # fmt: skip
    """The consumer killed on purpose at each dangerous point of a batch write, restarted;
    then (``outage``) the store refuses five inserts in a row (StoreUnavailable).

    Points (tests.reliability.faulty_consumer): right after the batch range is recorded,
    between the table inserts of one batch, after the insert and before the offset commit.
    """
    notes: list[str] = []
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    group = _group()
    log = workdir / "consumer.log"
    killed = 0
    try:
        consumer = Consumer(broker.bootstrap, store, group, log, batch=batch)
        consumer.wait_assigned(partitions)
        agents = [
            Emitter(broker.bootstrap, workdir / "agents", f"d{i}", tasks, spans, pace_ms=pace_ms)
            for i in range(2)
        ]
        wait_until(lambda: consumer.stored() > 0, timeout=120, what="consumer storing")
        assert consumer.stop(signal.SIGTERM) == 0, consumer.log_tail()
        for r in range(rounds):
            for point in points:
                faulty = Consumer(broker.bootstrap, store, group, log, batch=batch,
                                  fault=f"{point}:{2 + r}")  # fmt: skip
                code = faulty.stop(signal.SIGCONT, timeout=180)  # it kills itself
                assert code == -signal.SIGKILL, (
                    f"the consumer with fault {point} exited {code}, not by SIGKILL; "
                    f"{faulty.log_tail()}"
                )
                killed += 1
        consumer = Consumer(broker.bootstrap, store, group, log, batch=batch,
                            fault="unavailable:2" if outage else None)  # fmt: skip
        _drain_and_stop(consumer, agents, partitions, drain_timeout)
        if outage:
            failures = max(int(x.get("store_failures", 0) or 0) for x in consumer.lines)
            notes.append(f"store failures the last consumer reported: {failures}")
        produced = truth_keys([a.truth_path for a in agents])
    finally:
        broker.close()
        kill_all()
    fault = "consumer SIGKILLed at each dangerous point: " + ", ".join(points)
    if outage:
        fault += "; then the store refuses 5 inserts in a row"
    row = Row(fault, killed + (1 if outage else 0), tally(store, produced), "", notes)
    row.store_failures = failures if outage else 0
    return row


def store_outage(workdir: Path, *, tasks: int, spans: int, partitions: int = 4,
                 at: int = 3) -> Row:  # fmt: skip
    """Family-table inserts fail (StoreUnavailable) five times in a row mid-stream."""
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    notes: list[str] = []
    try:
        consumer = Consumer(broker.bootstrap, store, _group(), workdir / "consumer.log",
                            batch=20, fault=f"unavailable:{at}")  # fmt: skip
        consumer.wait_assigned(partitions)
        agents = [Emitter(broker.bootstrap, workdir / "agents", "s0", tasks, spans, pace_ms=10)]
        _drain_and_stop(consumer, agents, partitions)
        failures = max(int(x.get("store_failures", 0) or 0) for x in consumer.lines)
        notes.append(f"store failures the consumer reported: {failures}")
        produced = truth_keys([a.truth_path for a in agents])
    finally:
        broker.close()
        kill_all()
    from tests.reliability.faulty_consumer import OUTAGE_CALLS

    return Row(f"store unavailable for {OUTAGE_CALLS} insert attempts mid-stream", OUTAGE_CALLS,
               tally(store, produced), "", notes)  # fmt: skip


def broker_crash(workdir: Path, *, tasks: int, spans: int, crashes: int = 1, partitions: int = 4,
                 pace_ms: float = 50, outage_s: float = 2.0,
                 drain_timeout: float = 240) -> Row:  # fmt: skip
    """The embedded broker SIGKILLed and restarted (same port) while agents keep recording;
    one agent SIGKILLed during the (first) outage, its spool delivered by its next process.

    The in-memory broker loses what it held: events it acknowledged that the consumer had
    not stored yet; the row reports that loss. Every event of a task begun after a crash
    was never acknowledged by the crashed broker, so the SDK must have kept it (on disk,
    for the killed agent) and it must arrive: :attr:`Row.lost_after_restart` counts those
    that did not.
    """
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    group = _group()
    notes: list[str] = []
    must_arrive: set[str] = set()
    doomed_during = 0
    try:
        consumer = Consumer(broker.bootstrap, store, group, workdir / "consumer.log")
        consumer.wait_assigned(partitions)
        agents_dir = workdir / "agents"
        # Paced so that both are still recording when the broker dies.
        live = Emitter(broker.bootstrap, agents_dir, "b0", tasks, spans, pace_ms=pace_ms)
        # Its truth lines mean "acknowledged or spooled" (flush after each task): what a
        # SIGKILL must not take. Events still in the SDK's batch at the kill are not claimed.
        doomed = Emitter(broker.bootstrap, agents_dir, "o0", tasks * 10, spans, pace_ms=pace_ms,
                         extra=["--flush-each"])  # fmt: skip
        successor: Emitter | None = None
        for n in range(crashes):
            wait_until(lambda n=n: consumer.stored() > 0 and live.tasks_done() >= 3 * (n + 1),
                       timeout=120, what="the consumer storing the agents' events")  # fmt: skip
            assert live.alive(), "the agent finished before the fault; give it more tasks"
            lag = consumer.last().get("lag")
            broker.crash()
            live_before, doomed_before = live.tasks_done(), doomed.tasks_done()
            _pause(outage_s)  # an outage: the agents record on, the SDK must keep everything
            must_arrive |= {f"b0-{t}" for t in range(live_before + 1, tasks)}
            if n == 0:
                doomed_during = doomed.tasks_done()
                doomed.stop(signal.SIGKILL)
                must_arrive |= {f"o0-{t}" for t in range(doomed_before + 1, doomed_during)}
                notes.append(f"agent o0 SIGKILLed during the outage after recording "
                             f"{doomed_during - doomed_before} tasks in it")  # fmt: skip
            notes.append(f"crash {n + 1}: consumer lag just before it {lag}")
            broker.restart()
            if n == 0:
                successor = Emitter(broker.bootstrap, agents_dir, "o1", 0, spans,
                                    spool=doomed.spool)  # fmt: skip
        assert successor is not None
        _drain_and_stop(consumer, [live, successor], partitions, drain_timeout)
        produced = truth_keys([live.truth_path, doomed.truth_path, successor.truth_path])
        on_topic = topic_keys(broker.bootstrap)  # the last incarnation's log
        notes.append(f"close reports: b0 {live.close_report()}, "
                     f"o0's successor {successor.close_report()}")  # fmt: skip
    finally:
        broker.close()
        kill_all()
    t = tally(store, produced, incarnations=crashes + 1)
    # The agent SIGKILLed in the outage may have had its task in flight delivered (from
    # its spool, by its successor) without living to write that task's truth line: such
    # events are not "unexpected". Any other stored event nobody produced still is.
    in_flight = {
        k
        for k in t.stored_keys - produced
        if k[0].startswith("o0-") and int(k[0].split("-")[1]) >= doomed_during
    }
    if in_flight:
        t.unexpected -= len(in_flight)
        notes.append(f"{len(in_flight)} events of the killed agent's task in flight stored "
                     "(sent before the kill, its truth line never written)")  # fmt: skip
    later = {k for k in produced if k[0] in must_arrive}
    row = Row("embedded broker SIGKILLed and restarted while agents record; one agent "
              "SIGKILLed during the outage", crashes + 1, t, "", notes)  # fmt: skip
    missing = later - t.stored_keys
    row.lost_after_restart = len(missing)
    notes.append(f"{len(later)} events of tasks begun after a crash (never acknowledged by a "
                 f"crashed broker), {row.lost_after_restart} of them lost")  # fmt: skip
    if missing:
        topic_held = sorted(k for k in missing if k in on_topic)
        notes.append(
            f"of those lost, {len(topic_held)} are on the last broker's topic (the consumer "
            f"skipped them: {[(k, on_topic[k]) for k in topic_held[:4]]}), "
            f"{len(missing) - len(topic_held)} never reached it (the SDK lost them: "
            f"{sorted(missing - set(topic_held))[:4]})"
        )
    row.must_arrive_ranges = {
        "b0_first": min((int(x.split("-")[1]) for x in must_arrive if x.startswith("b0")),
                        default=-1),
        "o0": sorted(int(x.split("-")[1]) for x in must_arrive if x.startswith("o0"))[:1]
        + sorted(int(x.split("-")[1]) for x in must_arrive if x.startswith("o0"))[-1:],
    }  # fmt: skip
    notes.append(f"must-arrive task ranges: {row.must_arrive_ranges}")
    return row


# -- bad input ---------------------------------------------------------------------------------

_INT_FIELDS = {
    EventType.LLM_CALL: ["step", "message_count", "schema_version"],
    EventType.TOOL_SPAN: ["step", "attempt", "schema_version"],
    EventType.STATE_TRANSITION: ["step", "schema_version", "boundary.max_steps"],
    EventType.AGENT_MESSAGE: ["step", "schema_version"],
    EventType.GUARD_EVENT: ["step", "schema_version"],
}
_OUT_OF_RANGE = {
    "step": 2**40,
    "message_count": 2**40,
    "attempt": -(2**40),
    "schema_version": 70000,
    "boundary.max_steps": 2**40,
}


def _widened(event_type: str, name: str) -> Any:
    """The family's schema with field ``name`` (``outer.inner`` for a nested one) an Avro
    long instead of an int, so that a value past 32 bits can be written."""
    schema = copy.deepcopy(default_registry().latest(event_type).schema)
    outer, _, inner = name.partition(".")
    for f in schema["fields"]:
        if f["name"] != outer:
            continue
        if not inner:
            f["type"] = "long"
            continue
        nested = next(b for b in f["type"] if isinstance(b, dict))
        for sub in nested["fields"]:
            if sub["name"] == inner:
                sub["type"] = ["null", "long"]
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
            noise = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
            # Half behind a valid header: the Avro decoder itself must refuse the noise.
            value = frame(entry.schema_id, noise) if (i // 8) % 2 else noise
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
            outer, _, inner = name.partition(".")
            if inner:
                record[outer][inner] = _OUT_OF_RANGE[name]
            else:
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
    t = tally(data, truth_keys([a.truth_path for a in agents]), incarnations=kills + 1)
    notes.append(f"orphan brokers: {orphans}")
    return Row("`agenttrail up` SIGKILLed, started again on the same store", kills, t, "", notes)


def to_json(rows: list[Row]) -> str:
    return json.dumps([r.to_dict() for r in rows], indent=2)


# -- schema evolution ------------------------------------------------------------------------------

NEXT_FIELD = "carbon_grams"


@dataclass
class NextToolSpan:
    """Contracts with one tool_span version past the shipped newest (see below)."""

    root: Path
    shipped: int
    next: int


def contracts_with_next_tool_span(root: Path) -> NextToolSpan:
    """A copy of the contracts with a tool_span version one past the shipped newest (one
    new optional field) and the migration adding its column; point
    AGENTTRAIL_CONTRACTS_DIR at ``root`` to emit or read it."""
    from agenttrail._contracts import contracts_root

    src = contracts_root()
    shutil.copytree(src / "schemas", root / "schemas")
    shutil.copytree(src / "queries", root / "queries")
    registry = json.loads((root / "schemas" / "registry.json").read_text())
    shipped = max(e["version"] for e in registry["schemas"] if e["event_type"] == "tool_span")
    folder = root / "schemas" / "tool_span"
    newer = copy.deepcopy(json.loads((folder / f"v{shipped}.avsc").read_text()))
    at = [f["name"] for f in newer["fields"]].index("prev_hash")
    doc = "Estimated emissions of the call (reliability fixture)."
    newer["fields"].insert(at, {"name": NEXT_FIELD, "type": ["null", "double"],
                                "default": None, "doc": doc})  # fmt: skip
    (folder / f"v{shipped + 1}.avsc").write_text(json.dumps(newer, indent=2))
    new_id = max(e["id"] for e in registry["schemas"]) + 1
    entry = {"id": new_id, "event_type": "tool_span", "version": shipped + 1}
    registry["schemas"].append({**entry, "path": f"tool_span/v{shipped + 1}.avsc"})
    (root / "schemas" / "registry.json").write_text(json.dumps(registry, indent=2))
    (root / "queries" / "migrations" / "9999_reliability_tool_span_next.sql").write_text(
        f"ALTER TABLE tool_spans ADD COLUMN IF NOT EXISTS {NEXT_FIELD} Nullable(Float64);\n"
    )
    return NextToolSpan(root, shipped, shipped + 1)


def mixed_traffic(workdir: Path, *, tasks: int, spans: int, bad: int,
                  kinds: tuple[str, ...] = (), partitions: int = 4,
                  drain_timeout: float = 240) -> Row:  # fmt: skip
    """Emitters on the shipped newest tool_span version and on the next one (a new
    optional field) side by side, plus malformed messages, one consumer reading with the
    newer schema."""
    contracts = contracts_with_next_tool_span(workdir / "contracts")
    v2_env = {"AGENTTRAIL_CONTRACTS_DIR": str(contracts.root)}
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    try:
        consumer = Consumer(broker.bootstrap, store, _group(), workdir / "consumer.log",
                            env=v2_env)  # fmt: skip
        consumer.wait_assigned(partitions)
        agents = [
            Emitter(broker.bootstrap, workdir / "agents", "v1", tasks, spans, pace_ms=1),
            Emitter(broker.bootstrap, workdir / "agents", "v2", tasks, spans, 1, env=v2_env),
        ]
        messages = [m for m in bad_messages(bad) if not kinds or m[2] in kinds]
        _send_raw(broker.bootstrap, messages)
        _drain_and_stop(consumer, agents, partitions, drain_timeout)
        produced = truth_keys([a.truth_path for a in agents])
    finally:
        broker.close()
        kill_all()
    from agenttrail.store import open_store

    with open_store(data=store) as s:
        versions = dict(
            s.query(f"SELECT schema_version, count() FROM {s.database}.tool_spans GROUP BY 1")
        )
    sent: dict[str, int] = {}
    for _, _, k in messages:
        sent[k] = sent.get(k, 0) + 1
    row = Row(f"tool_span v{contracts.shipped} and v{contracts.next} emitters side by side, "
              "plus bad messages: "
              + ", ".join(sorted(sent)), len(messages),
              tally(store, produced, bad_sent=len(messages)), "",
              [f"tool_span rows by schema_version: {versions}",
               f"bad kinds sent: {sent}"])  # fmt: skip
    row.versions = {int(k): int(v) for k, v in versions.items()}
    row.version_pair = (contracts.shipped, contracts.next)
    return row


def _send_raw(bootstrap: str, messages: list[tuple[bytes, bytes, str]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(EVENTS_TOPIC, key=k, value=v) for k, v, _ in messages]
        producer.flush(timeout=120)
        for f in futures:
            f.get(timeout=60)
    finally:
        producer.close(timeout=30)


# -- SDK pressure ---------------------------------------------------------------------------------


class MountRefused(RuntimeError):
    """This machine does not let the harness mount a small tmpfs (needs CAP_SYS_ADMIN)."""


def _mount_tmpfs(path: Path, size: str, remount: bool = False) -> None:
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    opts = f"remount,size={size}" if remount else f"size={size}"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise MountRefused(f"mount tmpfs on {path}: {done.stderr.strip()}")


def _umount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def sdk_pressure(workdir: Path, *, tasks: int, spans: int, queue_size: int = 100,
                 disk: str = "1m", partitions: int = 4,
                 drain_timeout: float = 240) -> Row:  # fmt: skip
    """No broker yet: agents with a 100-event queue must spool everything (memory stays
    bounded: a small and a ten times larger run, peak RSS of each); one agent's spool is a
    1 MiB tmpfs that fills up (the SDK must say so: ``spool_error``) and is then grown.
    Then the broker and the consumer start, the agents close, and everything is counted.

    Raises:
        MountRefused: the machine does not allow the tmpfs (the caller may skip).
    """
    port = restartable_port()
    bootstrap = f"127.0.0.1:{port}"
    agents_dir = workdir / "agents"
    small_disk = workdir / "small-disk"
    hold = workdir / "go"
    notes: list[str] = []
    _mount_tmpfs(small_disk, disk)
    broker: Broker | None = None
    try:
        q = ["--queue-size", str(queue_size), "--hold-file", str(hold)]
        agents = [
            Emitter(bootstrap, agents_dir, "q-small", max(tasks // 10, 1), spans, extra=q),
            Emitter(bootstrap, agents_dir, "q-large", tasks, spans, extra=q),
            Emitter(bootstrap, agents_dir, "full", tasks, spans, extra=q, spool=small_disk / "s"),
        ]
        for a in agents:
            wait_until(lambda a=a: next((x for x in a.lines if "recorded" in x), None),
                       timeout=300, what=f"agent {a.truth_path.stem} recording")  # fmt: skip
        full = next(x for x in agents[2].lines if "recorded" in x)
        notes.append(f"agent on the full disk: spool_error={full['spool_error']!r}, "
                     f"stats={full['stats']}")  # fmt: skip
        row_error = full["spool_error"]
        _mount_tmpfs(small_disk, "256m", remount=True)  # space returns
        broker = Broker(workdir / "broker", port=port, partitions=partitions)
        store = workdir / "store"
        consumer = Consumer(broker.bootstrap, store, _group(), workdir / "consumer.log")
        consumer.wait_assigned(partitions)
        hold.write_text("go")
        _drain_and_stop(consumer, agents, partitions, drain_timeout)
        produced = truth_keys([a.truth_path for a in agents])
        reports = {a.truth_path.stem: a.close_report() for a in agents}
        notes.append(f"close reports: {reports}")
    finally:
        if broker is not None:
            broker.close()
        kill_all()
        _umount(small_disk)
    fault = (
        "SDK pressure: no broker, a 100-event queue, one spool on a small disk that "
        "fills up, then space and the broker return"
    )
    row = Row(fault, 2, tally(store, produced), "", notes)
    row.spool_error = row_error
    rss = {k: (v or {}).get("max_rss_kb", 0) for k, v in reports.items()}
    row.rss_kb = rss
    notes.append(f"peak RSS (kB): {rss}")
    return row


# -- several consumers in one group ---------------------------------------------------------------


def group_rebalances(workdir: Path, *, tasks: int, spans: int, members: int = 2, churn: int = 3,
                     churn_every: float = 2.5, partitions: int = 4,
                     drain_timeout: float = 240) -> Row:  # fmt: skip
    """``members`` consumers in one group (tests.reliability.group_host), the oldest
    replaced by a new one ``churn`` times while agents stream: every replacement is a
    rebalance while the others hold buffered records."""
    broker = Broker(workdir / "broker", partitions=partitions)
    store = workdir / "store"
    try:
        host = JsonLinesProcess(
            [sys.executable, "-m", "tests.reliability.group_host", "--bootstrap",
             broker.bootstrap, "--data", str(store), "--group", _group(), "--members",
             str(members), "--churn", str(churn), "--churn-every", str(churn_every)],
            workdir / "group.log",
        )  # fmt: skip

        def owned() -> set[int]:
            ms = host.last().get("members", {})
            return {p for m in ms.values() for p in m.get("partitions", [])}

        try:
            wait_until(lambda: len(owned()) == partitions, timeout=120, what="the group forming")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last line {host.last()}; {host.log_tail()}") from None
        pace = churn * churn_every * 1000 / tasks  # the stream lasts through every churn
        agents = [
            Emitter(broker.bootstrap, workdir / "agents", f"g{i}", tasks, spans, pace_ms=pace)
            for i in range(2)
        ]
        for a in agents:
            assert a.stop(signal.SIGCONT, timeout=600) == 0, a.log_tail()
        ends = topic_end_offsets(broker.bootstrap, EVENTS_TOPIC)

        def caught_up() -> bool:
            s = host.last()
            ms = s.get("members", {}).values()
            marks = {int(p): h for m in ms for p, h in (m.get("highwater") or {}).items()}
            return (s.get("churned") == churn and len(owned()) == partitions
                    and all(m.get("lag") == 0 for m in ms)
                    and all(marks.get(p, -1) >= e for p, e in ends.items()))  # fmt: skip

        try:
            wait_until(caught_up, timeout=drain_timeout, interval=0.3, what="the group lag 0")
        except AssertionError as exc:
            _UNDRAINED.append(f"{exc}; group status {host.last()}")
        host.stop(signal.SIGTERM, timeout=180)
        produced = truth_keys([a.truth_path for a in agents])
        stopped = next((x for x in host.lines if x.get("status") == "stopped"), {})
    finally:
        broker.close()
        kill_all()
    return Row(f"{members} consumers in one group, one replaced {churn} times mid-stream "
               "(a rebalance each time)", churn, tally(store, produced), "",
               [f"group host: {stopped}"])  # fmt: skip
