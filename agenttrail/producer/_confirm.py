"""Confirmation checkpoints for irreversible tools: policies, decisions, and grants bound to
the exact tool and arguments.

A grant is keyed by ``(tool, arguments hash)``, the hash being SHA-256 of the arguments'
canonical JSON (sorted keys, compact) — the same ``args_hash`` a tool span records. So a
confirmation for ``issue_refund({"order": 1, "amount": 10})`` does not unlock
``issue_refund({"order": 2, "amount": 10})``, nor the same arguments to another tool.

A grant is used up by the first irreversible span with that tool and arguments that
completes successfully; a span that fails leaves it in place for the retry.

A policy decides; it is either a callback (a human in the loop: a prompt, a ticket, a
chat approval; sync or async) or a rule (an automatic check such as an amount
threshold). Both return a :class:`Decision` naming who or what decided.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


def arguments_hash(args: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``args`` (the tool span's ``args_hash``)."""
    text = json.dumps(
        {} if args is None else args,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ConfirmationRequest:
    """What a policy is asked to confirm.

    ``args`` are the original (unredacted) arguments, given to the policy inside this
    process only; what is recorded is the tool, the hash and the redacted arguments.
    """

    task_id: str
    task_type: str
    tool: str
    args: Any
    args_hash: str
    reason: str | None = None


@dataclass(frozen=True)
class Decision:
    """A policy's answer: granted or not, who or what decided, and why."""

    granted: bool
    decided_by: str
    reason: str | None = None


PolicyResult = Decision | bool
"""A policy may answer with a Decision or a plain bool (decided_by is then its name)."""


@runtime_checkable
class ConfirmationPolicy(Protocol):
    """Decides on a :class:`ConfirmationRequest`. ``decide`` may return an awaitable."""

    @property
    def name(self) -> str:
        """Recorded as ``decided_by`` when the answer is a bare bool."""

    def decide(self, request: ConfirmationRequest) -> PolicyResult | Awaitable[PolicyResult]: ...


class CallbackPolicy:
    """A policy that asks a callable, e.g. a human-in-the-loop prompt.

    Args:
        callback: ``(request) -> Decision | bool`` or a coroutine function returning one.
        name: who decides, recorded with the decision (e.g. ``ops-oncall``).
    """

    def __init__(
        self,
        callback: Callable[[ConfirmationRequest], PolicyResult | Awaitable[PolicyResult]],
        name: str = "callback",
    ):
        self.callback = callback
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def decide(self, request: ConfirmationRequest) -> PolicyResult | Awaitable[PolicyResult]:
        return self.callback(request)


class RulePolicy:
    """An automatic rule: grants when ``predicate(request)`` is true.

    Args:
        predicate: the rule.
        name: recorded as ``decided_by`` (e.g. ``rule:amount<=1000``).
        reason: recorded with a denial.
    """

    def __init__(
        self, predicate: Callable[[ConfirmationRequest], bool], name: str, reason: str | None = None
    ):
        self.predicate = predicate
        self._name = name
        self.reason = reason

    @property
    def name(self) -> str:
        return self._name

    def decide(self, request: ConfirmationRequest) -> Decision:
        granted = bool(self.predicate(request))
        return Decision(granted, self._name, None if granted else self.reason)


def amount_threshold(field: str, max_amount: float) -> RulePolicy:
    """Grant when ``args[field]`` is a number at most ``max_amount``; deny otherwise.

    Missing or non-numeric amounts are denied: a rule that cannot read the amount must
    not approve it.
    """

    def check(request: ConfirmationRequest) -> bool:
        args = request.args
        value = args.get(field) if isinstance(args, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return value <= max_amount

    return RulePolicy(
        check,
        name=f"rule:{field}<={max_amount:g}",
        reason=f"{field} missing, not a number, or above {max_amount:g}",
    )


def as_decision(result: PolicyResult, policy: ConfirmationPolicy) -> Decision:
    """A policy's answer as a Decision.

    Raises:
        TypeError: the policy answered something else.
    """
    if isinstance(result, Decision):
        return result
    if isinstance(result, bool):
        return Decision(result, policy.name)
    raise TypeError(
        f"Confirmation policy {policy.name!r} returned {result!r}; it must return a "
        "Decision or a bool."
    )


class ConfirmationDenied(PermissionError):
    """An irreversible tool was refused: no granted confirmation for these arguments.

    Attributes:
        task_id: the task.
        tool: the tool refused.
        args_hash: the hash of the arguments that were not confirmed.
        decided_by: who denied it, or None when no confirmation was asked for.
    """

    def __init__(
        self,
        task_id: str,
        tool: str,
        args_hash: str,
        decided_by: str | None = None,
        reason: str | None = None,
    ):
        self.task_id = task_id
        self.tool = tool
        self.args_hash = args_hash
        self.decided_by = decided_by
        if decided_by is None:
            msg = (
                f"Task {task_id} refused irreversible tool {tool!r}: no granted confirmation "
                f"for these arguments (hash {args_hash[:12]}…). Call "
                f"task.confirm({tool!r}, args, policy=...) with the exact arguments first."
            )
        else:
            msg = (
                f"Task {task_id}: {decided_by} denied irreversible tool {tool!r} "
                f"(arguments hash {args_hash[:12]}…)" + (f": {reason}" if reason else "") + "."
            )
        super().__init__(msg)


class ConfirmationGrants:
    """The granted confirmations a task holds, by (tool, arguments hash). Thread-safe."""

    def __init__(self) -> None:
        self._granted: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def grant(self, tool: str, args_hash: str) -> None:
        """Hold one more use of ``tool`` with these arguments."""
        with self._lock:
            key = (tool, args_hash)
            self._granted[key] = self._granted.get(key, 0) + 1

    def holds(self, tool: str, args_hash: str) -> bool:
        """True when a granted confirmation matches exactly."""
        with self._lock:
            return self._granted.get((tool, args_hash), 0) > 0

    def use(self, tool: str, args_hash: str) -> bool:
        """Use up one matching grant; False when there was none."""
        with self._lock:
            key = (tool, args_hash)
            left = self._granted.get(key, 0)
            if left <= 0:
                return False
            if left == 1:
                del self._granted[key]
            else:
                self._granted[key] = left - 1
            return True
