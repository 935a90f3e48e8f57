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
:mod:`agenttrail.consumers._validate`, valid UTF-8 in every string; and none of the
rows may be a copy of a stored event (``_copies``).

Two checks are made here rather than by the store, from the bodies' envelope
(``_fetch_child.envelope``: the event id and the (tenant, task_id) every agenttrail
schema opens with), because a second read of the container costs the store about a
tenth of the insert: no event id twice in the block (a block with a repeated id goes to
the codec without asking the store), and the copy lookup's tasks, which the store reads
from a small second container (``{tasks}``) instead of from the rows; every row's task
must be among them (a check of the insert), so the lookup covers every row. The block
holds exactly ``rows`` rows: the container says so, and a row read out of step with its
message fails its check value, so no separate count is needed.

The store inserts the block as one block, so a failed check stores nothing
(``Store.insert_from_file``); the block is then decoded by the codec instead, which
names the bad messages exactly and drops the copies. Known leniency: an out-of-range
union index reads as NULL in ClickHouse where the codec refuses the message; producers
writing with the agenttrail schemas cannot produce one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agenttrail.consumers._fetch_child import EVENT_ID_CHARS, envelope
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


ENVELOPE = (
    ("event_id", {"type": "string", "logicalType": "uuid"}),
    ("event_type", "string"),
    ("schema_version", "int"),
    ("tenant", "string"),
    ("task_id", "string"),
)
"""The fields every agenttrail schema opens with, in order (``_fetch_child.envelope``)."""

_INT64 = (-(1 << 63), (1 << 63) - 1)


def supports(entry: SchemaEntry) -> bool:
    """Whether a family can take the store-decoded path: flat records that open with
    :data:`ENVELOPE`."""
    opening = tuple((f["name"], f["type"]) for f in entry.schema["fields"][: len(ENVELOPE)])
    if opening != ENVELOPE:
        return False
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


@dataclass
class BlockRows:
    """Framed rows of one schema, gathered for a block: how many, the rows (pieces to
    join, in order), their event ids (pieces of :data:`EVENT_ID_CHARS` bytes per row)
    and the distinct Avro encodings of their (tenant, task_id)."""

    count: int = 0
    pieces: list[bytes | bytearray | memoryview] = field(default_factory=list)
    event_ids: list[bytes] = field(default_factory=list)
    tasks: set[bytes] = field(default_factory=set)

    def extend(self, more: BlockRows) -> None:
        """Add ``more``'s rows after these."""
        self.count += more.count
        self.pieces += more.pieces
        self.event_ids += more.event_ids
        self.tasks |= more.tasks


@dataclass(frozen=True)
class AvroBlock:
    """One family's events of one batch, as an Avro container and its checked insert.

    Attributes:
        data: the container, read with plain types by :attr:`insert_sql`.
        tasks: a container of the rows' distinct (tenant, task_id), read as ``{tasks}``.
        insert_sql: ``INSERT … SELECT … FROM {data}`` into ``{table}`` (the family's
            table) that stores every row, or raises and stores nothing when any row
            fails a check or is a copy of a stored event.
        rows: number of events in the block.
        nonce: the check value's nonce (``agenttrail_check = kafka_offset + nonce``).
        refused: why the block goes to the codec without asking the store (an event id
            twice, a body without the envelope); None for a block the store may take.
    """

    data: bytes
    tasks: bytes
    insert_sql: str
    rows: int
    nonce: int
    refused: str | None = None


# Resent copies (see _copies): (tenant, task_id, seq, event_id) already in the table,
# looked up for the block's tasks; repeats inside the block are found before (``refused``).
_COPIES = (
    "(tenant, task_id, seq, event_id) IN "
    "(SELECT tenant, task_id, seq, toString(event_id) FROM {table} "
    "WHERE (tenant, task_id) IN (SELECT tenant, task_id FROM {tasks}))"
)
_IN_TASKS = "(tenant, task_id) IN (SELECT tenant, task_id FROM {tasks})"
_TASKS_SCHEMA = {
    "type": "record",
    "name": "IngestTask",
    "fields": [{"name": "tenant", "type": "string"}, {"name": "task_id", "type": "string"}],
}

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
        self._tasks_header = _header(_TASKS_SCHEMA, self._sync)
        self.column_names: tuple[str, ...] = ("kafka_partition", "kafka_offset", *entry.field_names)
        self._select = ", ".join(
            ["kafka_partition", "kafka_offset", *(_converted(f["name"], f["type"]) for f in fields)]
        )
        self._conditions = self._build_conditions()

    def block(self, partition: int, offsets: Sequence[int], values: Sequence[bytes]) -> AvroBlock:
        """Wrap framed messages (header already checked) of one partition into a block."""
        p = zigzag(partition)
        nonce = int.from_bytes(os.urandom(7), "big")
        made = BlockRows(count=len(offsets))
        rows = bytearray()
        ids = bytearray()
        opened = True
        for offset, value in zip(offsets, values, strict=True):
            rows += p
            rows += zigzag(offset)
            rows += memoryview(value)[5:]
            rows += zigzag(nonce + offset)
            opening = envelope(value)
            if opening is None:
                opened = False
                continue
            ids += opening[0]
            made.tasks.add(opening[1])
        made.pieces.append(rows)
        made.event_ids.append(bytes(ids))
        block = self.assemble(partition, made, nonce)
        if not opened:
            return replace(block, refused="a message whose body does not open with the envelope")
        return block

    def assemble(self, partition: int, rows: BlockRows, nonce: int) -> AvroBlock:
        """The block of ``rows`` already wrapped with ``nonce``."""
        count = rows.count
        size = sum(len(r) for r in rows.pieces)
        data = b"".join([self._header, zigzag(count), zigzag(size), *rows.pieces, self._sync])
        tasks = sorted(rows.tasks)
        tasks_data = b"".join([
            self._tasks_header, zigzag(len(tasks)), zigzag(sum(map(len, tasks))), *tasks,
            self._sync,
        ])  # fmt: skip
        ids = b"".join(rows.event_ids)
        distinct = {ids[i : i + EVENT_ID_CHARS] for i in range(0, len(ids), EVENT_ID_CHARS)}
        refused = None if len(distinct) == count else "an event id twice in the batch"
        check = " AND ".join([
            f"kafka_partition = {int(partition)}",
            f"agenttrail_check = kafka_offset + {nonce}",
            *self._conditions,
            _IN_TASKS,
        ])  # fmt: skip
        columns = ", ".join(self.column_names)
        sql = (
            f"INSERT INTO {{table}} ({columns}) SELECT {self._select} FROM {{data}} "
            f"WHERE throwIf((NOT ({check})) OR {_COPIES}, '{_FAILED}') = 0"
        )
        return AvroBlock(data, tasks_data, sql, count, nonce, refused)

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
            # Every integer is read as a long: a column as wide holds any value read.
            if rng is not None and (rng[0] > _INT64[0] or rng[1] < _INT64[1]):
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
