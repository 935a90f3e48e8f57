"""Redaction of JSON-like values and text by detectors, sensitive keys and per-tool rules.

A :class:`Scrubber` replaces every sensitive value with a typed placeholder carrying a
keyed hash, ``[redacted:email:3f2a…]``, and reports what it redacted where
(:class:`Redaction`). The hash is an HMAC-SHA256 under the scrubber's key, so equal
values can be correlated within one key's scope while a low-entropy value (a phone
number) cannot be recovered by hashing every candidate without the key. The original
is never stored, logged or returned.

Rules, most specific wins:

- a key listed in ``sensitive_keys`` (compared case-insensitively) has its whole value
  replaced (``[redacted:key:…]``), whatever it holds;
- a tool's :class:`ToolRedaction` can redact whole fields, exempt fields from detection,
  or narrow the detectors applied to it;
- every other string (and dict key) is scanned by the detectors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agenttrail.producer._detectors import (
    _MIN_CANDIDATE,
    BUILTIN_DETECTORS,
    Detector,
    _may_hold_builtin,
    find_sensitive,
)

DEFAULT_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "ssn",
        "credit_card",
        "card_number",
        "cvv",
        "iban",
        "private_key",
        "client_secret",
    }
)

KEY_KIND = "key"
"""Kind recorded when a value was redacted because of its key, not its content."""

_HASH_CHARS = 16
_WALKED = (dict, list, tuple, str)
_LEAVES = frozenset({int, float, bool, type(None)})
"""Types the walk leaves as they are and whose JSON cannot change after the call."""
_PLAIN_KEYS_KEPT = 4096


@dataclass(frozen=True)
class Redaction:
    """One redacted value: where (a JSON path like ``$.to[0]``) and what kind."""

    path: str
    kind: str


@dataclass(frozen=True)
class ToolRedaction:
    """Redaction rules of one tool.

    Attributes:
        kinds: detector kinds applied to this tool's arguments and results; None: all.
        redact_fields: JSON paths (``$.body``) or top-level names (``body``) whose whole
            value is always replaced.
        skip_fields: paths or names never scanned (e.g. a field known to hold only ids);
            sensitive keys are still redacted inside them.
    """

    kinds: frozenset[str] | None = None
    redact_fields: frozenset[str] = frozenset()
    skip_fields: frozenset[str] = frozenset()


class Scrubber:
    """Redacts sensitive values from tool arguments, results and message content.

    Thread-safe (holds no mutable state after construction). Never raises on odd
    values: anything that is not a dict, list, tuple or string is left as it is.

    Args:
        detectors: the detectors to run (default: every built-in one); add your own
            with ``(*BUILTIN_DETECTORS, my_detector)``.
        sensitive_keys: keys whose values are always replaced.
        tools: per-tool rules by tool name.
        key: HMAC key of the placeholders' hashes; random per scrubber when omitted
            (hashes then correlate within one process only).
    """

    def __init__(
        self,
        detectors: Sequence[Detector] = BUILTIN_DETECTORS,
        *,
        sensitive_keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS,
        tools: Mapping[str, ToolRedaction] | None = None,
        key: bytes | None = None,
    ):
        self.detectors = tuple(detectors)
        self.sensitive_keys = frozenset(k.lower() for k in sensitive_keys)
        self.tools = dict(tools or {})
        self._key = key if key is not None else secrets.token_bytes(32)
        self._plain_keys: set[str] = set()
        self._by_kinds: dict[frozenset[str] | None, tuple[Detector, ...]] = {None: self.detectors}
        for rule in self.tools.values():
            if rule.kinds is not None:
                self._by_kinds[rule.kinds] = tuple(
                    d for d in self.detectors if d.kind in rule.kinds
                )

    def keyed_hash(self, value: str) -> str:
        """HMAC-SHA256 (hex) of ``value`` under this scrubber's key."""
        return hmac.new(
            self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).hexdigest()

    def placeholder(self, kind: str, value: str) -> str:
        """The typed placeholder that replaces ``value``."""
        return f"[redacted:{kind}:{self.keyed_hash(value)[:_HASH_CHARS]}]"

    def scrub_text(
        self, text: str, path: str = "$", tool: str | None = None
    ) -> tuple[str, list[Redaction]]:
        """``text`` with every detected value replaced, and what was replaced."""
        detectors = self._detectors_for(tool)
        out, found = self._text(text, path, detectors)
        return out, found

    def scrub(self, value: Any, tool: str | None = None) -> tuple[Any, list[Redaction]]:
        """A redacted copy of a JSON-like ``value`` (or ``value`` itself when untouched).

        Args:
            value: dicts, lists, tuples, strings and scalars, nested.
            tool: apply this tool's :class:`ToolRedaction` rules.
        """
        rule = self.tools.get(tool) if tool is not None and self.tools else None
        detectors = self._by_kinds[rule.kinds] if rule is not None else self.detectors
        found: list[Redaction] = []
        if type(value) is str:  # a tool result: the most common call
            if len(value) < _MIN_CANDIDATE:
                return value, found
            out: Any = self._text_into(value, "$", detectors, found)
        elif rule is None and type(value) is dict and self._flat_and_plain(value):
            return value, found  # tool arguments, usually: nothing the walk could find
        else:
            out = self._walk(value, "$", detectors, rule, False, found)
        return (out if found else value), found

    def frozen_args(self, value: Any, tool: str | None) -> dict[str, Any] | None:
        """A copy of flat tool arguments that :meth:`scrub` would leave untouched, else None.

        Flat: known-plain keys, and values that are numbers, booleans, None or strings
        the detectors find nothing in (see :meth:`_flat_and_plain`). Such values are
        immutable, so the copy's JSON, written later on another thread, is the JSON the
        arguments have now: the agent's thread pays for a dict copy, not the JSON.
        """
        if type(value) is not dict or (tool is not None and tool in self.tools):
            return None
        return dict(value) if self._flat_and_plain(value) else None

    def _detectors_for(self, tool: str | None) -> tuple[Detector, ...]:
        rule = self.tools.get(tool) if tool is not None else None
        return self._by_kinds[rule.kinds if rule is not None else None]

    def _text(
        self, text: str, path: str, detectors: tuple[Detector, ...]
    ) -> tuple[str, list[Redaction]]:
        found: list[Redaction] = []
        return self._text_into(text, path, detectors, found), found

    def _text_into(
        self, text: str, path: str, detectors: tuple[Detector, ...], found: list[Redaction]
    ) -> str:
        """``text`` with its findings replaced; what was replaced is added to ``found``."""
        findings = find_sensitive(text, detectors)
        if not findings:
            return text
        parts: list[str] = []
        pos = 0
        for f in findings:
            parts.append(text[pos : f.start])
            parts.append(self.placeholder(f.kind, text[f.start : f.end]))
            pos = f.end
            found.append(Redaction(path, f.kind))
        parts.append(text[pos:])
        return "".join(parts)

    def _whole(self, value: Any, path: str, kind: str, found: list[Redaction]) -> str:
        found.append(Redaction(path, kind))
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        return self.placeholder(kind, text)

    def _plain_key(self, key: str, detectors: tuple[Detector, ...]) -> bool:
        """Whether ``key`` is neither a sensitive key nor holds anything to redact.

        Tools have few argument names, so the answer for the full detector set is
        remembered (only for names found clean: nothing redactable is kept).
        """
        if key in self._plain_keys:
            return True
        if key.lower() in self.sensitive_keys or find_sensitive(key, detectors):
            return False
        if detectors is self.detectors and len(self._plain_keys) < _PLAIN_KEYS_KEPT:
            self._plain_keys.add(key)
        return True

    def _flat_and_plain(self, value: dict[Any, Any]) -> bool:
        """Whether the walk would find nothing in ``value`` without walking it.

        True when every key is a name already found plain (see :meth:`_plain_key`) and
        every value is a number, boolean or None (the walk does not look into them), or
        a string too short for any detector or, with the built-in detectors, one their
        prefilter passes over (the walk would find nothing in it either): the common
        shape of tool arguments, checked without building the copy the walk builds.
        """
        plain = self._plain_keys
        builtin = self.detectors is BUILTIN_DETECTORS
        for k, v in value.items():
            if type(k) is not str or k not in plain:
                return False
            kind = type(v)
            if kind is str:
                if len(v) >= _MIN_CANDIDATE and (not builtin or _may_hold_builtin(v)):
                    return False
            elif kind not in _LEAVES:
                return False
        return True

    def _walk(
        self,
        value: Any,
        path: str,
        detectors: tuple[Detector, ...],
        rule: ToolRedaction | None,
        skip: bool,
        found: list[Redaction],
    ) -> Any:
        # Paths are built only where needed (a finding, a rule, a nested container):
        # most values hold nothing, and formatting paths was most of the walk's cost.
        if isinstance(value, str):
            if skip or len(value) < _MIN_CANDIDATE:
                return value
            return self._text_into(value, path, detectors, found)
        if isinstance(value, dict):
            result: dict[Any, Any] = {}
            for k, v in value.items():
                key = k
                if (
                    isinstance(k, str)
                    and not (skip and k.lower() not in self.sensitive_keys)
                    and not self._plain_key(k, detectors)
                ):
                    if not skip:
                        key = self._text_into(k, f"{path}.<key>", detectors, found)
                    if k.lower() in self.sensitive_keys:
                        result[key] = self._whole(v, f"{path}.{key}", KEY_KIND, found)
                        continue
                child_skip = skip
                if rule is not None:
                    child = f"{path}.{key}"
                    if child in rule.redact_fields or _short(child, path) in rule.redact_fields:
                        result[key] = self._whole(v, child, "field", found)
                        continue
                    child_skip = skip or (
                        child in rule.skip_fields or _short(child, path) in rule.skip_fields
                    )
                if type(v) is str:
                    if child_skip or len(v) < _MIN_CANDIDATE:
                        result[key] = v
                    else:
                        result[key] = self._text_into(v, f"{path}.{key}", detectors, found)
                elif isinstance(v, _WALKED):
                    result[key] = self._walk(v, f"{path}.{key}", detectors, rule, child_skip, found)
                else:
                    result[key] = v
            return result
        if isinstance(value, list | tuple):
            return [
                self._walk(v, f"{path}[{i}]", detectors, rule, skip, found)
                for i, v in enumerate(value)
            ]
        return value


def _short(child: str, parent: str) -> str:
    # The bare field name of a top-level field ("$.body" -> "body"); deeper paths match
    # only by their full JSON path.
    return child[2:] if parent == "$" else child


@dataclass
class RedactionReport:
    """What one event's redaction did, for the ``redaction_applied`` guard event."""

    where: str
    redactions: list[Redaction] = field(default_factory=list)

    def detail(self) -> str:
        """``email at $.to; card at $.note`` (kinds and paths only, never values)."""
        return "; ".join(f"{r.kind} at {r.path}" for r in self.redactions)
