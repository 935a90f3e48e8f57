"""Confirmation policies and grants: bound to the exact tool and arguments hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from agenttrail.producer._confirm import (
    CallbackPolicy,
    ConfirmationGrants,
    ConfirmationRequest,
    Decision,
    amount_threshold,
    arguments_hash,
    as_decision,
)


def _request(args: object) -> ConfirmationRequest:
    return ConfirmationRequest("t", "refund", "issue_refund", args, arguments_hash(args))


def test_the_hash_is_sha256_of_the_canonical_json() -> None:
    args = {"b": 1, "a": "é"}
    expected = hashlib.sha256(
        json.dumps({"a": "é", "b": 1}, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert arguments_hash(args) == expected
    assert arguments_hash({"a": "é", "b": 1}) == expected  # key order does not matter


def test_a_grant_is_bound_to_tool_and_arguments_and_used_once() -> None:
    grants = ConfirmationGrants()
    h1, h2 = arguments_hash({"invoice": 1}), arguments_hash({"invoice": 2})
    grants.grant("pay", h1)
    assert grants.holds("pay", h1) and not grants.holds("pay", h2) and not grants.holds("void", h1)
    assert grants.use("pay", h1) and not grants.use("pay", h1)


@pytest.mark.parametrize(
    ("amount", "granted"),
    [(1000, True), (1000.01, False), ("1000", False), (None, False), (True, False)],
)
def test_amount_threshold_grants_only_readable_amounts_at_most_the_bound(
    amount: object, granted: bool
) -> None:
    decision = amount_threshold("amount", 1000).decide(_request({"amount": amount}))
    assert decision.granted is granted and decision.decided_by == "rule:amount<=1000"


def test_callback_answers_become_decisions_with_the_deciders_name() -> None:
    policy = CallbackPolicy(lambda r: True, name="alice")
    assert as_decision(policy.decide(_request({})), policy) == Decision(True, "alice")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Decision or a bool"):
        as_decision("yes", policy)  # type: ignore[arg-type]
