"""W3C Trace Context: joining a task to a distributed trace that is already running."""

from __future__ import annotations

import re

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def parse_traceparent(value: str) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C ``traceparent`` header value.

    Raises:
        ValueError: not ``<version>-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``,
            version ``ff``, or an all-zero id; the message quotes the value.
    """
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None or m.group(1) == "ff" or (m.group(1) == "00" and m.group(5)):
        raise ValueError(
            f"traceparent {value!r} is not a W3C traceparent; expected "
            "'00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>'."
        )
    trace_id, parent = m.group(2), m.group(3)
    if set(trace_id) == {"0"} or set(parent) == {"0"}:
        raise ValueError(f"traceparent {value!r} has an all-zero id, which W3C forbids.")
    return trace_id, parent


def check_trace_id(value: str) -> str:
    """``value`` if it is a W3C trace id (32 lowercase hex digits, not all zero).

    Raises:
        ValueError: it is not.
    """
    if not _TRACE_ID.match(value) or set(value) == {"0"}:
        raise ValueError(
            f"trace_id {value!r} is not a W3C trace id; expected 32 lowercase hex digits, "
            "not all zero."
        )
    return value
