"""Avro encoding with Confluent framing, and strict decoding.

Wire format of every message: byte 0 is the magic byte 0, bytes 1-4 the schema id
(unsigned, big-endian), then the Avro binary body of one record. Decoding reads any
registered version with the newest schema of its family as reader schema, and refuses
anything that is not exactly one well-formed record.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from agenttrail.events._errors import (
    BadMagicByte,
    DecodeError,
    EncodeError,
    MalformedBody,
    OversizePayload,
    TrailingBytes,
    TruncatedPayload,
)
from agenttrail.events._registry import SchemaEntry, SchemaRegistry, default_registry

MAGIC_BYTE = 0
HEADER = struct.Struct(">BI")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""Largest framed event accepted by default (4 MiB): long LLM histories fit, runaways do not."""

# Avro encodes a string as a zig-zag varint length then the bytes; a 64-character hex
# digest has length 64, whose zig-zag varint is 0x80 0x01.
_HASH_PREFIX = b"\x80\x01"


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the Confluent header."""
    return HEADER.pack(MAGIC_BYTE, schema_id) + body


def read_header(payload: bytes) -> int:
    """Return the schema id of a framed payload.

    Raises:
        TruncatedPayload: fewer than 5 bytes.
        BadMagicByte: byte 0 is not 0.
    """
    if len(payload) < HEADER_SIZE:
        raise TruncatedPayload(
            f"Payload of {len(payload)} bytes is shorter than the 5-byte framing header; "
            "the producer did not write agenttrail framing."
        )
    magic, schema_id = HEADER.unpack_from(payload)
    if magic != MAGIC_BYTE:
        raise BadMagicByte(
            f"First byte is {magic:#04x}, expected the magic byte 0x00 of Confluent framing; "
            "the message was not written by an agenttrail producer."
        )
    return int(schema_id)


def encode_body(entry: SchemaEntry, record: Mapping[str, Any]) -> bytes:
    """Encode one record with the entry's schema, without framing.

    Raises:
        EncodeError: a field is missing or of the wrong type.
    """
    buf = BytesIO()
    try:
        schemaless_writer(buf, entry.parsed, record)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise EncodeError(
            f"Cannot encode {entry.event_type} v{entry.version} event "
            f"{record.get('event_id', '?')}: {exc}"
        ) from exc
    return buf.getvalue()


def seal(entry: SchemaEntry, record: dict[str, Any], prev_hash: str) -> bytes:
    """Set the hash-chain fields of ``record`` and return its framed bytes.

    ``record['prev_hash']`` becomes ``prev_hash`` and ``record['hash']`` the SHA-256 of
    the record's canonical bytes: its Avro body with ``hash`` set to the empty string.
    When ``hash`` is the schema's last field (every v1 schema) the body is encoded once.

    Raises:
        EncodeError: the record does not fit the schema.
    """
    record["prev_hash"] = prev_hash
    record["hash"] = ""
    canonical = encode_body(entry, record)
    digest = hashlib.sha256(canonical).hexdigest()
    record["hash"] = digest
    if entry.hash_is_last:
        # The empty string encodes as the single byte 0x00 at the very end.
        body = canonical[:-1] + _HASH_PREFIX + digest.encode("ascii")
    else:
        body = encode_body(entry, record)
    return frame(entry.schema_id, body)


def canonical_hash(entry: SchemaEntry, record: Mapping[str, Any]) -> str:
    """Recompute the hash an event should carry, from its field values."""
    unsealed = dict(record)
    unsealed["hash"] = ""
    return hashlib.sha256(encode_body(entry, unsealed)).hexdigest()


class EventCodec:
    """Encodes and decodes framed events against one registry.

    Thread-safe: it holds no mutable state after construction.

    Args:
        registry: the schemas to use; the packaged registry by default.
        max_payload_bytes: larger payloads are refused with :class:`OversizePayload`.
    """

    def __init__(
        self,
        registry: SchemaRegistry | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ):
        self.registry = registry or default_registry()
        self.max_payload_bytes = max_payload_bytes

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Frame and encode a complete record with the newest schema of its family.

        The record must already carry every field, the hash-chain fields included;
        use :func:`seal` to set those.

        Raises:
            EncodeError: unknown family, missing or mistyped field, or oversize result.
        """
        try:
            entry = self.registry.latest(str(record["event_type"]))
        except KeyError:
            raise EncodeError("Record has no event_type; cannot choose a schema.") from None
        except Exception as exc:
            raise EncodeError(str(exc)) from exc
        payload = frame(entry.schema_id, encode_body(entry, record))
        if len(payload) > self.max_payload_bytes:
            raise EncodeError(
                f"{entry.event_type} event {record.get('event_id', '?')} encodes to "
                f"{len(payload)} bytes, over the {self.max_payload_bytes}-byte limit."
            )
        return payload

    def decode(self, payload: bytes) -> dict[str, Any]:
        """Decode one framed event into a dict shaped by the newest schema of its family.

        Raises:
            DecodeError: one of its subclasses, naming the problem.
        """
        return self.decode_entry(payload)[1]

    def decode_entry(self, payload: bytes) -> tuple[SchemaEntry, dict[str, Any]]:
        """Like :meth:`decode`, also returning the writer's schema entry."""
        size = len(payload)
        if size > self.max_payload_bytes:
            raise OversizePayload(
                f"Payload of {size} bytes exceeds the {self.max_payload_bytes}-byte limit; "
                "raise max_payload_bytes if such events are legitimate."
            )
        schema_id = read_header(payload)
        writer = self.registry.by_id(schema_id)
        reader = self.registry.latest(writer.event_type)
        buf = BytesIO(payload)
        buf.seek(HEADER_SIZE)
        try:
            if reader is writer:
                record = schemaless_reader(buf, writer.parsed, None)
            else:
                record = schemaless_reader(buf, writer.parsed, reader.parsed)
        except (EOFError, StopIteration) as exc:
            raise TruncatedPayload(
                f"{writer.event_type} v{writer.version} body ends early after "
                f"{size - HEADER_SIZE} bytes: {str(exc) or 'end of data'}"
            ) from exc
        except DecodeError:
            raise
        except Exception as exc:  # fastavro signals corrupt data with many types
            if isinstance(exc, IndexError) and buf.tell() >= size:
                # fastavro's reader raises IndexError, not EOFError, when the data ends
                # inside a multi-byte varint (a length, an int, a union index).
                raise TruncatedPayload(
                    f"{writer.event_type} v{writer.version} body ends early, inside a "
                    f"number, after {size - HEADER_SIZE} bytes."
                ) from exc
            raise MalformedBody(
                f"{writer.event_type} v{writer.version} body is not a valid record "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        consumed = buf.tell()
        if consumed != size:
            raise TrailingBytes(
                f"{size - consumed} bytes left over after a complete {writer.event_type} "
                f"v{writer.version} record of {consumed - HEADER_SIZE} bytes."
            )
        if not isinstance(record, dict):
            raise MalformedBody(f"Body decoded to {type(record).__name__}, not a record.")
        return writer, record
