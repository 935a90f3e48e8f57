"""Compact JSON for event fields: never fails, fast for the small objects agents pass."""

from __future__ import annotations

import json
from typing import Any

# Built once: json.dumps with non-default options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_SORTED_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=str, sort_keys=True
)


def _c_encoder(sort_keys: bool) -> Any:
    # The C encoder made once; JSONEncoder.encode rebuilds it on every call, which is
    # most of the cost for the small objects tool arguments usually are.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    return make({}, str, json.encoder.encode_basestring, None, ":", ",", sort_keys, False, True)


_C_PLAIN = _c_encoder(False)
_C_SORTED = _c_encoder(True)


def to_json(value: Any, sort_keys: bool = False) -> str:
    """Compact JSON; unknown objects become their ``str`` so recording never fails."""
    fast = _C_SORTED if sort_keys else _C_PLAIN
    if fast is not None:
        try:
            return "".join(fast(value, 0))
        except (ValueError, TypeError, RecursionError):
            pass  # circular or odd values: the careful encoder below explains them
    try:
        return (_SORTED_ENCODER if sort_keys else _ENCODER).encode(value)
    except (ValueError, TypeError, RecursionError) as exc:
        return json.dumps(f"<unserialisable {type(value).__name__}: {exc}>")
