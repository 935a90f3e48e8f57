"""The schema contract checker: registry ids, envelope fields, BACKWARD_TRANSITIVE compatibility.

:func:`check_registry` reads a ``schemas/`` directory and reports every way it breaks
the contract of architecture.md (Events, Wire format):

* registry entries: ids are unique positive ints, each (event_type, version) appears
  once, a family's versions are 1..N without gaps, every file exists, parses with both
  fastavro and the ``avro`` package, is a record that carries every envelope field, and
  has ``hash`` as its last field;
* ids are never reused: ``retired_ids`` may not name a live entry, and when the
  directory is tracked by git, the registry at ``HEAD`` is compared with the working
  copy (an id that changed meaning is a reuse, an id that vanished must be retired);
* every version of a family reads data written by every earlier version: the ``avro``
  package's ``ReaderWriterCompatibilityChecker`` decides, a field-by-field walk names the
  field and rule, and fastavro decodes real samples written with the older schema.

The checker needs the ``avro`` package (the ``dev`` extra); the codec does not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any, TypeGuard

import avro.schema
import fastavro
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)

from agenttrail.events._errors import RegistryError

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


def check_registry(root: Path) -> CheckReport:
    """Check a schemas directory against the contract; never modifies anything.

    Runs ``git show`` (read-only, 10 s timeout) when ``git`` is installed; outside a git
    repository, or when ``registry.json`` is not committed, the history comparison is
    skipped silently and ``compared_with_head`` stays False.

    Args:
        root: the directory holding ``registry.json`` and the ``.avsc`` files.

    Returns:
        A report listing every problem found; ``report.ok`` when there is none.

    Raises:
        RegistryError: the directory or ``registry.json`` cannot be read, or the latter
            is not a JSON object. Problems inside a readable registry are reported,
            not raised.
    """
    root = Path(root)
    doc = _read_registry_doc(root)
    report = CheckReport(root=root)
    entries = _check_entries(root, doc, report)
    retired = _check_retired(doc, entries, report)
    head = _registry_at_head(root)
    if head is not None:
        report.compared_with_head = True
        _check_history(head, entries, retired, report)
    _check_families(entries, report)
    _name_next_free_id(doc, head, report)
    return report


def _name_next_free_id(
    doc: dict[str, Any], head: dict[str, Any] | None, report: CheckReport
) -> None:
    """Complete the hints of id problems with the id to use instead."""
    used = {0}
    for registry in (doc, head or {}):
        items = registry.get("schemas")
        retired = registry.get("retired_ids")
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and _is_int(item.get("id")):
                used.add(item["id"])
        used.update(i for i in (retired if isinstance(retired, list) else []) if _is_int(i))
    next_free = max(used) + 1
    report.problems = [
        replace(p, hint=f"{p.hint} The next free id is {next_free}.")
        if p.rule in ("DUPLICATE_ID", "RETIRED_ID_IN_USE", "ID_REUSED")
        else p
        for p in report.problems
    ]


def _read_registry_doc(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise RegistryError(
            f"Schema directory {root} does not exist or is not a directory; "
            "pass the directory that holds registry.json."
        )
    registry_file = root / "registry.json"
    try:
        text = registry_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 ({exc.reason})"
        raise RegistryError(
            f"Cannot read {registry_file}: {reason or exc}. "
            "A schemas directory needs a registry.json listing every schema id."
        ) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"{registry_file} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); fix the syntax."
        ) from exc
    if not isinstance(doc, dict):
        raise RegistryError(
            f"{registry_file} holds a JSON {type(doc).__name__}, expected an object "
            'with "schemas" and "retired_ids".'
        )
    return doc


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entries(root: Path, doc: dict[str, Any], report: CheckReport) -> list[_Entry]:
    """Validate the entries' shape, uniqueness and files; return those that loaded."""
    items = doc.get("schemas")
    if not isinstance(items, list):
        report.add("REGISTRY_MALFORMED", "registry.json has no 'schemas' list.")
        return []
    report.entries = len(items)
    well_formed: list[_Entry] = []
    for index, item in enumerate(items):
        entry = _entry_shape(index, item, report)
        if entry is not None:
            well_formed.append(entry)

    by_id: dict[int, _Entry] = {}
    by_key: dict[tuple[str, int], _Entry] = {}
    unique: list[_Entry] = []
    for entry in well_formed:
        key = (entry.event_type, entry.version)
        if entry.schema_id in by_id:
            first = by_id[entry.schema_id]
            report.add(
                "DUPLICATE_ID",
                f"id {entry.schema_id} is used by {first.event_type} v{first.version} and "
                f"again by {entry.event_type} v{entry.version}.",
                family=entry.event_type,
                versions=(entry.version,),
                schema_id=entry.schema_id,
            )
            continue
        if key in by_key:
            report.add(
                "DUPLICATE_VERSION",
                f"{entry.event_type} v{entry.version} is registered twice "
                f"(ids {by_key[key].schema_id} and {entry.schema_id}).",
                family=entry.event_type,
                versions=(entry.version,),
                schema_id=entry.schema_id,
            )
            continue
        by_id[entry.schema_id] = entry
        by_key[key] = entry
        unique.append(entry)

    versions: dict[str, set[int]] = defaultdict(set)
    for entry in unique:
        versions[entry.event_type].add(entry.version)
    for family, present in sorted(versions.items()):
        missing = sorted(set(range(1, max(present) + 1)) - present)
        if missing:
            listed = ", ".join(f"v{v}" for v in sorted(present))
            report.add(
                "VERSION_GAP",
                f"{family} has {listed}; missing {', '.join(f'v{v}' for v in missing)}.",
                family=family,
                versions=tuple(missing),
            )

    loaded = [entry for entry in unique if _load_schema(root, entry, report)]
    for entry in sorted(loaded, key=lambda e: (e.event_type, e.version)):
        report.families.setdefault(entry.event_type, []).append(entry.version)
    return loaded


def _entry_shape(index: int, item: Any, report: CheckReport) -> _Entry | None:
    where = f"registry entry #{index + 1}"
    if not isinstance(item, dict):
        report.add("REGISTRY_MALFORMED", f"{where} is a {type(item).__name__}, not an object.")
        return None
    sid, etype, version, rel = (item.get(k) for k in ("id", "event_type", "version", "path"))
    if not (_is_int(sid) and sid > 0):
        report.add(
            "ID_NOT_POSITIVE_INT",
            f"{where} ({etype} v{version}) has id {sid!r}; ids are positive integers.",
            family=etype if isinstance(etype, str) else None,
        )
        return None
    wrong = [
        name
        for name, ok in (
            ("event_type", isinstance(etype, str) and etype != ""),
            ("version", _is_int(version) and version >= 1),
            ("path", isinstance(rel, str) and rel != ""),
        )
        if not ok
    ]
    if wrong or not (isinstance(etype, str) and _is_int(version) and isinstance(rel, str)):
        report.add(
            "REGISTRY_MALFORMED",
            f"{where} (id {sid}) has a missing or invalid {', '.join(wrong)}: {item!r}.",
            schema_id=sid,
        )
        return None
    return _Entry(schema_id=sid, event_type=etype, version=version, rel_path=rel)


def _load_schema(root: Path, entry: _Entry, report: CheckReport) -> bool:
    """Parse one entry's file with both libraries and check its envelope; True if usable."""
    where: dict[str, Any] = {
        "family": entry.event_type,
        "versions": (entry.version,),
        "schema_id": entry.schema_id,
    }
    label = f"{entry.event_type} v{entry.version} (id {entry.schema_id})"
    expected = f"{entry.event_type}/v{entry.version}.avsc"
    path = root / entry.rel_path
    if not path.resolve().is_relative_to(root.resolve()):
        report.add("PATH_CONVENTION", f"{label}: path {entry.rel_path!r} leaves the dir.", **where)
        return False
    if Path(entry.rel_path).as_posix() != expected:
        report.add(
            "PATH_CONVENTION", f"{label} is at {entry.rel_path!r}, expected {expected!r}.", **where
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        report.add(
            "SCHEMA_FILE_MISSING", f"{label}: cannot read {path}: {exc.strerror or exc}.", **where
        )
        return False
    except UnicodeDecodeError as exc:
        report.add("SCHEMA_NOT_JSON", f"{label}: {path} is not UTF-8 ({exc.reason}).", **where)
        return False
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        report.add(
            "SCHEMA_NOT_JSON",
            f"{label}: {path} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            **where,
        )
        return False
    if not (isinstance(doc, dict) and doc.get("type") == "record"):
        report.add("NOT_A_RECORD", f"{label}: {path} is not an Avro record schema.", **where)
        return False
    try:
        # A fresh namespace per schema: two versions define the same named types.
        entry.fastavro_schema = fastavro.parse_schema(doc, named_schemas={})
    except Exception as exc:  # fastavro raises several exception types for bad schemas
        report.add("SCHEMA_NOT_AVRO", f"{label}: fastavro rejects {path}: {exc}", **where)
        return False
    try:
        entry.avro_schema = avro.schema.parse(text)
    except Exception as exc:  # avro raises SchemaParseException and others
        report.add("SCHEMA_NOT_AVRO", f"{label}: the avro package rejects {path}: {exc}", **where)
        return False
    names = [f.name for f in entry.avro_schema.fields]
    missing = [name for name in ENVELOPE_FIELDS if name not in names]
    if missing:
        report.add(
            "ENVELOPE_FIELD_MISSING",
            f"{label} lacks envelope field(s) {', '.join(missing)}.",
            **where,
        )
    if "hash" in names and names[-1] != "hash":
        report.add(
            "HASH_NOT_LAST",
            f"{label}: 'hash' is field {names.index('hash') + 1} of {len(names)}, "
            f"not the last (the last is {names[-1]!r}).",
            **where,
        )
    return True


def _check_retired(doc: dict[str, Any], entries: list[_Entry], report: CheckReport) -> set[int]:
    retired = doc.get("retired_ids")
    if not (isinstance(retired, list) and all(_is_int(i) and i > 0 for i in retired)):
        report.add(
            "RETIRED_IDS_MALFORMED",
            f"registry.json has 'retired_ids': {retired!r}; expected a list of positive ints.",
        )
        return set()
    retired_set = set(retired)
    for entry in entries:
        if entry.schema_id in retired_set:
            report.add(
                "RETIRED_ID_IN_USE",
                f"id {entry.schema_id} is listed in retired_ids but names "
                f"{entry.event_type} v{entry.version}; old messages with this id would be "
                "decoded with the wrong schema.",
                family=entry.event_type,
                versions=(entry.version,),
                schema_id=entry.schema_id,
            )
    return retired_set


def _registry_at_head(root: Path) -> dict[str, Any] | None:
    """The committed registry.json, or None when git, the repository or the file is absent."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        proc = subprocess.run(
            [git, "-C", str(root), "show", "HEAD:./registry.json"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        doc = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _check_history(
    head: dict[str, Any], entries: list[_Entry], retired: set[int], report: CheckReport
) -> None:
    """Compare with the committed registry: ids keep their meaning or are retired."""
    head_ids: dict[int, tuple[str, int]] = {}
    for item in head.get("schemas") or []:
        if isinstance(item, dict) and _is_int(item.get("id")) and _is_int(item.get("version")):
            head_ids[item["id"]] = (str(item.get("event_type")), item["version"])
    head_by_key = {key: sid for sid, key in head_ids.items()}
    live = {e.schema_id: (e.event_type, e.version) for e in entries}
    renumbered_from: set[int] = set()
    for entry in entries:
        key = (entry.event_type, entry.version)
        where: dict[str, Any] = {
            "family": entry.event_type,
            "versions": (entry.version,),
            "schema_id": entry.schema_id,
        }
        was = head_ids.get(entry.schema_id)
        if was is not None and was != key:
            report.add(
                "ID_REUSED",
                f"id {entry.schema_id} named {was[0]} v{was[1]} at HEAD and now names "
                f"{entry.event_type} v{entry.version}.",
                **where,
            )
        old_id = head_by_key.get(key)
        if old_id is not None and old_id != entry.schema_id:
            renumbered_from.add(old_id)
            report.add(
                "ID_RENUMBERED",
                f"{entry.event_type} v{entry.version} had id {old_id} at HEAD and now has "
                f"id {entry.schema_id}.",
                **where,
            )
    for sid, (etype, version) in sorted(head_ids.items()):
        if sid not in live and sid not in retired and sid not in renumbered_from:
            report.add(
                "ID_DROPPED",
                f"id {sid} ({etype} v{version} at HEAD) is gone from the registry and not "
                "in retired_ids.",
                family=etype,
                versions=(version,),
                schema_id=sid,
            )
    head_retired = head.get("retired_ids")
    if isinstance(head_retired, list):
        for sid in sorted(i for i in head_retired if _is_int(i) and i not in retired):
            report.add(
                "RETIRED_ID_UNRETIRED",
                f"id {sid} was retired at HEAD and is no longer in retired_ids.",
                schema_id=sid,
            )


def _check_families(entries: list[_Entry], report: CheckReport) -> None:
    """BACKWARD_TRANSITIVE: every version reads what each earlier version wrote."""
    families: dict[str, list[_Entry]] = defaultdict(list)
    for entry in entries:
        families[entry.event_type].append(entry)
    for family in sorted(families):
        ordered = sorted(families[family], key=lambda e: e.version)
        for i, reader in enumerate(ordered):
            for writer in ordered[:i]:
                report.pairs_checked += 1
                _check_pair(family, reader, writer, report)


def _check_pair(family: str, reader: _Entry, writer: _Entry, report: CheckReport) -> None:
    result = _checker().get_compatibility(reader.avro_schema, writer.avro_schema)
    where: dict[str, Any] = {"family": family, "versions": (reader.version, writer.version)}
    prefix = f"{family} v{reader.version} cannot read v{writer.version}"
    r, w = f"v{reader.version}", f"v{writer.version}"
    if result.compatibility is not SchemaCompatibilityType.compatible:
        findings = _explain(reader.avro_schema, writer.avro_schema, "", r, w, set())
        if not findings:  # the walk found no detail: report the checker's own words
            rules = sorted({i.name.upper() for i in result.incompatibilities})
            for rule in rules or ["INCOMPATIBLE"]:
                detail = "; ".join(sorted(result.messages)) or "incompatible"
                locations = ", ".join(sorted(result.locations))
                report.add(rule, f"{prefix}: {detail} (at {locations}) ({rule})", **where)
        for rule, path, detail in findings:
            report.add(rule, f"{prefix}: {detail} ({rule})", field=path or None, **where)
        return
    # The avro checker says compatible: prove it with fastavro on real bytes.
    for rule, detail in _fastavro_roundtrip(reader, writer):
        report.add(rule, f"{prefix}: {detail} ({rule})", **where)


def _checker() -> Any:
    """A fresh avro checker (it memoises per schema pair, so one per question)."""
    # avro annotates the checker's methods but not its __init__.
    return ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]


_Finding = tuple[str, str, str]  # (rule, dotted field path, explanation)


def _explain(reader: Any, writer: Any, path: str, r: str, w: str, seen: set[Any]) -> list[_Finding]:
    """Walk reader and writer side by side so that each incompatibility names its field.

    Records, arrays, maps and record branches of unions are descended into; any other
    pair is judged by the avro checker itself.
    """
    pair = (id(reader), id(writer))
    if pair in seen:  # recursive types: each pair once
        return []
    seen = seen | {pair}
    if reader.type == "record" and writer.type == "record":
        out: list[_Finding] = []
        where = f"record '{path}'" if path else "the record"
        if not schema_name_equals(reader, writer):
            out.append(
                (
                    "NAME_MISMATCH",
                    path,
                    f"{where} is named {reader.fullname} in {r} but {writer.fullname} in {w}",
                )
            )
        for rf in reader.fields:
            fpath = f"{path}.{rf.name}" if path else rf.name
            wf = lookup_writer_field(writer_schema=writer, reader_field=rf)
            if wf is None:
                if not rf.has_default:
                    out.append(
                        (
                            "READER_FIELD_MISSING_DEFAULT_VALUE",
                            fpath,
                            f"field '{fpath}' has no default in {r} and {w} does not write it",
                        )
                    )
                continue
            out.extend(_explain(rf.type, wf.type, fpath, r, w, seen))
        return out
    if writer.type == "union":
        return [f for branch in writer.schemas for f in _explain(reader, branch, path, r, w, seen)]
    if reader.type == "union" and writer.type in ("record", "enum", "fixed"):
        for branch in reader.schemas:
            if branch.type == writer.type and schema_name_equals(branch, writer):
                return _explain(branch, writer, path, r, w, seen)
    if reader.type == writer.type == "array":
        return _explain(reader.items, writer.items, f"{path}[]", r, w, seen)
    if reader.type == writer.type == "map":
        return _explain(reader.values, writer.values, f"{path}{{}}", r, w, seen)
    result = _checker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    what = f"field '{path}'" if path else "the record"
    found: list[_Finding] = []
    for rule in sorted({i.name.upper() for i in result.incompatibilities}):
        if rule == "TYPE_MISMATCH":
            detail = f"{what} is {_label(reader)} in {r} but {_label(writer)} in {w}"
        elif rule == "MISSING_UNION_BRANCH":
            detail = f"{what} is {_label(reader)} in {r}, with no branch for {w}'s {_label(writer)}"
        else:
            detail = f"{what}: {'; '.join(sorted(result.messages))}"
        found.append((rule, path, detail))
    return found


def _label(schema: Any) -> str:
    """A short human name of a schema: ``long (timestamp-micros)``, ``union [null, string]``."""
    kind = str(schema.type)
    if kind == "union":
        return "union [" + ", ".join(_label(s) for s in schema.schemas) + "]"
    if kind == "array":
        return f"array<{_label(schema.items)}>"
    if kind == "map":
        return f"map<{_label(schema.values)}>"
    if kind in ("record", "enum", "fixed"):
        return f"{kind} {schema.name}"
    logical = schema.props.get("logicalType")
    return f"{kind} ({logical})" if logical else kind


def _fastavro_roundtrip(reader: _Entry, writer: _Entry) -> list[tuple[str, str]]:
    """Encode samples with the writer schema and decode them with the reader schema."""
    reader_fields = {f.name: f for f in reader.avro_schema.fields}
    for variant in range(_variants(writer.avro_schema)):
        sample = _sample(writer.avro_schema, variant, ())
        out = BytesIO()
        try:
            fastavro.schemaless_writer(out, writer.fastavro_schema, sample)
        except Exception as exc:  # fastavro raises many types for values it cannot write
            return [("FASTAVRO_SAMPLE_FAILED", f"a generated v{writer.version} sample: {exc}")]
        data = out.getvalue()
        src = BytesIO(data)
        try:
            # fastavro's return type covers every Avro type; a record schema reads as a dict.
            decoded: dict[str, Any] = fastavro.schemaless_reader(  # type: ignore[assignment]
                src, writer.fastavro_schema, reader.fastavro_schema
            )
        except Exception as exc:  # SchemaResolutionError and decoding errors alike
            return [
                (
                    "FASTAVRO_READ_FAILED",
                    f"fastavro could not decode a v{writer.version} sample with the "
                    f"v{reader.version} schema ({type(exc).__name__}: {exc})",
                )
            ]
        missing = sorted(set(reader_fields) - set(decoded))
        if src.tell() != len(data) or missing:
            return [
                (
                    "FASTAVRO_READ_FAILED",
                    f"decoding a v{writer.version} sample left {len(data) - src.tell()} "
                    f"bytes unread and fields {missing} unset",
                )
            ]
        for wf in writer.avro_schema.fields:
            rf = reader_fields.get(wf.name)
            comparable = rf is not None and _plain(wf.type) and _label(rf.type) == _label(wf.type)
            if comparable and decoded[wf.name] != sample[wf.name]:
                return [
                    (
                        "FASTAVRO_READ_FAILED",
                        f"field '{wf.name}' written as {sample[wf.name]!r} was read back as "
                        f"{decoded[wf.name]!r}",
                    )
                ]
    return []


def _plain(schema: Any) -> bool:
    """Whether fastavro reads values of ``schema`` back unchanged (no logical types, records)."""
    if schema.type == "union":
        return all(_plain(s) for s in schema.schemas)
    if schema.type == "array":
        return _plain(schema.items)
    if schema.type == "map":
        return _plain(schema.values)
    return schema.type not in ("record", "enum", "fixed") and not schema.props.get("logicalType")


def _variants(schema: Any) -> int:
    """How many samples to write so that each branch of the widest union is used once."""
    widest = 2
    stack, seen = [schema], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.type == "union":
            widest = max(widest, len(node.schemas))
            stack.extend(node.schemas)
        elif node.type == "record":
            stack.extend(f.type for f in node.fields)
        elif node.type == "array":
            stack.append(node.items)
        elif node.type == "map":
            stack.append(node.values)
    return widest


def _sample(schema: Any, variant: int, active: tuple[str, ...]) -> Any:
    """A deterministic value of ``schema``; ``variant`` picks union branches and values."""
    kind = str(schema.type)
    logical = schema.props.get("logicalType")
    if logical == "decimal":
        return Decimal(variant + 1)
    if kind == "null":
        return None
    if kind == "boolean":
        return variant % 2 == 0
    if kind == "int":
        return 19_000 + variant if logical else -(2**31) + variant
    if kind == "long":
        return 1_700_000_000_000_000 + variant if logical else 2**62 + variant
    if kind in ("float", "double"):
        return -2.5 - variant
    if kind == "bytes":
        # Not UTF-8 on purpose: a bytes→string promotion, which the avro checker allows,
        # fails on such data, and the round trip reports it.
        return bytes([variant % 256, 0xFF])
    if kind == "string":
        return str(uuid.UUID(int=variant + 1)) if logical == "uuid" else f"sample {variant} ü→"
    if kind == "fixed":
        return bytes(schema.size)
    if kind == "enum":
        return schema.symbols[variant % len(schema.symbols)]
    if kind == "array":
        return [_sample(schema.items, variant, active)] if len(active) < 4 else []
    if kind == "map":
        return {"k": _sample(schema.values, variant, active)} if len(active) < 4 else {}
    if kind == "union":
        branches = schema.schemas
        nulls = [b for b in branches if b.type == "null"]
        if len(active) >= 4 and nulls:  # stop recursive types
            return None
        return _sample(branches[variant % len(branches)], variant, active)
    if kind == "record":
        inner = (*active, schema.fullname)
        return {f.name: _sample(f.type, variant, inner) for f in schema.fields}
    raise ValueError(f"Cannot build a sample of Avro type {kind!r}.")
