"""BACKWARD_TRANSITIVE checks of the schema contract checker: each version of a family
against every earlier one, with the avro package's checker, a field-by-field walk that
names the field and rule, and a real fastavro round trip of generated samples."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal
from io import BytesIO
from typing import Any

import fastavro
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)

from agenttrail.events._compat_report import CheckReport, _Entry


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
