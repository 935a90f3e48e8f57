"""The event fields as Markdown tables, generated from the newest ``.avsc`` of each family.

README.md carries the output between ``<!-- event-fields:begin -->`` and
``<!-- event-fields:end -->``; a unit test regenerates it and compares, so the README
cannot drift from the contract. Print it with ``agenttrail schemas fields``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BEGIN = "<!-- event-fields:begin -->"
END = "<!-- event-fields:end -->"


def newest_schemas(schemas: Path) -> dict[str, dict[str, Any]]:
    """Family → parsed newest ``v<N>.avsc`` (by N; its N under ``"_version"``)."""
    out: dict[str, dict[str, Any]] = {}
    for family_dir in sorted(p for p in schemas.iterdir() if p.is_dir()):
        versions = sorted(family_dir.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
        if versions:
            doc = json.loads(versions[-1].read_text())
            doc["_version"] = versions[-1].stem
            out[family_dir.name] = doc
    return out


def render_field_tables(schemas: Path) -> str:
    """The envelope table (fields every family has, alike) and one table per family."""
    docs = newest_schemas(schemas)
    field_lists = [doc["fields"] for doc in docs.values()]
    first = field_lists[0] if field_lists else []
    envelope = [
        f["name"]
        for f in first
        if all(any(_same(f, g) for g in fields) for fields in field_lists[1:])
    ]
    parts = [
        "Every event carries the envelope:",
        "",
        _table([f for f in first if f["name"] in envelope]),
    ]
    for family, doc in docs.items():
        own = [f for f in doc["fields"] if f["name"] not in envelope]
        version = doc["_version"]
        parts += ["", f"`{family}` ({version}): {_one_line(doc.get('doc', ''))}", "", _table(own)]
    return "\n".join(parts)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["name"] == b["name"] and a["type"] == b["type"])


def _table(fields: list[dict[str, Any]]) -> str:
    rows = ["| field | type | meaning |", "| --- | --- | --- |"]
    for f in fields:
        meaning = _one_line(f.get("doc", "")).replace("|", "\\|")
        rows.append(f"| `{f['name']}` | {type_name(f['type'])} | {meaning} |")
    return "\n".join(rows)


def type_name(avro_type: Any) -> str:
    """A short name for an Avro type: ``string``, ``string?`` (nullable), ``array<string>``."""
    if isinstance(avro_type, str):
        return avro_type
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        inner = " \\| ".join(type_name(t) for t in others)
        return f"{inner}?" if len(others) < len(avro_type) else inner
    kind = avro_type.get("type")
    if "logicalType" in avro_type:
        return str(avro_type["logicalType"])
    if kind == "array":
        return f"array<{type_name(avro_type['items'])}>"
    if kind == "map":
        return f"map<{type_name(avro_type['values'])}>"
    if kind == "enum":
        return "enum(" + ", ".join(avro_type["symbols"]) + ")"
    if kind == "record":
        names = ", ".join(f["name"] for f in avro_type["fields"])
        return f"record {avro_type['name']} ({names})"
    return str(kind)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
