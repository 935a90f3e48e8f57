"""SDK → Kafka → consumer with a Schema Registry of the test's own (holding other teams'
records under ids 1-5): the SDK frames with the registry's ids, the consumer resolves
them and stores every event once; a version registered later decodes; a message framed with
a packaged file id (another team's record in this registry) is a dead letter."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from agenttrail.consumers import ConsumerConfig, IngestStats, run_consumer
from agenttrail.embedded import EmbeddedBroker
from agenttrail.events import (
    EventCodec,
    SchemaRegistry,
    encode_body,
    frame,
    read_header,
    uuid7,
)
from agenttrail.events._registry_ids import RegistryIds, RegistryResolvedSchemas, register_schemas
from agenttrail.events._schema_registry import SchemaRegistryClient
from agenttrail.producer import Recorder
from agenttrail.producer._exporter import AckCallback, Exporter, KafkaExporter, OutRecord
from agenttrail.store import FAMILY_TABLES, Store
from tests.deadline import wait_until
from tests.integration.conftest import INGEST_KAFKA_OPTIONS
from tests.registry_double import RegistryState, schema_registry

ROOT = Path(__file__).resolve().parents[2]


class Copying:
    """Keeps a copy of every record the inner exporter acknowledged (ground truth)."""

    def __init__(self, inner: Exporter):
        self.inner = inner
        self.acked: list[bytes] = []
        self._lock = threading.Lock()
        self.destination = "copying"

    def export(self, records: list[OutRecord], on_done: AckCallback) -> None:
        def done(record: OutRecord, error: BaseException | None) -> None:
            if error is None:
                with self._lock:
                    self.acked.append(record.value)
            on_done(record, error)

        self.inner.export(records, done)

    def probe(self, timeout: float) -> bool:
        return self.inner.probe(timeout)

    def flush(self, timeout: float) -> bool:
        return self.inner.flush(timeout)

    def shutdown(self) -> None:
        self.inner.shutdown()


@pytest.fixture
def registry() -> Iterator[tuple[str, RegistryState]]:
    with schema_registry() as served:
        yield served


def _stored_ids(store: Store) -> Counter[str]:
    ids: Counter[str] = Counter()
    for table in FAMILY_TABLES.values():
        for (event_id,) in store.query(f"SELECT toString(event_id) FROM {table}"):
            ids[str(event_id)] += 1
    return ids


def _a_newer_tool_span(tmp_path: Path) -> SchemaRegistry:
    """The shipped schemas plus the next tool_span version (the newest one with an
    optional ``review_note``): what a newer producer would ship."""
    root = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", root)
    newest = SchemaRegistry.load(root).latest("tool_span").version
    schema = json.loads((root / f"tool_span/v{newest}.avsc").read_text())
    schema["fields"].insert(
        len(schema["fields"]) - 2,
        {"name": "review_note", "type": ["null", "string"], "default": None},
    )
    version = newest + 1
    (root / f"tool_span/v{version}.avsc").write_text(json.dumps(schema))
    doc = json.loads((root / "registry.json").read_text())
    next_id = max([s["id"] for s in doc["schemas"]] + doc["retired_ids"]) + 1
    doc["schemas"].append(
        {"id": next_id, "event_type": "tool_span", "version": version,
         "path": f"tool_span/v{version}.avsc"}
    )  # fmt: skip
    (root / "registry.json").write_text(json.dumps(doc))
    return SchemaRegistry.load(root)


def test_events_framed_with_registry_ids_are_stored_once_and_foreign_ids_dead_lettered(
    broker: EmbeddedBroker,
    topic: str,
    unique_group: str,
    store: Store,
    registry: tuple[str, RegistryState],
    tmp_path: Path,
) -> None:
    url, state = registry
    register_schemas(SchemaRegistryClient(url), topic=topic)
    copy = Copying(KafkaExporter(broker.bootstrap, topic))
    rec = Recorder(
        exporter=copy, schema_registry=url, tenant="acme", topic=topic, spool_dir=tmp_path / "sp"
    )
    for n in range(5):
        with rec.task("invoice_generation", task_id=f"inv-{n}", tools=["get_order"]) as task:
            with task.llm_call(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]) as c:
                c.respond("ok", input_tokens=10, output_tokens=2, cost_usd=0.001)
            with task.tool("get_order", args={"order_id": n}) as span:
                span.result({"n": n})
    report = rec.close()
    assert report.spooled == 0 and report.complete, report
    ours = {i for s, ids in state.subjects.items() if s.startswith(topic) for i in ids}
    assert copy.acked and {read_header(v) for v in copy.acked} <= ours
    assert not ours & {1, 2, 3, 4, 5}, "the registry gave our schemas ids of its own"

    # A newer producer registers the next tool_span version and writes one event with it.
    upgraded = _a_newer_tool_span(tmp_path)
    register_schemas(SchemaRegistryClient(url), upgraded, topic=topic)
    newer = upgraded.latest("tool_span")
    newer_id = RegistryIds(SchemaRegistryClient(url), upgraded, topic=topic).id_for(newer)
    decoder = EventCodec(RegistryResolvedSchemas(SchemaRegistryClient(url), topic=topic))
    span = next(r for r in map(decoder.decode, copy.acked) if r["event_type"] == "tool_span")
    newer_record = {**span, "event_id": uuid7(), "task_id": "inv-v2", "seq": 0}
    newer_record.update(schema_version=newer.version, review_note="checked")
    foreign = copy.acked[0][5:]  # a real body framed with file id 3: the registry's crm Lead
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        producer.send(topic, key=b"inv-v2", value=frame(newer_id, encode_body(newer, newer_record)))
        producer.send(topic, key=b"foreign", value=frame(3, foreign)).get(timeout=30)
    finally:
        producer.close()

    cfg = ConsumerConfig(
        bootstrap=broker.bootstrap,
        topic=topic,
        group=unique_group,
        schema_registry=url,
        batch_size=200,
        batch_ms=100,
        kafka_options=dict(INGEST_KAFKA_OPTIONS),
    )
    stop = threading.Event()
    stats = IngestStats()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_consumer(cfg, stop, store=store, stats=stats)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    expected = len(copy.acked) + 1
    try:
        wait_until(
            lambda: (
                errors
                or (
                    stats.snapshot().events_total >= expected and stats.snapshot().dead_letters >= 1
                )
            ),
            timeout=90,
            what=f"{expected} events and 1 dead letter stored",
        )
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    truth = Counter(str(decoder.decode(v)["event_id"]) for v in copy.acked)
    truth[str(newer_record["event_id"])] += 1
    assert _stored_ids(store) == truth, "every event stored exactly once"
    note: list[Any] = store.query("SELECT task_id FROM tool_spans WHERE task_id = 'inv-v2'")
    assert note == [("inv-v2",)]
    letters = store.query("SELECT reason, error FROM dead_letters")
    assert len(letters) == 1 and letters[0][0] == "unknown_schema_id"
    assert "com.acme.crm.Lead" in letters[0][1]
