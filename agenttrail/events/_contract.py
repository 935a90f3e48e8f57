"""Each family's ``.avsc`` is the one source of its fields; this module says what follows.

From a family's newest schema it derives the event shape the SDK must build (field
names), the table columns the migrations must create (names and ClickHouse types), and
it compares a pydantic model with the schema. Each ``*_mismatches`` function returns a
list of sentences, one per disagreement, empty when the two agree; unit tests call them
on the repository's models, SQL and SDK output, so adding a field to one side only fails
the test run, before anything reaches a broker or a store.

Nothing here touches a database or the network.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel

STORE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kafka_partition", "Int32"),
    ("kafka_offset", "Int64"),
    ("ingested_at", "DateTime64(6, 'UTC')"),
)
"""Columns every family table has beyond its schema's fields: where the row came from."""

NARROWED_COLUMNS: Mapping[str, str] = {"schema_version": "UInt16"}
"""Envelope fields whose column is narrower than their Avro type, on purpose.

``schema_version`` is an Avro ``int`` but a version number never leaves UInt16; the
consumer must dead-letter a value outside the column's range.
"""

_PRIMITIVE_COLUMN = {
    "string": "String",
    "bytes": "String",
    "int": "Int32",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "boolean": "Bool",
}
_LOGICAL_COLUMN = {
    "uuid": "UUID",
    "timestamp-micros": "DateTime64(6, 'UTC')",
    "timestamp-millis": "DateTime64(3, 'UTC')",
}
_PRIMITIVE_PYTHON: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "bytes": (bytes,),
    "int": (int,),
    "long": (int,),
    "float": (float,),
    "double": (float,),
    "boolean": (bool,),
}
_LOGICAL_PYTHON: dict[str, tuple[type, ...]] = {
    "uuid": (str,),
    "timestamp-micros": (datetime,),
    "timestamp-millis": (datetime,),
}


@dataclass(frozen=True)
class FieldSpec:
    """One field of an Avro record, reduced to what models and tables depend on.

    Attributes:
        name: the field name.
        kind: ``record``, ``array``, a logical type (``uuid``, ``timestamp-micros``) or a
            primitive (``string``, ``long``, ...).
        nullable: whether the type is a union with ``null``.
        items: the item kind of an array.
        fields: the fields of a nested record.
    """

    name: str
    kind: str
    nullable: bool
    items: str | None = None
    fields: tuple[FieldSpec, ...] = ()


def _kind_of(avro_type: Any) -> tuple[str, str | None, tuple[FieldSpec, ...]]:
    if isinstance(avro_type, str):
        return avro_type, None, ()
    if not isinstance(avro_type, dict):
        raise ValueError(f"unsupported Avro type {avro_type!r}")
    if "logicalType" in avro_type:
        return str(avro_type["logicalType"]), None, ()
    kind = avro_type["type"]
    if kind == "record":
        return "record", None, schema_fields(avro_type)
    if kind == "array":
        item_kind, _, _ = _kind_of(avro_type["items"])
        return "array", item_kind, ()
    if kind == "enum":
        return "string", None, ()
    return _kind_of(kind)


def schema_fields(schema: Mapping[str, Any]) -> tuple[FieldSpec, ...]:
    """The fields of an Avro record schema (as JSON), in schema order.

    Raises:
        ValueError: a field uses a union of several non-null types or a type this
            project does not map to a column (maps, fixed); say which in the message.
    """
    out: list[FieldSpec] = []
    for f in schema["fields"]:
        avro_type = f["type"]
        nullable = False
        if isinstance(avro_type, list):
            branches = [b for b in avro_type if b != "null"]
            if len(branches) != 1:
                raise ValueError(
                    f"field {f['name']!r} is a union of {avro_type!r}; only [null, T] maps "
                    "to a column. Use one type, or a nested record."
                )
            nullable = len(branches) < len(avro_type)
            avro_type = branches[0]
        kind, items, nested = _kind_of(avro_type)
        out.append(FieldSpec(f["name"], kind, nullable, items, nested))
    return tuple(out)


# -- event shapes (what the SDK builds) ------------------------------------------------


def shape_mismatches(schema: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """Disagreements between a schema's fields and the keys of a record built for it.

    fastavro fills a missing nullable field with null and ignores an unknown key, so a
    record that forgot a field or carries one the schema lacks still encodes; this is
    the check that notices.
    """
    expected = [f.name for f in schema_fields(schema)]
    have = set(keys)
    name = schema.get("name", "record")
    problems = [
        f"{name}: field {k!r} is in the schema but the record does not set it"
        for k in expected
        if k not in have
    ]
    problems += [
        f"{name}: the record sets {k!r}, which the schema does not have"
        for k in sorted(have - set(expected))
    ]
    return problems


# -- table columns (what the migrations create) ---------------------------------------


def _column_type(spec: FieldSpec, nullable: bool) -> str:
    if spec.kind == "array":
        item = _LOGICAL_COLUMN.get(spec.items or "") or _PRIMITIVE_COLUMN[spec.items or ""]
        return f"Array({item})"
    base = NARROWED_COLUMNS.get(spec.name) or _LOGICAL_COLUMN.get(spec.kind)
    if base is None:
        base = _PRIMITIVE_COLUMN[spec.kind]
    return f"Nullable({base})" if nullable else base


def expected_columns(schema: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (column, ClickHouse type) pairs a family table must have, in order.

    Every field in schema order; a nested record becomes ``has_<field>`` (Bool) and one
    ``<field>_<subfield>`` column per subfield, nullable because the record may be absent
    (arrays stay arrays: empty when absent); then :data:`STORE_COLUMNS`. Types are the
    logical ones: ``LowCardinality`` and codecs are storage choices and not compared.
    """
    out: list[tuple[str, str]] = []
    for spec in schema_fields(schema):
        if spec.kind == "record":
            out.append((f"has_{spec.name}", "Bool"))
            for sub in spec.fields:
                out.append((f"{spec.name}_{sub.name}", _column_type(sub, sub.kind != "array")))
            continue
        out.append((spec.name, _column_type(spec, spec.nullable)))
    return (*out, *STORE_COLUMNS)


def normalise_column_type(sql_type: str) -> str:
    """A column type as written in DDL, without storage wrappers: ``LowCardinality(X)`` is X."""
    text = " ".join(sql_type.split())
    text = re.sub(r"\s*,\s*", ", ", text)
    text = re.sub(r"\(\s+", "(", text)
    text = re.sub(r"\s+\)", ")", text)
    while True:
        m = re.fullmatch(r"LowCardinality\((.*)\)", text)
        if not m:
            return text
        text = m.group(1)


def column_mismatches(
    table: str, schema: Mapping[str, Any], columns: Mapping[str, str]
) -> list[str]:
    """Disagreements between a family's schema and its table's columns (name → DDL type)."""
    expected = dict(expected_columns(schema))
    have = {name: normalise_column_type(t) for name, t in columns.items()}
    problems = [
        f"{table}: column {name!r} ({t}) follows from the schema but no migration creates it"
        for name, t in expected.items()
        if name not in have
    ]
    problems += [
        f"{table}: column {name!r} is {have[name]}, the schema makes it {t}"
        for name, t in expected.items()
        if name in have and have[name] != t
    ]
    problems += [
        f"{table}: column {name!r} has no field in the schema "
        f"{schema.get('name', '')} (add the field, or drop the column in a new migration)"
        for name in have
        if name not in expected
    ]
    return problems


# -- pydantic models ------------------------------------------------------------------


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _split_optional(tp: Any) -> tuple[Any, bool]:
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return _strip_annotated(args[0]), nullable
        return tp, nullable
    return tp, False


def _python_fits(spec: FieldSpec, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if spec.kind == "array":
        return origin is list
    if origin is typing.Literal:
        return spec.kind == "string" and all(isinstance(a, str) for a in typing.get_args(tp))
    if not isinstance(tp, type):
        return False
    if spec.kind == "string" and issubclass(tp, Enum):
        return issubclass(tp, str)
    allowed = _LOGICAL_PYTHON.get(spec.kind) or _PRIMITIVE_PYTHON.get(spec.kind, ())
    if bool in allowed:
        return tp is bool
    return issubclass(tp, allowed) and tp is not bool


def model_mismatches(schema: Mapping[str, Any], model: type[BaseModel]) -> list[str]:
    """Disagreements between a schema and a pydantic model: names, nullability, types.

    A nested record must be a nested model, compared the same way.
    """
    specs = {s.name: s for s in schema_fields(schema)}
    fields = model.model_fields
    name = model.__name__
    problems = [f"{name}: schema field {f!r} has no model field" for f in specs if f not in fields]
    problems += [f"{name}: model field {f!r} has no schema field" for f in fields if f not in specs]
    for fname, spec in specs.items():
        if fname not in fields:
            continue
        tp, nullable = _split_optional(fields[fname].annotation)
        if nullable != spec.nullable:
            want = "nullable" if spec.nullable else "required (never None)"
            problems.append(f"{name}.{fname}: the schema makes it {want}, the model does not")
        if spec.kind == "record":
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                nested = next(f for f in schema["fields"] if f["name"] == fname)["type"]
                record = (
                    next(b for b in nested if isinstance(b, dict))
                    if isinstance(nested, list)
                    else nested
                )
                problems += model_mismatches(record, tp)
            else:
                problems.append(f"{name}.{fname}: a nested record needs a nested model")
        elif not _python_fits(spec, tp):
            problems.append(f"{name}.{fname}: Avro {spec.kind} does not fit the model's {tp!r}")
    return problems
