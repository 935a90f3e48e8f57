"""Shared parts of the schema contract checker: the envelope, the report, the hints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENVELOPE_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "schema_version",
    "tenant",
    "task_id",
    "task_type",
    "agent_name",
    "agent_version",
    "trace_id",
    "span_id",
    "parent_span_id",
    "step",
    "seq",
    "ts",
    "producer_id",
    "producer_seq",
    "prev_hash",
    "hash",
)
"""Fields every event schema must carry (those of the v1 contracts); ``hash`` comes last."""

_HINTS: dict[str, str] = {
    "REGISTRY_MALFORMED": "Each entry needs an int 'id', a string 'event_type', an int "
    "'version' and a string 'path'; 'schemas' must be a list.",
    "ID_NOT_POSITIVE_INT": "Use a positive integer id that no entry and no retired id uses.",
    "DUPLICATE_ID": "Give the newer entry the next free id; an id names one schema forever.",
    "DUPLICATE_VERSION": "Remove the duplicate entry or give it the next version number.",
    "VERSION_GAP": "Number a family's versions 1, 2, 3, ... without holes.",
    "PATH_CONVENTION": "Store the schema as <event_type>/v<version>.avsc inside the schemas dir.",
    "SCHEMA_FILE_MISSING": "Create the file or fix the entry's 'path' (relative to the dir).",
    "SCHEMA_NOT_JSON": "Fix the JSON syntax at the position shown.",
    "SCHEMA_NOT_AVRO": "Fix the schema so that both fastavro and the avro package accept it.",
    "NOT_A_RECORD": 'An event schema is an Avro record: {"type": "record", ...}.',
    "ENVELOPE_FIELD_MISSING": "Copy the envelope fields (event_id ... producer_seq, prev_hash, "
    "hash) from a v1 schema.",
    "HASH_NOT_LAST": "Move 'hash' to the end of 'fields': sealing and verification rely on it.",
    "RETIRED_IDS_MALFORMED": 'Add "retired_ids": [] (a list of ints) to registry.json.',
    "RETIRED_ID_IN_USE": "A retired id is gone for good: give the entry the next free id.",
    "ID_REUSED": "Restore the old meaning of the id and give the new schema the next free id.",
    "ID_DROPPED": "Restore the entry, or add its id to retired_ids so it is never reused.",
    "ID_RENUMBERED": "Restore the old id: messages already written carry it.",
    "RETIRED_ID_UNRETIRED": "Put the id back into retired_ids; retirement is permanent.",
    "READER_FIELD_MISSING_DEFAULT_VALUE": "Give the new field a default, e.g. "
    '"type": ["null", <type>], "default": null, so that old events can be read.',
    "TYPE_MISMATCH": "Keep the old type or only promote it (int→long→float→double, "
    "string→bytes); for other changes add a new field with a default.",
    "MISSING_UNION_BRANCH": "Keep every branch the older version can write in the new union.",
    "NAME_MISMATCH": "Keep the type's name, or list the old full name in its 'aliases'.",
    "MISSING_ENUM_SYMBOLS": "Keep every old enum symbol, or give the enum a 'default' symbol.",
    "FIXED_SIZE_MISMATCH": "Keep the size of the fixed type.",
    "FASTAVRO_READ_FAILED": "The avro checker allows this change but real data does not "
    "survive it (e.g. bytes→string fails on non-UTF-8 bytes): keep the old type, or add a "
    "new field with a default.",
    "FASTAVRO_SAMPLE_FAILED": "The writer schema cannot encode a generated sample; "
    "check its logical types and defaults.",
}


@dataclass(frozen=True)
class Problem:
    """One way a schemas directory breaks the contract.

    Attributes:
        rule: machine-readable rule name, e.g. ``READER_FIELD_MISSING_DEFAULT_VALUE``.
        message: what is wrong, naming the family, versions and field where they apply.
        hint: what to do about it.
        family: the event family concerned, if any.
        versions: ``(reader, writer)`` for compatibility problems, ``(version,)`` for one
            schema, empty for registry-wide problems.
        field: dotted field path (``boundary.max_steps``) for field-level problems.
        schema_id: the registry id concerned, if any.
    """

    rule: str
    message: str
    hint: str
    family: str | None = None
    versions: tuple[int, ...] = ()
    field: str | None = None
    schema_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``agenttrail schemas check --json``)."""
        return {
            "rule": self.rule,
            "message": self.message,
            "hint": self.hint,
            "family": self.family,
            "versions": list(self.versions),
            "field": self.field,
            "schema_id": self.schema_id,
        }


@dataclass
class CheckReport:
    """The outcome of :func:`check_registry`.

    Attributes:
        root: the directory checked.
        entries: number of registry entries read.
        families: each family's versions that loaded, ascending.
        pairs_checked: reader/writer version pairs checked for compatibility.
        compared_with_head: whether the registry at git ``HEAD`` was compared.
        problems: everything found, in the order checked; empty means the contract holds.
    """

    root: Path
    entries: int = 0
    families: dict[str, list[int]] = field(default_factory=dict)
    pairs_checked: int = 0
    compared_with_head: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def add(self, rule: str, message: str, **where: Any) -> None:
        """Record a problem; the hint comes from the rule."""
        self.problems.append(Problem(rule, message, _HINTS.get(rule, ""), **where))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``agenttrail schemas check --json``)."""
        return {
            "ok": self.ok,
            "root": str(self.root),
            "entries": self.entries,
            "families": self.families,
            "pairs_checked": self.pairs_checked,
            "compared_with_head": self.compared_with_head,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclass
class _Entry:
    schema_id: int
    event_type: str
    version: int
    rel_path: str
    avro_schema: Any = None  # avro.schema.RecordSchema once loaded
    fastavro_schema: Any = None
