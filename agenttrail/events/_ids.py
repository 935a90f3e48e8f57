"""Identifiers: UUIDv7 event ids, W3C-sized trace and span ids."""

from __future__ import annotations

import os
import random
import threading
import time

# Ids identify, they do not protect: a fast PRNG seeded from the OS is enough, and
# saves a system call per id. A forked child reseeds, or parent and child would repeat
# each other's ids.
_random = random.Random(os.urandom(16))
_bits = _random.getrandbits
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(16)))


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
    rand = _bits(62)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_trace_id() -> str:
    """32 lowercase hex digits, never all zero."""
    return f"{_bits(128) or 1:032x}"


def new_span_id() -> str:
    """16 lowercase hex digits, never all zero."""
    # bytes.hex() is about twice as fast as a format spec, and a span id is made for
    # every span on the agent's thread.
    return (_bits(64) or 1).to_bytes(8, "big").hex()
