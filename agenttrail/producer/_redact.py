"""PII redaction of tool arguments and message content, before anything leaves the process.

Values under sensitive keys (password, token, api_key, ...) are replaced, and by
configuration strings matching patterns (e-mail addresses, card numbers) too. The event
records the JSON paths that were redacted; the original never leaves the process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from agenttrail.producer._scrub import DEFAULT_SENSITIVE_KEYS

REDACTED = "[redacted]"

_CONTAINERS = (dict, list, tuple)
_NO_PATHS: list[str] = []
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")


class Redactor:
    """Replaces sensitive values in JSON-like structures.

    Args:
        keys: keys whose values are always replaced (compared case-insensitively).
        scrub_strings: also replace e-mail addresses and card-like numbers inside
            string values (costs a regex scan per string).
    """

    def __init__(self, keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS, scrub_strings: bool = False):
        self.keys = frozenset(k.lower() for k in keys)
        self.scrub_strings = scrub_strings
        self._safe_keysets: dict[frozenset[Any], bool] = {}

    def _keys_are_safe(self, value: dict[Any, Any]) -> bool:
        keyset = frozenset(value)
        known = self._safe_keysets.get(keyset)
        if known is None:
            known = self.keys.isdisjoint(str(k).lower() for k in keyset)
            if len(self._safe_keysets) < 4096:  # tools have few argument shapes
                self._safe_keysets[keyset] = known
        return known

    def redact(self, value: Any) -> tuple[Any, list[str]]:
        """Return (redacted copy or the value itself when untouched, redacted JSON paths)."""
        if (
            not self.scrub_strings
            and type(value) is dict
            and self._keys_are_safe(value)
            and not any(type(v) in _CONTAINERS for v in value.values())
        ):
            # The common case: flat arguments with no sensitive key. No copy, no walk.
            return value, _NO_PATHS
        paths: list[str] = []
        out = self._walk(value, "$", paths)
        return (out if paths else value), paths

    def _walk(self, value: Any, path: str, paths: list[str]) -> Any:
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                child = f"{path}.{k}"
                if isinstance(k, str) and k.lower() in self.keys:
                    out[k] = REDACTED
                    paths.append(child)
                else:
                    out[k] = self._walk(v, child, paths)
            return out
        if isinstance(value, list | tuple):
            return [self._walk(v, f"{path}[{i}]", paths) for i, v in enumerate(value)]
        if self.scrub_strings and isinstance(value, str):
            scrubbed = _CARD.sub(REDACTED, _EMAIL.sub(REDACTED, value))
            if scrubbed != value:
                paths.append(path)
                return scrubbed
        return value
