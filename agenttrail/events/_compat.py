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

The checker needs the ``avro`` package (the ``embedded`` and ``dev`` extras); the codec
does not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeGuard

import avro.schema
import fastavro

from agenttrail.events._compat_pairs import _check_families
from agenttrail.events._compat_report import (
    ENVELOPE_FIELDS,
    CheckReport,
    Problem,
    _Entry,
)
from agenttrail.events._errors import RegistryError

__all__ = ["ENVELOPE_FIELDS", "CheckReport", "Problem", "check_registry"]


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
