"""Detectors of personal data and secrets inside strings, used by redaction.

Each detector names a *kind* (``email``, ``card``, ...) and finds ``(start, end)`` spans
in a string. A regular expression proposes candidates and an optional validator rejects
look-alikes (a card number must pass the Luhn check, an IBAN its mod-97 check), so an
order id or a timestamp with many digits is not taken for a card.

What the built-in detectors find (and so what redaction guarantees to remove):

- ``email``: ``local@domain.tld``.
- ``phone``: ``+`` and 8-15 digits (E.164, separators ``space . - ( )`` allowed), or 10-11
  digits written with separators, e.g. ``(555) 123-4567``, ``555-123-4567``. Bare runs of
  digits without ``+`` are not phones (they are ids far more often).
- ``card``: 13-19 digits, optionally grouped by spaces or dashes, passing the Luhn check.
- ``iban``: country code, check digits and 11-30 alphanumerics, optionally grouped by
  spaces, passing the ISO 13616 mod-97 check.
- ``bearer_token``: the credential after ``Bearer`` / ``Basic`` (e.g. in an
  ``Authorization`` header).
- ``api_key``: provider keys by their published prefixes (``sk-``, ``sk-ant-``,
  ``ghp_``/``gho_``/``ghs_``/``ghu_``/``ghr_``, ``github_pat_``, ``xox?-``, ``AIza``,
  ``glpat-``, ``sk_live_``/``rk_live_``/``sk_test_``), and ``api_key=…``-style assignments.
- ``cloud_access_key``: AWS access key ids (``AKIA``/``ASIA``/…), an AWS secret key after
  ``aws_secret_access_key``, Azure ``AccountKey=`` and ``SharedAccessSignature`` values.
- ``jwt``: three base64url segments whose first two start with ``eyJ`` (JSON).
- ``private_key``: a PEM ``-----BEGIN … PRIVATE KEY-----`` block, to its END line or, if
  cut off, to the end of the string.

A user-supplied detector is any object with ``kind`` and ``find(text)``; see
:class:`PatternDetector` for the regular-expression case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Span = tuple[int, int]


@runtime_checkable
class Detector(Protocol):
    """Finds one kind of sensitive value in a string.

    ``find`` must be pure and thread-safe; it returns the character spans to redact.
    """

    @property
    def kind(self) -> str:
        """The name recorded in placeholders and guard events."""

    def find(self, text: str) -> Iterable[Span]: ...


def trie_pattern(words: Iterable[str]) -> str:
    """A regular expression (source) finding any of ``words`` as a plain substring.

    A word that another word starts with ends the branch (``ai`` covers ``aiza``): a
    search only asks whether some word occurs, and the shorter one occurs first.
    """
    trie: dict[str, Any] = {}
    for word in words:
        if not word:
            return ""  # the empty word occurs everywhere
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def branches(node: dict[str, Any]) -> list[str]:
        return [re.escape(ch) + below(child) for ch, child in sorted(node.items())]

    def below(node: dict[str, Any]) -> str:
        if "" in node:
            return ""
        alts = branches(node)
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return "|".join(branches(trie))


@dataclass(frozen=True)
class PatternDetector:
    """A detector made of a regular expression and an optional validator.

    Args:
        kind: the name recorded in placeholders and guard events (``[redacted:<kind>:…]``).
        pattern: a compiled expression; when it has a group named ``secret`` only that
            group is redacted (e.g. the token after ``Bearer``), else the whole match.
        validate: called with the matched text; returning False drops the candidate.
    """

    kind: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool] | None = None
    hints: tuple[str, ...] = ()
    """Substrings of which every match holds one (compared with the lower-cased text
    when ``hints_lower``); a string holding none is skipped without the pattern."""
    hints_lower: bool = False

    def find(self, text: str) -> Iterable[Span]:
        if self.hints:
            haystack = text.lower() if self.hints_lower else text
            if not any(h in haystack for h in self.hints):
                return
        secret = "secret" in self.pattern.groupindex
        for m in self.pattern.finditer(text):
            start, end = m.span("secret") if secret else m.span()
            if start == end:
                continue
            if self.validate is None or self.validate(text[start:end]):
                yield start, end
            else:
                found = _valid_part(text, start, end, self.validate)
                if found is not None:
                    yield found


def _valid_part(text: str, start: int, end: int, validate: Callable[[str], bool]) -> Span | None:
    """The longest validated sub-span of a grouped candidate, cut at separators.

    A grouped number can run into a neighbouring group ("DE89 3704 … 00 AB" or
    "1 4111 1111 1111 1111"); the validator then fails on the whole match although a
    part of it is a real value. Only spans starting and ending at group boundaries are
    tried, and only for candidates that failed, so the cost stays small.
    """
    if end - start > 64:
        return None
    starts = [start] + [i + 1 for i in range(start, end) if text[i] in " -"]
    ends = [end] + [i for i in range(start, end) if text[i] in " -"]
    best: Span | None = None
    for s in starts:
        for e in ends:
            if e - s > (best[1] - best[0] if best else 0) and validate(text[s:e]):
                best = (s, e)
    return best


def luhn_valid(candidate: str) -> bool:
    """True when the digits of ``candidate`` (13-19 of them) pass the Luhn check."""
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """True when ``candidate`` (spaces allowed) passes the ISO 13616 mod-97 check."""
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _phone_valid(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if candidate.startswith("+"):
        return 8 <= digits <= 15
    return 10 <= digits <= 11


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # +CC and groups
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|1?[ .-]?\d{3}[ .-]\d{3}[ .-]\d{4}"  # 555-123-4567, 1 555 123 4567
    r")(?![\w])"
)
# A whole run of digit groups, not a slice of a longer one ("7294-7294-…-7294" is an id).
_CARD = re.compile(r"(?<![\d\w])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![\d\w])(?![ -]\d)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_BEARER = re.compile(r"(?i)\b(?:bearer|basic)\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)")
_API_KEY = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r")"
)
_KEY_ASSIGNMENT = re.compile(
    r"(?i)\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|client[_-]?secret)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9_\-./+=]{12,})"
)
_AWS_KEY_ID = re.compile(
    r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])"
)
_CLOUD_SECRET = re.compile(
    r"(?i)(?:aws_secret_access_key[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{40})"
    r"|AccountKey=(?P<azure>[A-Za-z0-9+/=]{40,})"
    r"|SharedAccessSignature=(?P<sas>[^;\s\"']{20,}))"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"
)


_CLOUD_HINTS = (
    "akia",
    "asia",
    "abia",
    "acca",
    "agpa",
    "aida",
    "aroa",
    "aws_secret",
    "accountkey=",
    "sharedaccesssignature=",
)
_API_HINTS = (
    "sk-",
    "sk_",
    "rk_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "aiza",
    "glpat-",
    "api",
    "secret",
    "token",
)


@dataclass(frozen=True)
class _CloudSecretDetector:
    kind: str = "cloud_access_key"

    def find(self, text: str) -> Iterable[Span]:
        lowered = text.lower()
        if not any(h in lowered for h in _CLOUD_HINTS):
            return
        for m in _AWS_KEY_ID.finditer(text):
            yield m.span()
        for m in _CLOUD_SECRET.finditer(text):
            for group in ("secret", "azure", "sas"):
                if m.group(group):
                    yield m.span(group)


@dataclass(frozen=True)
class _ApiKeyDetector:
    kind: str = "api_key"

    def find(self, text: str) -> Iterable[Span]:
        lowered = text.lower()
        if not any(h in lowered for h in _API_HINTS):
            return
        for m in _API_KEY.finditer(text):
            yield m.span()
        for m in _KEY_ASSIGNMENT.finditer(text):
            yield m.span("secret")


BUILTIN_DETECTORS: tuple[Detector, ...] = (
    PatternDetector("private_key", _PRIVATE_KEY, hints=("-----BEGIN",)),
    PatternDetector("jwt", _JWT, hints=("eyJ",)),
    PatternDetector("bearer_token", _BEARER, hints=("bearer", "basic"), hints_lower=True),
    _ApiKeyDetector(),
    _CloudSecretDetector(),
    PatternDetector("email", _EMAIL, hints=("@",)),
    PatternDetector("iban", _IBAN, iban_valid),
    PatternDetector("card", _CARD, luhn_valid),
    PatternDetector("phone", _PHONE, _phone_valid),
)
"""The built-in detectors, most specific first (their order breaks overlap ties)."""

BUILTIN_KINDS: frozenset[str] = frozenset(d.kind for d in BUILTIN_DETECTORS)

_MIN_CANDIDATE = 6  # nothing any built-in detector finds is shorter than this

# A quick test that every value a built-in detector finds passes (its required prefix,
# separator or digits), so that most strings, which hold nothing, cost one short scan
# instead of one per detector. Broader than the detectors on purpose: passing it only
# means "run them". Keywords are compared on the lower-cased text as plain substrings
# (a case-insensitive regular expression is ten times slower).
# The lookahead lets the engine skip positions that start no alternative by one
# character-class test (about half the cost of trying each alternative there).
_AWS_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA")
_BUILTIN_PREFILTER = re.compile(
    r"(?=[@+e\-A-Z\d])"
    r"(?:[@+]|eyJ|-----BEGIN|\d[ -]?\d[ -]?\d|[A-Z]{2}\d\d|A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA))"
)
_BUILTIN_KEYWORDS: tuple[str, ...] = (
    "bearer",
    "basic",
    "sk-",
    "sk_",
    "rk_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "aiza",
    "glpat-",
    "api_key",
    "api-key",
    "apikey",
    "secret_key",
    "secret-key",
    "secretkey",
    "access_token",
    "access-token",
    "accesstoken",
    "client_secret",
    "client-secret",
    "clientsecret",
    "aws_secret",
    "accountkey=",
    "sharedaccesssignature=",
)


_BUILTIN_KEYWORD_SEARCH = re.compile("|".join(re.escape(k) for k in _BUILTIN_KEYWORDS))
"""Any of the keywords as a plain substring, in one search (not one ``in`` per word)."""


def _lowered_prefilter() -> re.Pattern[str]:
    r"""The prefilter and the keywords as one search of lower-cased ASCII text.

    What each alternative of :data:`_BUILTIN_PREFILTER` needs, lower-cased: ``@`` or
    ``+``; ``eyj``; ``-----begin``; the AWS prefixes; and for the digit runs
    (``\d[ -]?\d[ -]?\d``) and IBANs (``[A-Z]{2}\d\d``), two adjacent digits or a
    digit, a separator and a digit run. Each alternative starts with a literal
    character (digits spelled out), so the engine skips every position that starts
    none by one set test: about three times faster than the two searches it answers
    for, and broader than they are (passing it only means "run them").
    """
    literals = ["@", "+", "eyj", "-----begin", *(p.lower() for p in _AWS_PREFIXES)]
    digit_runs = [f"{d}(?:\\d|[ -]\\d[ -]?\\d)" for d in "0123456789"]
    return re.compile("|".join([trie_pattern([*literals, *_BUILTIN_KEYWORDS]), *digit_runs]))


_BUILTIN_ASCII_PREFILTER = _lowered_prefilter()


def _may_hold_builtin(text: str) -> bool:
    if text.isascii():
        return _BUILTIN_ASCII_PREFILTER.search(text.lower()) is not None
    if _BUILTIN_PREFILTER.search(text) is not None:
        return True
    return _BUILTIN_KEYWORD_SEARCH.search(text.lower()) is not None


def may_hold_builtin_lowered(lowered: str) -> bool:
    """Whether the built-in detectors could find anything in an ASCII text, given its
    ``lower()``: False means :func:`find_sensitive` with them finds nothing."""
    return _BUILTIN_ASCII_PREFILTER.search(lowered) is not None


@dataclass(frozen=True)
class Finding:
    """A sensitive value found in a string: its kind and character span."""

    kind: str
    start: int
    end: int


def find_sensitive(text: str, detectors: Sequence[Detector] = BUILTIN_DETECTORS) -> list[Finding]:
    """Every sensitive span of ``text``, sorted and without overlaps.

    Overlapping candidates are merged into the earliest one, widened to cover both, and
    keep the kind of the detector listed first, so that nothing a detector found is left
    in the clear.
    """
    if len(text) < _MIN_CANDIDATE:
        return []
    if detectors is BUILTIN_DETECTORS and not _may_hold_builtin(text):
        return []
    found: list[tuple[int, int, int, str]] = []
    for rank, detector in enumerate(detectors):
        for start, end in detector.find(text):
            found.append((start, end, rank, detector.kind))
    if not found:
        return []
    found.sort()
    merged: list[tuple[int, int, int, str]] = []
    for item in found:
        start, end, rank, kind = item
        if merged and start < merged[-1][1]:
            m_start, m_end, m_rank, m_kind = merged[-1]
            better = rank < m_rank
            merged[-1] = (
                m_start,
                max(m_end, end),
                rank if better else m_rank,
                kind if better else m_kind,
            )
        else:
            merged.append(item)
    return [Finding(kind, start, end) for start, end, _, kind in merged]
