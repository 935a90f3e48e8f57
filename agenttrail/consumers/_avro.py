"""Let the store decode Avro: a batch's events of one family become one Avro container.

The producer's Avro bodies are copied, not decoded: each is wrapped as
``zigzag(partition) · zigzag(offset) · body · zigzag(nonce + offset)``, exactly the
binary encoding of a record with fields ``kafka_partition``, ``kafka_offset``, the
family's fields and a trailing ``agenttrail_check``. ClickHouse reads the container
in C++ (``FORMAT Avro``), far faster than decoding in Python.

Because ClickHouse is lenient where the codec is strict, a block is first checked by
a query over the same bytes (read with plain types, every ``int`` as ``long``): the row
count, the trailing check value of every row (a body with trailing or missing bytes
shifts every field after it; the nonce is drawn per block, so no trailing bytes a
producer wrote can spell it — with the bare offset, a last message ending in the
byte ``zigzag(offset)`` read as checked), every integer within its column's range (``_ranges``),
every rule of :mod:`agenttrail.consumers._validate` and valid UTF-8 in every string. A
block that fails any check is decoded by the codec instead, which names the bad
messages exactly. Known leniency: an out-of-range union index reads as NULL in
ClickHouse where the codec refuses the message; producers writing with the agenttrail
schemas cannot produce one.
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
    """One family's events of one batch, as Avro containers for checking and inserting.

    Attributes:
        insert_data: container read with the real types, for ``INSERT … FORMAT Avro``.
        check_data: the same rows read with plain types, for :attr:`check_sql`.
        check_sql: query over ``{data}`` and ``{table}`` (the family's table) returning
            (rows, rows failing a check, rows that are copies of stored events or of
            earlier rows of the block).
        rows: number of events in the block.
    """

    insert_data: bytes
    check_data: bytes
    check_sql: str
    rows: int


# Resent copies (see _copies): (tenant, task_id, seq, event_id) already in the table, or
# repeated in the block. Read from the same plain-typed bytes as the check, in the same
# query (one statement and one scan of the block per group).
_COPIES = (
    "countIf((tenant, task_id, seq, event_id) IN "
    "(SELECT tenant, task_id, seq, toString(event_id) FROM {table} "
    "WHERE (tenant, task_id) IN (SELECT tenant, task_id FROM {data}))) "
    "+ count() - uniqExact(tenant, task_id, seq, event_id)"
)


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
        real = {"type": "record", "name": "IngestRow", "fields": [*head, *fields, *tail]}
        plain_fields = [{"name": f["name"], "type": _plain(f["type"])} for f in fields]
        plain = {"type": "record", "name": "IngestRow", "fields": [*head, *plain_fields, *tail]}
        self._sync = os.urandom(16)
        self._insert_header = _header(real, self._sync)
        self._check_header = _header(plain, self._sync)
        self.column_names: tuple[str, ...] = ("kafka_partition", "kafka_offset", *entry.field_names)
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
        count = len(offsets)
        data = b"".join([zigzag(count), zigzag(len(rows)), rows, self._sync])
        check = " AND ".join([
            f"kafka_partition = {int(partition)}",
            f"agenttrail_check = kafka_offset + {nonce}",
            *self._conditions,
        ])  # fmt: skip
        return AvroBlock(
            insert_data=self._insert_header + data,
            check_data=self._check_header + data,
            check_sql=f"SELECT count(), countIf(NOT ({check})), {_COPIES} FROM {{data}}",
            rows=count,
        )

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
