"""Errors of the event codec. Each names what is wrong with which bytes and what to do."""

from __future__ import annotations


class EventError(Exception):
    """Base class of every error raised by ``agenttrail.events``."""


class EncodeError(EventError):
    """An event could not be encoded: a field is missing or has the wrong type."""


class DecodeError(EventError):
    """Bytes could not be decoded into an event.

    Attributes:
        reason: short machine-readable reason, stored in ``dead_letters.reason``.
    """

    reason = "malformed"


class BadMagicByte(DecodeError):
    """Byte 0 is not the Confluent framing magic byte 0."""

    reason = "bad_magic_byte"


class UnknownSchemaId(DecodeError):
    """The 4-byte schema id is not in the registry."""

    reason = "unknown_schema_id"


class TruncatedPayload(DecodeError):
    """The payload ends before the framing header or the Avro record is complete."""

    reason = "truncated"


class TrailingBytes(DecodeError):
    """Bytes are left over after a complete Avro record (fastavro ignores them; we do not)."""

    reason = "trailing_bytes"


class OversizePayload(DecodeError):
    """The payload is larger than the configured maximum."""

    reason = "oversize"


class MalformedBody(DecodeError):
    """The Avro body is not a valid record of its schema (bad union index, invalid UTF-8, ...)."""

    reason = "malformed_body"


class RegistryError(EventError):
    """The schema registry file or a schema it names is missing or invalid."""
