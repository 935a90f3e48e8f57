"""Let the store decode Avro: a batch's events of one family become one Avro container.

The producer's Avro bodies are copied, not decoded: each is wrapped as
``zigzag(partition) · zigzag(offset) · body · zigzag(nonce + offset)``, exactly the
binary encoding of a record with fields ``kafka_partition``, ``kafka_offset``, the
family's fields and a trailing ``agenttrail_check``. ClickHouse reads the container
in C++ (``file(…, 'Avro')``), far faster than decoding in Python.

The container is read with plain types (logical types dropped, every ``int`` as
``long``) by ONE statement, :attr:`AvroBlock.insert_sql`: ``INSERT INTO {table} …
SELECT <the fields, uuid and timestamp converted> FROM {data} WHERE throwIf(…)``.
Because ClickHouse is lenient where the codec is strict, the ``throwIf`` fails the
whole insert unless every row passes: the trailing check value of every row (a body
with trailing or missing bytes shifts every field after it; the nonce is drawn per
block, so no trailing bytes a producer wrote can spell it — with the bare offset, a
last message ending in the byte ``zigzag(offset)`` read as checked), every integer
within its column's range (``_ranges``), every rule of
:mod:`agenttrail.consumers._validate`, valid UTF-8 in every string; and the block
must hold exactly its rows, none of them a copy of a stored event (``_copies``) and no
event id twice. The store inserts the block as one block, so a failed check stores
nothing (``Store.insert_from_file``); the block is then decoded by the codec instead,
which names the bad messages exactly and drops the copies. Known leniency: an
out-of-range union index reads as NULL in ClickHouse where the codec refuses the
message; producers writing with the agenttrail schemas cannot produce one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agenttrail.consumers._validate import TS_MAX, TS_MIN, rules_for
from agenttrail.events import SchemaEntry, to_micros


def zigzag(value: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _plain(field_type: Any) -> Any:
    """The type without logical types (uuid → string, timestamp-micros → long), and
    ``int`` read as ``long``: both are the same zig-zag varint on the wire, so the
    check sees the value exactly as encoded, however large, and can test its range."""
    if isinstance(field_type, list):
        return [_plain(t) for t in field_type]
    if isinstance(field_type, dict) and "logicalType" in field_type:
        return _plain(field_type["type"])
    if field_type == "int":
        return "long"
    return field_type


def _converted(name: str, field_type: Any) -> str:
    """The select expression turning a plain-typed field into its column's value; the
    insert converts the rest (e.g. ``long`` into ``Int32``, range-checked first)."""
    branches = field_type if isinstance(field_type, list) else [field_type]
    for branch in branches:
        if isinstance(branch, dict) and branch.get("logicalType") == "uuid":
            return f"toUUID({name})"  # a string that is no UUID fails the insert
        if isinstance(branch, dict) and branch.get("logicalType") == "timestamp-micros":
            return f"fromUnixTimestamp64Micro({name}, 'UTC')"
    return name


def supports(entry: SchemaEntry) -> bool:
    """Whether a family can take the store-decoded path (flat records only)."""
    for f in entry.schema["fields"]:
        branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
        if any(isinstance(b, dict) and b.get("type") == "record" for b in branches):
            return False
    return True


def _header(schema: dict[str, Any], sync: bytes) -> bytes:
    meta = {"avro.schema": json.dumps(schema).encode(), "avro.codec": b"null"}
    out = bytearray(b"Obj\x01")
    out += zigzag(len(meta))
    for key, value in meta.items():
        out += zigzag(len(key)) + key.encode() + zigzag(len(value)) + value
    out += b"\x00" + sync
    return bytes(out)


@dataclass(frozen=True)
class AvroBlock:
    """One family's events of one batch, as an Avro container and its checked insert.

    Attributes:
        data: the container, read with plain types by :attr:`insert_sql`.
        insert_sql: ``INSERT … SELECT … FROM {data}`` into ``{table}`` (the family's
            table) that stores every row, or raises and stores nothing when any row
            fails a check, is a copy of a stored event or repeats an event id.
        rows: number of events in the block.
        nonce: the check value's nonce (``agenttrail_check = kafka_offset + nonce``).
    """

    data: bytes
    insert_sql: str
    rows: int
    nonce: int


# Resent copies (see _copies): (tenant, task_id, seq, event_id) already in the table.
# Repeats inside the block are caught by the row count's subquery (every event id once).
_COPIES = (
    "(tenant, task_id, seq, event_id) IN "
    "(SELECT tenant, task_id, seq, toString(event_id) FROM {table} "
    "WHERE (tenant, task_id) IN (SELECT tenant, task_id FROM {data}))"
)

_FAILED = "agenttrail: the block failed its check; decode it with the codec"
"""The ``throwIf`` message of a block that fails its check."""


class AvroBlockEncoder:
    """Builds :class:`AvroBlock` s for one family. Thread-safe after construction.

    Args:
        entry: the family's newest schema (only messages framed with it are accepted).
        ranges: integer column ranges (``_ranges.column_ranges``) the check enforces.
    """

    def __init__(self, entry: SchemaEntry, ranges: dict[str, tuple[int, int]] | None = None):
        self.entry = entry
        self._ranges = ranges or {}
        fields = entry.schema["fields"]
        head = [
            {"name": "kafka_partition", "type": "int"},
            {"name": "kafka_offset", "type": "long"},
        ]
        tail = [{"name": "agenttrail_check", "type": "long"}]
        plain_fields = [{"name": f["name"], "type": _plain(f["type"])} for f in fields]
        plain = {"type": "record", "name": "IngestRow", "fields": [*head, *plain_fields, *tail]}
        self._sync = os.urandom(16)
        self._header = _header(plain, self._sync)
        self.column_names: tuple[str, ...] = ("kafka_partition", "kafka_offset", *entry.field_names)
        self._select = ", ".join(
            ["kafka_partition", "kafka_offset", *(_converted(f["name"], f["type"]) for f in fields)]
        )
        self._conditions = self._build_conditions()

    def block(self, partition: int, offsets: Sequence[int], values: Sequence[bytes]) -> AvroBlock:
        """Wrap framed messages (header already checked) of one partition into a block."""
        p = zigzag(partition)
        nonce = int.from_bytes(os.urandom(7), "big")
        rows = bytearray()
        for offset, value in zip(offsets, values, strict=True):
            rows += p
            rows += zigzag(offset)
            rows += memoryview(value)[5:]
            rows += zigzag(nonce + offset)
        return self.assemble(partition, len(offsets), [rows], nonce)

    def assemble(
        self, partition: int, count: int, rows: Sequence[bytes | bytearray | memoryview], nonce: int
    ) -> AvroBlock:
        """The block of ``count`` rows already wrapped with ``nonce`` (``rows``: the
        wrapped rows in order, as pieces to join)."""
        size = sum(len(r) for r in rows)
        data = b"".join([self._header, zigzag(count), zigzag(size), *rows, self._sync])
        check = " AND ".join([
            f"kafka_partition = {int(partition)}",
            f"agenttrail_check = kafka_offset + {nonce}",
            *self._conditions,
        ])  # fmt: skip
        whole = f"(SELECT count() != {count} OR uniqExact(event_id) != {count} FROM {{data}})"
        columns = ", ".join(self.column_names)
        sql = (
            f"INSERT INTO {{table}} ({columns}) SELECT {self._select} FROM {{data}} "
            f"WHERE throwIf((NOT ({check})) OR {_COPIES} OR {whole}, '{_FAILED}') = 0"
        )
        return AvroBlock(data=data, insert_sql=sql, rows=count, nonce=nonce)

    def _build_conditions(self) -> list[str]:
        entry = self.entry
        conds = [
            f"event_type = '{entry.event_type}'",
            f"schema_version = {entry.version}",
            f"ts BETWEEN {to_micros(TS_MIN)} AND {to_micros(TS_MAX)}",
            # Canonical 36-character form only: a subset of what the codec accepts.
            "length(event_id) = 36 AND isNotNull(toUUIDOrNull(event_id))",
        ]
        for f in entry.schema["fields"]:
            name, kind = f["name"], _plain(f["type"])
            if kind == "string" or kind == ["null", "string"]:
                conds.append(f"isValidUTF8(ifNull({name}, ''))")
            elif isinstance(kind, dict) and kind.get("type") == "array":
                conds.append(f"arrayAll(x -> isValidUTF8(x), {name})")
        for f in entry.schema["fields"]:
            rng = self._ranges.get(f["name"])
            if rng is not None:
                conds.append(f"({f['name']} IS NULL OR {f['name']} BETWEEN {rng[0]} AND {rng[1]})")
        rules = rules_for(entry.event_type)
        if rules is not None:
            for name, low in rules.lower_bounds:
                conds.append(f"({name} IS NULL OR {name} >= {low!r})")
            for name, allowed in rules.choices:
                values = ", ".join("'" + v.replace("'", "\\'") + "'" for v in sorted(allowed))
                conds.append(f"({name} IS NULL OR {name} IN ({values}))")
            for name in rules.finite:
                conds.append(f"({name} IS NULL OR isFinite({name}))")
        return conds
