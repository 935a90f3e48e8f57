"""The control protocol: kill and lift commands, receipts and acknowledgements.

Messages are UTF-8 JSON on the control topic (``agenttrail.control``, one partition so
that commands keep their order), keyed by ``command_id``:

``kill`` / ``lift`` (from ``agenttrail kill``)::

    {"v": 1, "type": "kill", "command_id": "…", "issued_at_us": 1764547200000000,
     "issued_by": "ops@host", "reason": "runaway refunds",
     "scope": {"task_type": "refund"}, "signature": "<base64 Ed25519>" | null}

``receipt`` (a recorder heard a kill: the tasks of its own that it is stopping) and
``ack`` (one task stopped; ``latency_ms`` from the recorder hearing the command)::

    {"v": 1, "type": "receipt", "command_id": "…", "producer_id": "…", "tasks": ["tsk_1"]}
    {"v": 1, "type": "ack", "command_id": "…", "producer_id": "…", "task_id": "tsk_1",
     "latency_ms": 3.2}

A scope names any of ``task_id``, ``task_type``, ``agent``, ``tenant`` (all must match);
an empty scope is every task. A kill stays in force for its scope until a lift of the
same scope (or a lift of everything) issued after it: the state is a fold over the
topic by ``issued_at_us``, so a recorder that starts later, or reads the commands in
another order, reaches the same answer, and a replayed old kill does not undo a lift.

Signing: the signature is Ed25519 over :func:`signed_bytes` (the message without its
signature, canonical JSON, prefixed with the protocol name). A recorder configured with
public keys acts only on commands signed by one of them; unsigned or forged commands
are logged and ignored. Receipts and acknowledgements are not signed: they inform the
operator, and the authoritative record of a stop is the task's own guard events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agenttrail.events import PublicKeys, SigningKey, new_signing_key, uuid7

PROTOCOL = b"agenttrail.control.v1\n"
SCOPE_FIELDS: tuple[str, ...] = ("task_id", "task_type", "agent", "tenant")

__all__ = [
    "CommandVerifier",
    "ControlMessage",
    "ControlMessageError",
    "KillState",
    "Scope",
    "new_command",
    "new_signing_key",
    "sign",
    "signed_bytes",
]

MessageType = Literal["kill", "lift", "receipt", "ack"]


class ControlMessageError(ValueError):
    """Bytes on the control topic are not a control message (named what is wrong)."""


@dataclass(frozen=True)
class Scope:
    """Which tasks a command applies to; every given field must match. Empty: all tasks."""

    task_id: str | None = None
    task_type: str | None = None
    agent: str | None = None
    tenant: str | None = None

    @property
    def is_all(self) -> bool:
        return all(getattr(self, f) is None for f in SCOPE_FIELDS)

    def matches(self, *, task_id: str, task_type: str, agent: str, tenant: str) -> bool:
        """True when the task identified by the arguments is in this scope."""
        return (
            (self.task_id is None or self.task_id == task_id)
            and (self.task_type is None or self.task_type == task_type)
            and (self.agent is None or self.agent == agent)
            and (self.tenant is None or self.tenant == tenant)
        )

    def to_dict(self) -> dict[str, str]:
        return {f: v for f in SCOPE_FIELDS if (v := getattr(self, f)) is not None}

    def describe(self) -> str:
        """``task_type=refund`` or ``all tasks``."""
        return " ".join(f"{k}={v}" for k, v in self.to_dict().items()) or "all tasks"

    @classmethod
    def from_dict(cls, raw: Any) -> Scope:
        if not isinstance(raw, dict) or set(raw) - set(SCOPE_FIELDS):
            raise ControlMessageError(
                f"scope must be an object with only {', '.join(SCOPE_FIELDS)}; got {raw!r}"
            )
        if any(not isinstance(v, str) or not v for v in raw.values()):
            raise ControlMessageError(f"scope values must be non-empty strings; got {raw!r}")
        return cls(**raw)


@dataclass(frozen=True)
class ControlMessage:
    """One message of the control protocol (see the module docstring)."""

    type: MessageType
    command_id: str
    issued_at_us: int = 0
    issued_by: str = ""
    reason: str | None = None
    scope: Scope = field(default_factory=Scope)
    signature: str | None = None
    producer_id: str | None = None
    tasks: tuple[str, ...] = ()
    task_id: str | None = None
    latency_ms: float | None = None

    @property
    def is_command(self) -> bool:
        return self.type in ("kill", "lift")

    def to_dict(self, with_signature: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"v": 1, "type": self.type, "command_id": self.command_id}
        if self.is_command:
            out.update(
                issued_at_us=self.issued_at_us,
                issued_by=self.issued_by,
                reason=self.reason,
                scope=self.scope.to_dict(),
            )
            if with_signature:
                out["signature"] = self.signature
        elif self.type == "receipt":
            out.update(producer_id=self.producer_id, tasks=list(self.tasks))
        else:
            out.update(
                producer_id=self.producer_id, task_id=self.task_id, latency_ms=self.latency_ms
            )
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> ControlMessage:
        """Parse bytes from the topic.

        Raises:
            ControlMessageError: not JSON, wrong version, unknown type or a bad field.
        """
        try:
            raw = json.loads(data or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ControlMessageError(f"not JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("v") != 1:
            raise ControlMessageError("not a version 1 control message")
        kind = raw.get("type")
        command_id = raw.get("command_id")
        if kind not in ("kill", "lift", "receipt", "ack") or not isinstance(command_id, str):
            raise ControlMessageError(f"unknown type {kind!r} or missing command_id")
        try:
            if kind in ("kill", "lift"):
                issued = raw["issued_at_us"]
                if not isinstance(issued, int) or isinstance(issued, bool):
                    raise ControlMessageError("issued_at_us must be an integer")
                return cls(
                    type=kind,
                    command_id=command_id,
                    issued_at_us=issued,
                    issued_by=str(raw.get("issued_by") or ""),
                    reason=raw.get("reason"),
                    scope=Scope.from_dict(raw.get("scope", {})),
                    signature=raw.get("signature"),
                )
            if kind == "receipt":
                return cls(
                    type="receipt",
                    command_id=command_id,
                    producer_id=str(raw["producer_id"]),
                    tasks=tuple(str(t) for t in raw.get("tasks", [])),
                )
            latency = raw.get("latency_ms")
            return cls(
                type="ack",
                command_id=command_id,
                producer_id=str(raw["producer_id"]),
                task_id=str(raw["task_id"]),
                latency_ms=float(latency) if latency is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ControlMessageError):
                raise
            raise ControlMessageError(f"bad {kind} message: {exc}") from None


def new_command(
    kind: Literal["kill", "lift"], scope: Scope, *, issued_by: str, reason: str | None
) -> ControlMessage:
    """A kill or lift command, not yet signed, stamped now."""
    return ControlMessage(
        type=kind,
        command_id=str(uuid7()),
        issued_at_us=time.time_ns() // 1000,
        issued_by=issued_by,
        reason=reason,
        scope=scope,
    )


def signed_bytes(message: ControlMessage) -> bytes:
    """The bytes a command's signature covers."""
    body = json.dumps(message.to_dict(with_signature=False), sort_keys=True, separators=(",", ":"))
    return PROTOCOL + body.encode()


# -- Ed25519 (agenttrail.events._signing, shared with signed checkpoints) ---------------


def sign(message: ControlMessage, private_pem: bytes) -> ControlMessage:
    """``message`` with its Ed25519 signature.

    Raises:
        ValueError: ``private_pem`` is not an Ed25519 private key in PEM.
    """
    signature = SigningKey(private_pem).sign(signed_bytes(message))
    return ControlMessage(**{**message.__dict__, "signature": signature})


class CommandVerifier:
    """Accepts commands signed by one of ``public_keys`` (base64 raw Ed25519 keys).

    With no keys, every command is accepted (the control topic's ACLs are then the only
    protection). Thread-safe.

    Raises:
        ValueError: a public key is not 32 bytes of base64.
    """

    def __init__(self, public_keys: Iterable[str] = ()):
        try:
            self._keys = PublicKeys(public_keys)
        except ValueError as exc:
            raise ValueError(f"control {exc}") from None

    @property
    def requires_signature(self) -> bool:
        return bool(self._keys)

    def accepts(self, message: ControlMessage) -> bool:
        """True when ``message`` may be acted on."""
        if not self._keys:
            return True
        return self._keys.verifies(signed_bytes(message), message.signature)


class KillState:
    """The kills in force, folded from the commands seen (in any order). Not thread-safe:
    the owner serialises access."""

    def __init__(self) -> None:
        self._kills: dict[str, ControlMessage] = {}
        self._lifts: list[ControlMessage] = []
        self._seen: set[str] = set()

    def apply(self, command: ControlMessage) -> bool:
        """Fold one command in; True when it is a kill that is now in force."""
        if command.command_id in self._seen or not command.is_command:
            return False
        self._seen.add(command.command_id)
        if command.type == "lift":
            self._lifts.append(command)
            return False
        self._kills[command.command_id] = command
        return self._in_force(command)

    def _in_force(self, kill: ControlMessage) -> bool:
        return not any(
            lift.issued_at_us >= kill.issued_at_us
            and (lift.scope.is_all or lift.scope == kill.scope)
            for lift in self._lifts
        )

    def active(self) -> list[ControlMessage]:
        """The kills in force, oldest first."""
        return sorted(
            (k for k in self._kills.values() if self._in_force(k)), key=lambda k: k.issued_at_us
        )

    def kill_for(
        self, *, task_id: str, task_type: str, agent: str, tenant: str
    ) -> ControlMessage | None:
        """The oldest kill in force whose scope holds this task, or None."""
        for kill in self.active():
            if kill.scope.matches(task_id=task_id, task_type=task_type, agent=agent, tenant=tenant):
                return kill
        return None
