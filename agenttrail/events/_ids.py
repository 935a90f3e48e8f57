"""Identifiers: UUIDv7 event ids, W3C-sized trace and span ids."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562) as text: 48-bit millisecond time, 12-bit counter, 62 random bits.

    Ids made by one process are strictly increasing, also within one millisecond.
    """
    global _last_ms, _counter
    ms = unix_ms if unix_ms is not None else time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return str(uuid.UUID(int=value))


def new_trace_id() -> str:
    """32 lowercase hex digits."""
    return os.urandom(16).hex()


def new_span_id() -> str:
    """16 lowercase hex digits."""
    return os.urandom(8).hex()
