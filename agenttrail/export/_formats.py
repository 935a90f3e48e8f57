"""Row files of an export: JSON Lines, CSV and Parquet, written and read back block by block.

Each writer takes column blocks as the engine streams them and never holds more than
one block. Values are written so that reading them back yields exactly what was stored
(the seal of every event can be recomputed from the file alone):

- JSON Lines: one object per row; timestamps as ISO 8601 with microseconds, UUIDs as
  text, floats as Python's shortest round-trip repr.
- CSV: a header row; ``\\N`` is NULL (a text value starting with a backslash gets one
  more), booleans ``true``/``false``, arrays as JSON.
- Parquet (pyarrow): one row group per block, types from the table's column types.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

FORMATS = ("jsonl", "csv", "parquet")
"""Export formats, also the file extensions."""

NULL = "\\N"


def base_type(ch_type: str) -> str:
    """``Nullable(LowCardinality(String))`` → ``String``; keeps ``Array(...)``."""
    t = ch_type
    while True:
        m = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", t)
        if not m:
            return t
        t = m.group(1)


def is_nullable(ch_type: str) -> bool:
    return "Nullable(" in ch_type


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class RowWriter(Protocol):
    """Writes one family's rows to one file."""

    rows: int

    def write(self, columns: Sequence[Sequence[Any]]) -> None:
        """Append one block (column-oriented, in the writer's column order)."""

    def close(self) -> None:
        """Flush and close the file."""


class JsonlWriter:
    """JSON Lines writer."""

    def __init__(self, path: Path, names: list[str], types: list[str]):
        self.names = names
        self.rows = 0
        self._f = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115  # closed in close()

    def write(self, columns: Sequence[Sequence[Any]]) -> None:
        out = self._f
        names = self.names
        for row in zip(*columns, strict=True):
            out.write(
                json.dumps(dict(zip(names, map(_plain, row), strict=True)), ensure_ascii=False)
            )
            out.write("\n")
            self.rows += 1

    def close(self) -> None:
        self._f.close()


class CsvWriter:
    """CSV writer (RFC 4180 quoting, ``\\N`` for NULL)."""

    def __init__(self, path: Path, names: list[str], types: list[str]):
        self.rows = 0
        self._f = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115  # closed in close()
        self._csv = csv.writer(self._f, lineterminator="\n")
        self._csv.writerow(names)

    @staticmethod
    def cell(value: Any) -> str:
        if value is None:
            return NULL
        value = _plain(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return json.dumps(value, ensure_ascii=False)
        if isinstance(value, float):
            return repr(value)
        text = str(value)
        return "\\" + text if text.startswith("\\") else text

    def write(self, columns: Sequence[Sequence[Any]]) -> None:
        cell = self.cell
        for row in zip(*columns, strict=True):
            self._csv.writerow([cell(v) for v in row])
            self.rows += 1

    def close(self) -> None:
        self._f.close()


def _arrow_type(ch_type: str) -> Any:
    import pyarrow as pa

    t = base_type(ch_type)
    if t.startswith("Array("):
        return pa.list_(_arrow_type(t[6:-1]))
    if t in ("String", "UUID") or t.startswith("FixedString"):
        return pa.string()
    if t.startswith("DateTime64"):
        return pa.timestamp("us", tz="UTC")
    if t.startswith("DateTime") or t == "Date":
        return pa.timestamp("s", tz="UTC")
    if t == "Bool":
        return pa.bool_()
    if t.startswith("Float"):
        return pa.float64()
    if t.startswith(("Int", "UInt")):
        return pa.int64()
    return pa.string()


class ParquetWriter:
    """Parquet writer (pyarrow), one row group per block."""

    def __init__(self, path: Path, names: list[str], types: list[str]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self.rows = 0
        self.schema = pa.schema(
            [
                pa.field(n, _arrow_type(t), nullable=is_nullable(t))
                for n, t in zip(names, types, strict=True)
            ]
        )
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def write(self, columns: Sequence[Sequence[Any]]) -> None:
        pa = self._pa
        arrays = []
        for values, f in zip(columns, self.schema, strict=True):
            if pa.types.is_string(f.type):
                values = [None if v is None else _plain(v) for v in values]
            elif pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type):
                values = [_plain(v) for v in values]
            arrays.append(pa.array(values, type=f.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += len(columns[0]) if columns else 0

    def close(self) -> None:
        self._writer.close()


def open_writer(fmt: str, path: Path, names: list[str], types: list[str]) -> RowWriter:
    """A writer of ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "jsonl":
        return JsonlWriter(path, names, types)
    if fmt == "csv":
        return CsvWriter(path, names, types)
    if fmt == "parquet":
        return ParquetWriter(path, names, types)
    raise ValueError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")


# -- reading back -----------------------------------------------------------------------


def _from_text(text: str, ch_type: str) -> Any:
    """A CSV cell back to the value it was written from."""
    if text == NULL and is_nullable(ch_type):
        return None
    t = base_type(ch_type)
    if t.startswith("Array("):
        return json.loads(text)
    if t == "Bool":
        return text == "true"
    if t.startswith(("Int", "UInt")):
        return int(text)
    if t.startswith("Float"):
        return float(text)
    return text[1:] if text.startswith("\\\\") else text


def read_rows(fmt: str, path: Path, types: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Every row of an exported file, as column → value, in file order (streaming)."""
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)
    elif fmt == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            kinds = [types.get(n, "String") for n in header]
            for row in reader:
                yield {n: _from_text(v, k) for n, v, k in zip(header, row, kinds, strict=True)}
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=8192):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"Unknown export format {fmt!r}.")


__all__ = ["FORMATS", "RowWriter", "base_type", "open_writer", "read_rows"]
