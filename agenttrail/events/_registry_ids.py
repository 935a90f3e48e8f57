"""Schema ids from a Schema Registry: registering the contracts, framing and resolving.

Three uses, one rule (a message's schema id is the registry's id of its writer schema):

- :func:`register_schemas` puts every version of every family under its
  TopicRecordNameStrategy subject with BACKWARD_TRANSITIVE compatibility
  (``agenttrail schemas register``);
- :class:`RegistryIds` gives the SDK the registry's id of each packaged schema, looked
  up once and cached, and re-frames an event sealed with the file id;
- :class:`RegistryResolvedSchemas` gives the consumer the writer schema of any id the
  registry holds for an agenttrail record, fetched once and cached, read with the
  newest packaged version of its family.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from agenttrail.events._codec import HEADER_SIZE, frame, read_header
from agenttrail.events._errors import UnknownSchemaId
from agenttrail.events._names import EVENTS_TOPIC
from agenttrail.events._registry import SchemaEntry, SchemaRegistry, default_registry
from agenttrail.events._schema_registry import (
    COMPATIBILITY,
    SchemaRegistryClient,
    SchemaRegistryError,
    SchemaRegistryUnavailable,
    record_full_name,
    schema_text,
    subject_for,
)

log = logging.getLogger("agenttrail.events.registry")


@dataclass(frozen=True)
class SubjectChange:
    """What :func:`register_schemas` found or did for one subject.

    Attributes:
        subject: the registry subject.
        action: ``compatibility`` (level set), ``registered`` (new version) or
            ``unchanged`` (already registered).
        version: the family version (``schemas/<family>/v<N>.avsc``), None for a level.
        schema_id: the registry's id of that version.
        detail: one human sentence.
    """

    subject: str
    action: str
    version: int | None
    schema_id: int | None
    detail: str

    @property
    def changed(self) -> bool:
        """Whether the registry was changed."""
        return self.action != "unchanged"


def register_schemas(
    client: SchemaRegistryClient,
    registry: SchemaRegistry | None = None,
    topic: str = EVENTS_TOPIC,
) -> list[SubjectChange]:
    """Register every version of every family, oldest first, and set the subjects' level.

    Idempotent: a second run changes nothing and reports every version ``unchanged``.
    The level is set before the first registration, so the registry itself checks
    each new version against all earlier ones.

    Raises:
        SchemaRegistryUnavailable: the registry does not answer (nothing after that point
            was changed; run again).
        SchemaRegistryError: the registry refused a version (e.g. 409 incompatible).
    """
    registry = registry or default_registry()
    changes: list[SubjectChange] = []
    leveled: set[str] = set()
    for entry in sorted(registry.entries, key=lambda e: (e.event_type, e.version)):
        subject = subject_for(topic, entry)
        if subject not in leveled:
            leveled.add(subject)
            level = client.compatibility(subject)
            if level != COMPATIBILITY:
                client.set_compatibility(subject, COMPATIBILITY)
                changes.append(
                    SubjectChange(
                        subject,
                        "compatibility",
                        None,
                        None,
                        f"compatibility {level or 'unset (registry default)'} → {COMPATIBILITY}",
                    )
                )
        text = schema_text(entry)
        found = client.lookup(subject, text)
        if found is not None:
            changes.append(
                SubjectChange(
                    subject,
                    "unchanged",
                    entry.version,
                    found,
                    f"{entry.event_type} v{entry.version} already registered as id {found}",
                )
            )
            continue
        new_id = client.register(subject, text)
        changes.append(
            SubjectChange(
                subject,
                "registered",
                entry.version,
                new_id,
                f"{entry.event_type} v{entry.version} registered as id {new_id}",
            )
        )
    return changes


class RegistryIds:
    """The registry's id of each packaged schema, for the SDK's framing.

    Each schema is looked up once (``POST /subjects/<subject>``) and cached; it is not
    registered (an agent needs no write access to the registry). Thread-safe.

    Args:
        client: the registry.
        registry: the packaged schemas events are sealed with.
        topic: the topic the subjects are named after.
    """

    def __init__(
        self,
        client: SchemaRegistryClient,
        registry: SchemaRegistry | None = None,
        topic: str = EVENTS_TOPIC,
    ):
        self.client = client
        self.registry = registry or default_registry()
        self.topic = topic
        self._ids: dict[int, int] = {}
        self._lock = threading.Lock()

    def id_for(self, entry: SchemaEntry) -> int:
        """The registry's id of ``entry``.

        Raises:
            SchemaRegistryUnavailable: the registry does not answer (the caller spools).
            SchemaRegistryError: the schema is not registered under its subject.
        """
        with self._lock:
            cached = self._ids.get(entry.schema_id)
        if cached is not None:
            return cached
        subject = subject_for(self.topic, entry)
        found = self.client.lookup(subject, schema_text(entry))
        if found is None:
            raise SchemaRegistryError(
                f"{entry.event_type} v{entry.version} is not registered under subject "
                f"{subject!r} at {self.client.url}; run `agenttrail schemas register "
                f"--registry {self.client.url}` once (events wait in the spool meanwhile)."
            )
        with self._lock:
            self._ids[entry.schema_id] = found
        return found

    def reframe(self, payload: bytes) -> bytes:
        """``payload`` (framed with a packaged file id) framed with the registry's id.

        The Avro body, and so the event's hash, is unchanged.

        Raises:
            SchemaRegistryUnavailable, SchemaRegistryError: as :meth:`id_for`.
            DecodeError: the payload is not framed with a packaged id.
        """
        entry = self.registry.by_id(read_header(payload))
        return frame(self.id_for(entry), payload[HEADER_SIZE:])


class RegistryResolvedSchemas(SchemaRegistry):
    """Schemas by registry id, for a consumer whose producers frame with registry ids.

    ``by_id`` asks the registry for an id it has not seen (``GET /schemas/ids/<id>``),
    accepts it when its record is an agenttrail family, and caches it; ``latest`` is the
    newest packaged version of the family, the reader schema. The packaged file ids
    mean nothing here: in a shared registry they belong to other records. Thread-safe.

    Args:
        client: the registry.
        local: the packaged schemas (reader schemas, and the record names we own).
        topic: the topic the subjects are named after.
        unavailable_wait_s: how long ``by_id`` keeps retrying (backing off from 0.5 s to
            5 s) while the registry does not answer, before it raises; 0 raises at once.
        stop: set to end such a wait early (a consumer shutting down).

    Raises (from ``by_id``):
        UnknownSchemaId: the registry has no such id, or it is not an agenttrail record
            (a dead letter: the bytes are not ours to decode).
        SchemaRegistryUnavailable: the registry did not answer within
            ``unavailable_wait_s``. Not bad input: the caller must not dead-letter the
            message (the consumer stops without committing it; a restart reads it again).
    """

    def __init__(
        self,
        client: SchemaRegistryClient,
        local: SchemaRegistry | None = None,
        *,
        topic: str = EVENTS_TOPIC,
        unavailable_wait_s: float = 0.0,
        stop: threading.Event | None = None,
    ):
        local = local or default_registry()
        self.topic = topic
        self.unavailable_wait_s = unavailable_wait_s
        self._stop = stop or threading.Event()
        super().__init__([], local.retired_ids)
        self._latest = {family: local.latest(family) for family in local.event_types}
        self.client = client
        self._local = local
        self._families = {record_full_name(e.schema): e.event_type for e in local.entries}
        self._canonical = {(e.event_type, _canonical(e.schema)): e.version for e in local.entries}
        self._lock = threading.Lock()

    NOT_REGISTERED = -1
    """Schema id of a newest packaged version the registry does not hold (never on the wire)."""

    def resolve_latest(self) -> dict[str, int]:
        """Give each family's newest packaged version its registry id; return them by family.

        Afterwards ``latest(family).schema_id`` is the registry's id (or
        :attr:`NOT_REGISTERED`), and ``by_id`` of that id returns the very same entry, so
        events written with the newest version take the codec's fast path and a store-side
        decoder keyed by ``latest().schema_id`` never mistakes a foreign id for ours.

        Raises:
            SchemaRegistryUnavailable: the registry does not answer.
        """
        resolved: dict[str, int] = {}
        for family in list(self._latest):
            local = self._local.latest(family)
            found = self.client.lookup(subject_for(self.topic, local), schema_text(local))
            schema_id = self.NOT_REGISTERED if found is None else found
            entry = dataclasses.replace(local, schema_id=schema_id)
            with self._lock:
                self._latest[family] = entry
                if found is not None:
                    self._by_id[found] = entry
            resolved[family] = schema_id
        return resolved

    def by_id(self, schema_id: int) -> SchemaEntry:
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        deadline = time.monotonic() + self.unavailable_wait_s
        delay = 0.5
        while True:
            try:
                return self._fetch(schema_id)
            except SchemaRegistryUnavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    raise
                if delay == 0.5:
                    log.warning("Schema id %d cannot be resolved yet, retrying: %s", schema_id, exc)
                if self._stop.wait(min(delay, left)):
                    raise
                delay = min(delay * 2, 5.0)

    def _fetch(self, schema_id: int) -> SchemaEntry:
        text = self.client.schema_by_id(schema_id)
        if text is None:
            raise UnknownSchemaId(
                f"Schema id {schema_id} is not in the Schema Registry at {self.client.url}; "
                "the message was not framed by a producer of this registry."
            )
        try:
            schema = json.loads(text)
            full_name = record_full_name(schema)
        except (ValueError, KeyError, TypeError) as exc:
            raise UnknownSchemaId(
                f"Schema id {schema_id} in the Schema Registry at {self.client.url} is not an "
                f"Avro record schema ({exc}); it is not an agenttrail event."
            ) from exc
        family = self._families.get(full_name)
        if family is None:
            raise UnknownSchemaId(
                f"Schema id {schema_id} in the Schema Registry at {self.client.url} is record "
                f"{full_name!r}, not an agenttrail event family; the message belongs to "
                "another producer."
            )
        try:
            parsed = fastavro.parse_schema(schema, named_schemas={})
        except Exception as exc:  # fastavro raises several types for invalid schemas
            raise UnknownSchemaId(
                f"Schema id {schema_id} ({full_name}) in the Schema Registry does not parse: {exc}"
            ) from exc
        names = [f["name"] for f in schema.get("fields", [])]
        entry = SchemaEntry(
            schema_id=schema_id,
            event_type=family,
            version=self._version_of(schema_id, family, schema),
            path=Path(f"{self.client.url}/schemas/ids/{schema_id}"),
            schema=schema,
            parsed=parsed,
            hash_is_last=bool(names) and names[-1] == "hash",
        )
        with self._lock:
            self._by_id[schema_id] = entry
        return entry

    def _version_of(self, schema_id: int, family: str, schema: dict[str, Any]) -> int:
        """The packaged version with the same canonical form, else the registry's version."""
        version = self._canonical.get((family, _canonical(schema)))
        if version is not None:
            return version
        subject = subject_for(self.topic, self._latest[family])
        for name, registered in self.client.subjects_of(schema_id):
            if name == subject:
                return registered
        return 0


def _canonical(schema: dict[str, Any]) -> str:
    """Parsing Canonical Form: equal for schemas that differ only in docs and formatting."""
    return str(fastavro.schema.to_parsing_canonical_form(schema))
