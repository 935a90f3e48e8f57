"""Redaction detectors and the scrubber: every generated sensitive value is removed, look-alikes
are kept, per-tool and per-field rules apply, and placeholders carry a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.producer._detectors import (
    BUILTIN_DETECTORS,
    PatternDetector,
    find_sensitive,
    iban_valid,
    luhn_valid,
)
from agenttrail.producer._scrub import Redaction, Scrubber, ToolRedaction
from tests import pii


def _scrub_json(value: object, scrubber: Scrubber) -> str:
    out, _ = scrubber.scrub(value)
    return json.dumps(out, ensure_ascii=False)


@settings(max_examples=300, deadline=None)
@given(pii.text_with_pii())
def test_every_generated_value_is_removed_from_text(case: tuple[str, str]) -> None:
    text, value = case
    out, found = Scrubber().scrub_text(text)
    assert value not in out
    assert found, f"nothing found in {text!r}"


@settings(max_examples=200, deadline=None)
@given(pii.json_with_pii())
def test_every_generated_value_is_removed_anywhere_in_json(case: tuple[object, str]) -> None:
    value, secret = case
    assert secret not in _scrub_json(value, Scrubber())


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("4111 1111 1111 1111", "card"),
        ("DE89 3704 0044 0532 0130 00", "iban"),
        ("GB82WEST12345698765432", "iban"),
        ("AKIAIOSFODNN7EXAMPLE", "cloud_access_key"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "cloud_access_key"),
        ("Authorization: Bearer abc.def-ghi_jkl", "bearer_token"),
        ("api_key: 'q8w7e6r5t4y3u2i1'", "api_key"),
        ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n", "private_key"),  # cut off
        ("+49 30 1234 5678", "phone"),
    ],
)
def test_known_values_are_found_with_their_kind(text: str, kind: str) -> None:
    found = find_sensitive(f"x {text} y")
    assert [f.kind for f in found] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "order 7294 shipped on 2026-12-01T10:22:44Z",
        "invoice 4111111111111112 (fails Luhn)",
        "DE00 3704 0044 0532 0130 00 has a wrong check",
        "version 1.24.3, port 9092, pid 4711",
        "ts 1733011200000000 and trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "the bearer of bad news",
        "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ],
)
def test_look_alikes_are_kept(text: str) -> None:
    assert find_sensitive(text) == []


def test_validators_against_published_examples() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert luhn_valid("378282246310005")  # an Amex test number
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid(
        "GB82 WEST 1234 5698 7654 33"
    )


def test_a_grouped_number_running_into_a_neighbour_is_still_found() -> None:
    out, found = Scrubber().scrub_text(
        "pay DE89 3704 0044 0532 0130 00 AB now; 1 4111 1111 1111 1111"
    )
    assert "0130 00" not in out and "4111 1111" not in out
    assert [r.kind for r in found] == ["iban", "card"]


def test_placeholder_is_typed_and_keyed() -> None:
    key = b"k" * 32
    out, _ = Scrubber(key=key).scrub_text("to a@b.io")
    expected = hmac.new(key, b"a@b.io", hashlib.sha256).hexdigest()[:16]
    assert out == f"to [redacted:email:{expected}]"
    other, _ = Scrubber(key=b"x" * 32).scrub_text("to a@b.io")
    assert other != out  # without the key, the hash cannot be recomputed


def test_sensitive_keys_replace_whole_values_and_paths_are_reported() -> None:
    value = {"user": {"Password": ["x", {"y": 1}]}, "note": ["see a@b.io"], "a@b.io": 1}
    out, found = Scrubber().scrub(value)
    text = json.dumps(out)
    assert "a@b.io" not in text and '"x"' not in text
    assert {(r.path, r.kind) for r in found} == {
        ("$.user.Password", "key"),
        ("$.note[0]", "email"),
        ("$.<key>", "email"),
    }


def test_untouched_values_are_returned_as_they_are() -> None:
    value = {"order_id": "7294", "lines": [{"sku": "A-1", "qty": 2}]}
    out, found = Scrubber().scrub(value)
    assert out is value and found == []


def test_per_tool_rules_narrow_redact_and_skip_fields() -> None:
    rules = {
        "send_email": ToolRedaction(kinds=frozenset({"email"}), redact_fields=frozenset({"body"})),
        "lookup": ToolRedaction(skip_fields=frozenset({"$.query.ids"})),
    }
    s = Scrubber(tools=rules)
    out, _found = s.scrub(
        {"to": "a@b.io", "body": "hello", "ref": "+49 30 1234 5678"}, tool="send_email"
    )
    assert out["to"].startswith("[redacted:email:")
    assert out["body"].startswith("[redacted:field:")
    assert out["ref"] == "+49 30 1234 5678"  # phone detection is off for this tool
    out, _ = s.scrub(
        {"query": {"ids": ["+49 30 1234 5678"], "q": "+49 30 1234 5678"}}, tool="lookup"
    )
    assert out["query"]["ids"] == ["+49 30 1234 5678"]
    assert out["query"]["q"].startswith("[redacted:phone:")


def test_user_supplied_detector_runs_with_the_built_in_ones() -> None:
    employee = PatternDetector("employee_id", re.compile(r"\bEMP-\d{6}\b"))
    s = Scrubber((*BUILTIN_DETECTORS, employee))
    out, found = s.scrub_text("EMP-123456 wrote from a@b.io")
    assert "EMP-123456" not in out and {r.kind for r in found} == {"employee_id", "email"}


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_and_keeps_text_without_findings(text: str) -> None:
    out, found = Scrubber().scrub_text(text)
    if not found:
        assert out == text


def test_a_long_run_of_digit_groups_is_an_id_not_cards() -> None:
    assert find_sensitive("order-" + "7294-" * 400) == []
    assert [f.kind for f in find_sensitive("order-4111-1111-1111-1111")] == ["card"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(pii.text_with_pii().map(lambda c: c[0]), st.text(max_size=80)))
def test_the_prefilter_never_skips_a_string_a_detector_would_redact(text: str) -> None:
    from agenttrail.producer._detectors import _may_hold_builtin

    unfiltered = find_sensitive(text, list(BUILTIN_DETECTORS))  # not the tuple: no prefilter
    if unfiltered:
        assert _may_hold_builtin(text)
    assert find_sensitive(text) == unfiltered


_KEYS = st.one_of(
    st.sampled_from(["order_id", "password", "Token", "note", "to", "api_key"]),
    pii.text_with_pii().map(lambda c: c[1]),  # a sensitive value used as a key
    st.text(string.ascii_lowercase + "_", min_size=1, max_size=10),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(pii.json_with_pii(keys=_KEYS), min_size=1, max_size=4))
def test_remembered_plain_keys_never_change_what_is_redacted(
    cases: list[tuple[object, str]],
) -> None:
    """The scrubber remembers argument names it found clean; a warm scrubber must redact
    exactly what a fresh one does, whatever keys and values it saw before."""
    key = b"k" * 32
    warm = Scrubber(key=key)
    for value, _ in cases:
        warm.scrub(value)
    for value, secret in cases:
        expected = Scrubber(key=key).scrub(value)
        assert warm.scrub(value) == expected
        assert secret not in json.dumps(expected[0], ensure_ascii=False)


def test_a_sensitive_or_personal_key_is_never_remembered_as_plain() -> None:
    scrubber = Scrubber()
    for _ in range(3):
        out, found = scrubber.scrub({"Password": "hunter2", "jane@example.com": 1, "id": 7})
        assert out["Password"].startswith("[redacted:key:")
        assert "jane@example.com" not in json.dumps(out)
        assert {r.kind for r in found} == {"key", "email"}
    assert "Password" not in scrubber._plain_keys
    assert "jane@example.com" not in scrubber._plain_keys


_FLAT_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.none(),
    st.sampled_from(["4111 1111 1111 1111", "ops@example.com", "sk-live-abcdefghijklmnop"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["order_id", "password", "q", "note", "api_key", "limit"]),
            _FLAT_VALUES,
            max_size=4,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_flat_arguments_seen_before_redact_exactly_as_the_full_walk(
    calls: list[dict[str, object]],
) -> None:
    # The scrubber skips the walk for flat dicts of known-plain keys and short values;
    # the full walk of the same scrubber (same placeholder key) is the reference.
    warmed = Scrubber()
    for args in calls:
        out, found = warmed.scrub(args)
        ref_found: list[Redaction] = []
        ref_out = warmed._walk(args, "$", warmed.detectors, None, False, ref_found)
        assert out == ref_out
        assert [(r.path, r.kind) for r in found] == [(r.path, r.kind) for r in ref_found]
        if not ref_found:
            assert out is args
