"""OTLP/HTTP request bodies: gzip, protobuf or JSON, into the collector's request messages.

Follows the OTLP/HTTP specification: ``Content-Type: application/x-protobuf`` or
``application/json``, optionally ``Content-Encoding: gzip``. OTLP/JSON differs from the
protobuf JSON mapping in one place that matters: trace and span ids are hex strings,
not base64; they are converted before parsing. Enum values may be integers or names,
64-bit integers numbers or strings, field names lowerCamelCase or snake_case (the
protobuf JSON parser accepts all of these). Unknown fields are ignored, as the spec
asks of receivers.

Nothing here has side effects: a body either decodes completely or raises
:class:`BadRequest` naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from typing import Any, Literal, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

Encoding = Literal["protobuf", "json"]
M = TypeVar("M", bound=Message)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


class BadRequest(ValueError):
    """The request cannot be decoded; answered with 400 and the message as the reason."""


class UnsupportedMediaType(BadRequest):
    """The content type is neither OTLP protobuf nor OTLP JSON (answered with 415)."""


def encoding_of(content_type: str | None) -> Encoding:
    """Which OTLP encoding a ``Content-Type`` header names.

    Raises:
        UnsupportedMediaType: anything but ``application/x-protobuf`` or ``application/json``.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in (PROTOBUF, "application/protobuf"):
        return "protobuf"
    if media == JSON:
        return "json"
    raise UnsupportedMediaType(
        f"Content-Type {content_type!r} is not OTLP; send {PROTOBUF} or {JSON}."
    )


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body with its ``Content-Encoding`` (gzip, deflate or none) undone.

    Raises:
        BadRequest: unknown encoding, corrupt data, or more than ``max_bytes`` once inflated.
    """
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "deflate"):
        raise BadRequest(f"Content-Encoding {content_encoding!r} is not supported; use gzip.")
    inflater = zlib.decompressobj(wbits=31 if coding == "gzip" else 15)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"The {coding} body is corrupt: {exc}.") from exc
    if len(out) > max_bytes:
        raise BadRequest(
            f"The body inflates to more than {max_bytes} bytes, the receiver's limit; "
            "send smaller batches."
        )
    if not inflater.eof:
        raise BadRequest(f"The {coding} body is truncated.")
    return out


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed (for clients and tests)."""
    return gzip.compress(data)


def parse_traces(payload: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` from its protobuf or OTLP/JSON bytes.

    Raises:
        BadRequest: the bytes are not such a message.
    """
    return _parse(payload, encoding, ExportTraceServiceRequest(), "trace")


def parse_logs(payload: bytes, encoding: Encoding) -> ExportLogsServiceRequest:
    """An ``ExportLogsServiceRequest`` from its protobuf or OTLP/JSON bytes.

    Raises:
        BadRequest: the bytes are not such a message.
    """
    return _parse(payload, encoding, ExportLogsServiceRequest(), "logs")


def _parse(payload: bytes, encoding: Encoding, message: M, what: str) -> M:
    if encoding == "protobuf":
        try:
            message.ParseFromString(payload)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            raise BadRequest(
                f"The body is not a protobuf OTLP {what} export request: {exc}."
            ) from exc
        return message
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The body is not JSON: {exc}.") from exc
    if not isinstance(doc, dict):
        raise BadRequest(f"The JSON body is a {type(doc).__name__}, not an OTLP {what} object.")
    try:
        json_format.ParseDict(_ids_to_base64(doc), message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise BadRequest(f"The JSON body is not an OTLP {what} export request: {exc}.") from exc
    return message


def _ids_to_base64(value: Any) -> Any:
    """OTLP/JSON hex ids → the base64 the protobuf JSON mapping expects for bytes."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, str):
                try:
                    item = base64.b64encode(bytes.fromhex(item)).decode("ascii")
                except ValueError as exc:
                    raise BadRequest(f"{key} {item[:40]!r} is not a hex id: {exc}.") from exc
            else:
                item = _ids_to_base64(item)
            out[key] = item
        return out
    if isinstance(value, list):
        return [_ids_to_base64(v) for v in value]
    return value


def trace_response(rejected: int, message: str) -> ExportTraceServiceResponse:
    """The response to a trace export: ``partial_success`` set only when something was rejected."""
    resp = ExportTraceServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    return resp


def logs_response(rejected: int, message: str) -> ExportLogsServiceResponse:
    """The response to a logs export: ``partial_success`` set only when something was rejected."""
    resp = ExportLogsServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_log_records = rejected
        resp.partial_success.error_message = message
    return resp


def serialize(message: Message, encoding: Encoding) -> bytes:
    """A response message in the request's encoding."""
    if encoding == "protobuf":
        return bytes(message.SerializeToString())
    return str(json_format.MessageToJson(message, indent=None)).encode()


def hex_id(raw: bytes) -> str:
    """Lowercase hex of an id's bytes ('' for none)."""
    return binascii.hexlify(raw).decode("ascii")
