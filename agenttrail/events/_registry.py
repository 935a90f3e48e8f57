"""The schema id registry: every (family, version) has a permanent integer id.

``schemas/registry.json`` lists the ids; ``schemas/<event_type>/v<N>.avsc`` holds each
schema. Producers write with the newest version of a family; consumers read every
version with the newest one as reader schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro

from agenttrail._contracts import schemas_dir
from agenttrail.events._errors import RegistryError, UnknownSchemaId


@dataclass(frozen=True)
class SchemaEntry:
    """One registered schema.

    Attributes:
        schema_id: permanent id written into every framed message.
        event_type: the family, e.g. ``tool_span``.
        version: version within the family, from 1.
        path: the ``.avsc`` file.
        schema: the schema as JSON.
        parsed: the schema parsed by fastavro, ready for reading and writing.
        hash_is_last: whether ``hash`` is the record's last field (enables the fast sealing path).
    """

    schema_id: int
    event_type: str
    version: int
    path: Path
    schema: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)
    hash_is_last: bool = True

    @property
    def field_names(self) -> list[str]:
        """Names of the record's fields in schema order."""
        return [f["name"] for f in self.schema["fields"]]


class SchemaRegistry:
    """The registered schemas of a ``schemas/`` directory, indexed by id and by family."""

    def __init__(self, entries: list[SchemaEntry], retired_ids: frozenset[int] = frozenset()):
        self._by_id = {e.schema_id: e for e in entries}
        self._latest: dict[str, SchemaEntry] = {}
        for e in sorted(entries, key=lambda e: e.version):
            self._latest[e.event_type] = e
        self.retired_ids = retired_ids

    @classmethod
    def load(cls, root: Path | None = None) -> SchemaRegistry:
        """Read ``registry.json`` and parse every schema it names.

        Raises:
            RegistryError: the registry or a schema file is missing, unreadable or invalid.
        """
        root = root or schemas_dir()
        registry_file = root / "registry.json"
        try:
            doc = json.loads(registry_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"Cannot read schema registry {registry_file}: {exc}") from exc
        entries: list[SchemaEntry] = []
        for item in doc.get("schemas", []):
            try:
                sid, etype, version, rel = (
                    int(item["id"]),
                    str(item["event_type"]),
                    int(item["version"]),
                    str(item["path"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise RegistryError(
                    f"Registry entry {item!r} in {registry_file} needs id, event_type, version "
                    f"and path: {exc}"
                ) from exc
            path = root / rel
            try:
                schema = json.loads(path.read_text())
                # A fresh namespace per schema: two versions of a family define the
                # same named types (e.g. TaskBoundary) and must not collide.
                parsed = fastavro.parse_schema(schema, named_schemas={})
            except (OSError, json.JSONDecodeError) as exc:
                raise RegistryError(f"Cannot read schema {path} (id {sid}): {exc}") from exc
            except Exception as exc:  # fastavro raises several types for invalid schemas
                raise RegistryError(f"Schema {path} (id {sid}) is not valid Avro: {exc}") from exc
            names = [f["name"] for f in schema.get("fields", [])]
            entries.append(
                SchemaEntry(
                    schema_id=sid,
                    event_type=etype,
                    version=version,
                    path=path,
                    schema=schema,
                    parsed=parsed,
                    hash_is_last=bool(names) and names[-1] == "hash",
                )
            )
        retired = frozenset(int(i) for i in doc.get("retired_ids", []))
        return cls(entries, retired)

    @property
    def entries(self) -> list[SchemaEntry]:
        """All entries ordered by id."""
        return [self._by_id[k] for k in sorted(self._by_id)]

    @property
    def event_types(self) -> list[str]:
        """Registered families."""
        return sorted(self._latest)

    def by_id(self, schema_id: int) -> SchemaEntry:
        """The entry with this id.

        Raises:
            UnknownSchemaId: no schema has this id.
        """
        try:
            return self._by_id[schema_id]
        except KeyError:
            known = ", ".join(str(i) for i in sorted(self._by_id))
            raise UnknownSchemaId(
                f"Schema id {schema_id} is not in the registry (known ids: {known}). The event was "
                "written by a newer or foreign producer; upgrade agenttrail on the consumer."
            ) from None

    def latest(self, event_type: str) -> SchemaEntry:
        """The newest version of a family: what producers write and consumers read with.

        Raises:
            RegistryError: the family is not registered.
        """
        try:
            return self._latest[event_type]
        except KeyError:
            raise RegistryError(
                f"Event type {event_type!r} has no registered schema; known types: "
                f"{', '.join(self.event_types)}."
            ) from None


_default: SchemaRegistry | None = None


def default_registry() -> SchemaRegistry:
    """The registry shipped with the package, loaded once per process."""
    global _default
    if _default is None:
        _default = SchemaRegistry.load()
    return _default
